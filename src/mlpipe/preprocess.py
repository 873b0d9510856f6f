"""Stage ``preprocess``: split by group, then fit the preprocessing on the training split only.

Inputs: the validated table from ``validate``.
Outputs: a folder with ``train``, ``val`` and ``test`` Parquet files (raw records, split so that no
group, e.g. no student, is in two splits), the fitted preprocessor as JSON, and split metrics.
Params: ``base.seed``, ``preprocess.*`` (column roles, derived formulas, split shares, policy), and
``validate.columns`` (which columns may be null, and so get a fill value).

The splits stay raw: every later consumer applies the one fitted :class:`~mlpipe.features.Preprocessor`
with :func:`mlpipe.features.transform`, exactly as the packaged model will.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mlpipe import features, io
from mlpipe.errors import PipelineError
from mlpipe.params import load_params
from mlpipe.stage import run

log = logging.getLogger("mlpipe.preprocess")

SPLITS = ("train", "val", "test")


def split_by_group(
    frame: pd.DataFrame, group: str, val_share: float, test_share: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Assign whole groups to train/val/test at random, by share of groups.

    Each split gets at least one group; rows keep their original order within a split.

    Raises:
        PipelineError: if the group column is missing or there are fewer than three groups.
    """
    if group not in frame.columns:
        raise PipelineError(f"preprocess.group: column {group!r} is not in the data")
    groups = np.sort(frame[group].dropna().unique())
    if len(groups) < 3:
        raise PipelineError(f"need at least 3 distinct values of {group!r} to split, found {len(groups)}")
    shuffled = np.random.default_rng([seed, 10]).permutation(groups)
    n_test = max(1, round(test_share * len(groups)))
    n_val = max(1, round(val_share * len(groups)))
    n_val = min(n_val, len(groups) - n_test - 1)
    assignment = {
        "test": shuffled[:n_test],
        "val": shuffled[n_test : n_test + n_val],
        "train": shuffled[n_test + n_val :],
    }
    return {name: frame[frame[group].isin(assignment[name])].reset_index(drop=True) for name in SPLITS}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlpipe.preprocess", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--data", required=True, help="validated table (Parquet)")
    parser.add_argument("--out", required=True, help="folder for train/val/test Parquet files")
    parser.add_argument("--preprocessor", required=True, help="fitted preprocessor JSON to write")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    args = parser.parse_args(argv)

    all_params = load_params(args.params)
    params = all_params.preprocess
    frame = io.read_parquet(args.data)
    splits = split_by_group(frame, params.group, params.val_share, params.test_share, all_params.base.seed)
    # Only columns the data contract lets be null get a fill; a null anywhere else is refused.
    nullable = [name for name, rule in all_params.validate.columns.items() if rule.nullable]
    prep = features.fit(splits["train"], params, nullable)
    for name in SPLITS:  # fail now, not in train, if a split cannot be transformed
        features.matrices(splits[name], prep)

    with io.atomic_path(args.out, directory=True) as tmp:
        for name in SPLITS:
            io.write_parquet(Path(tmp) / f"{name}.parquet", splits[name])
    io.write_json(args.preprocessor, prep.to_dict(), sort_keys=False)  # order = feature order
    metrics = {
        name: {"rows": len(splits[name]), "groups": int(splits[name][params.group].nunique())}
        for name in SPLITS
    }
    metrics["n_features"] = len(prep.feature_names)
    # Imputation, reported: missing values per input column and split, and what they became.
    metrics["missing"] = {
        column: {name: int(splits[name][column].isna().sum()) for name in SPLITS}
        for column in prep.input_columns
        if any(splits[name][column].isna().any() for name in SPLITS)
    }
    metrics["fill"] = {c: prep.fill[c] for c in metrics["missing"] if c in prep.fill}
    if prep.classes is not None:
        metrics["classes"] = {
            str(c): int((features.target(splits["train"], prep) == i).sum())
            for i, c in enumerate(prep.classes)
        }
    io.write_json(args.metrics, metrics)
    log.info(
        "split %s rows; %d features",
        "/".join(str(metrics[n]["rows"]) for n in SPLITS),
        metrics["n_features"],
    )


if __name__ == "__main__":
    raise SystemExit(run(main))
