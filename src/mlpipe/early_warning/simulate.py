"""Stage ``simulate`` of the early-warning pipeline: the demo cohort, a stand-in for a team's
student and activity tables.

Inputs: none. Outputs: a folder (``--out``) with ``students.parquet``, ``activity.parquet`` (one
row per student per active day, in student order) and ``oracle.parquet`` (each enrolled student's
probability of dropping out after each cutoff week, the physical limit a model is judged
against); a metrics file with the counts and the dropout rate.
Params: ``base.seed``, ``simulate.*``, ``history.cutoffs``.

The generative model is documented in :mod:`mlpipe.demo.activity`, the oracle in
:mod:`mlpipe.demo.filtering`; students are made and written 5,000 at a time (:mod:`mlpipe.demo.cohort`),
so memory does not grow with the cohort.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import load_early_warning_params
from mlpipe.core.stage import run
from mlpipe.demo import activity, cohort

log = logging.getLogger("mlpipe.early_warning.simulate")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mlpipe.early_warning.simulate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--out", required=True, help="folder of the three tables to write")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    args = parser.parse_args(argv)
    params = load_early_warning_params(args.params)
    if params.simulate is None:
        raise PipelineError(f"{args.params} has no simulate section")
    made = activity.Cohort(
        params.simulate.students, params.simulate.weeks, params.simulate.start_date, params.base.seed
    )
    with files.atomic_path(args.out, directory=True) as folder:
        counts = cohort.write(made, folder, params.history.cutoffs, params.simulate.oracle)
    files.write_json(args.metrics, {**counts, "dropout_rate": counts["dropped_out"] / counts["students"]})
    log.info("%d students, %d activity rows", counts["students"], counts["activity_rows"])


if __name__ == "__main__":
    raise SystemExit(run(main))
