"""Stage ``preprocess`` of the early-warning pipeline: every student's point-in-time rows for every
cutoff week, split by student, and the scale fitted on the training split.

Inputs: the student table and the activity table (Parquet; the activity in student order).
Outputs: a folder (``--out``) of arrays per split (:mod:`mlpipe.features.point_in_time`): for each
cutoff, each student still enrolled at it, the static row, the weekly sequence of the channels
from activity strictly before the cutoff (padded and masked), the baselines' aggregates and the
label (drops out on or after the cutoff); the preprocessor JSON the network and the bundle read
(static columns, channels and their weekly aggregation, weeks, cutoffs, scale); split metrics.
Params: ``base.seed``, ``history.*`` (the tables' columns, the channels, the cutoffs, the split).

Leak-free by construction: :func:`mlpipe.features.history.before_cutoff` alone decides what the past
is, and ``tests/unit/test_history.py`` proves it by changing the future.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np

from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import load_early_warning_params
from mlpipe.core.stage import run
from mlpipe.features import point_in_time

log = logging.getLogger("mlpipe.early_warning.preprocess")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlpipe.early_warning.preprocess", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--students", required=True, help="student table (Parquet)")
    parser.add_argument("--activity", required=True, help="activity table (Parquet, in student order)")
    parser.add_argument("--out", required=True, help="folder of the point-in-time arrays to write")
    parser.add_argument("--preprocessor", required=True, help="preprocessor JSON to write")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_early_warning_params(args.params)
    found, aggregates = point_in_time.build(args.students, args.activity, params.history, params.base.seed)
    train = found["train"]
    if not len(train["label"]):
        raise PipelineError("the training split is empty: too few students for the shares")
    scale = point_in_time.SequenceScale.fit(train["static"], train["sequence"], train["mask"])
    with files.atomic_path(args.out, directory=True) as tmp:
        point_in_time.write(tmp, found)
    prep = {
        **params.history.model_dump(include={"static", "channels", "weeks", "cutoffs"}),
        "aggregates": aggregates,
        "scale": scale.to_dict(),
    }
    files.write_json(args.preprocessor, prep, sort_keys=False)
    metrics = {
        name: {
            "rows": len(arrays["ids"]),
            "students": len(np.unique(arrays["ids"])),
            "dropout_rate": float(arrays["label"].mean()) if len(arrays["label"]) else None,
        }
        for name, arrays in found.items()
    }
    files.write_json(args.metrics, metrics)
    log.info("point-in-time rows: %s", ", ".join(f"{k} {v['rows']}" for k, v in metrics.items()))


if __name__ == "__main__":
    raise SystemExit(run(main))
