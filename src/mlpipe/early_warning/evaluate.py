"""Stage ``evaluate`` of the early-warning pipeline: the model, the baselines and the oracle, judged
on the test students at each cutoff week.

Inputs: the point-in-time arrays (``train`` fits the baselines, ``test`` judges), the preprocessor
JSON, the model folder and, for the demo, the oracle by cutoff. Outputs: ``--metrics`` with
``by_cutoff: {"<week>": {"model", "baselines": {"logistic", "hgb"}, "oracle", "latent_oracle"}}``
(ROC-AUC, PR-AUC, log loss, Brier score, recall among the riskiest 10%, rows) and
``baseline_wins`` (the weeks at which a baseline ranks better than the model); ``--plots`` with
``auc_by_week.csv`` for ``dvc plots``.
Params: ``base.seed``, ``evaluate.*``.

The baselines learn from point-in-time aggregates (active days, each channel's weekly mean, last
week and slope, weeks since the last active one) built by the same leak-free code as the network's
input (:mod:`mlpipe.evaluation.early_warning`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlpipe.core import files
from mlpipe.core.params import load_early_warning_params
from mlpipe.core.stage import run
from mlpipe.evaluation import early_warning
from mlpipe.features import point_in_time
from mlpipe.training import sequence

log = logging.getLogger("mlpipe.early_warning.evaluate")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlpipe.early_warning.evaluate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--splits", required=True, help="preprocess's folder of point-in-time arrays")
    parser.add_argument("--preprocessor", required=True, help="preprocessor JSON")
    parser.add_argument("--model", required=True, help="model folder from train")
    parser.add_argument("--oracle", help="the demo's oracle by cutoff (Parquet), where there is one")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--plots", required=True, help="folder of plot data to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_early_warning_params(args.params)
    prep = files.read_json(args.preprocessor)
    splits = {
        name: point_in_time.by_cutoff(
            point_in_time.load(args.splits, name), prep["static"], prep["aggregates"]
        )
        for name in ("train", "test")
    }
    from mlpipe.training.model import load_model

    network, scale = load_model(args.model), point_in_time.SequenceScale.from_dict(prep["scale"])
    hgb = params.evaluate.hgb
    result = early_warning.by_cutoff(
        splits["test"],
        splits["train"],
        params.base.seed,
        lambda h: sequence.predict(network, scale.apply(h.static.to_numpy(np.float64), h.sequence, h.mask)),
        pd.read_parquet(args.oracle) if args.oracle else None,
        early_warning.Baselines(
            params.evaluate.linear_alpha, hgb.max_iter, hgb.learning_rate, hgb.max_leaf_nodes
        ),
    )
    files.write_json(args.metrics, {"by_cutoff": result, "baseline_wins": early_warning.beaten_at(result)})
    with files.atomic_path(args.plots, directory=True) as folder:
        early_warning.auc_by_week(result).to_csv(folder / "auc_by_week.csv", index=False)
    for week, found in result.items():
        log.info("week %s: ROC-AUC %.4f", week, found["model"]["roc_auc"])


if __name__ == "__main__":
    raise SystemExit(run(main))
