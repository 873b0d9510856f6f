"""Stage ``preprocess``: split by group, fit the preprocessing on the training split, transform once.

Inputs: the validated table from ``validate``.
Outputs: one folder (``--out``) holding, for each of ``train``, ``val`` and
``test``: the raw records (``<split>.parquet``, split so that no group, e.g. no student, is in two
splits; a table without ``preprocess.group`` is split row by row), the feature matrix
(``<split>.features.npy``, float32) and the target (``<split>.target.npy``); beside it the fitted
preprocessor as JSON, and split metrics.
Params: ``base.seed``, ``preprocess.*`` (column roles, derived formulas, split shares, policy), and
``validate.columns`` (which columns may be null, and so get a fill value).

Streams: the split reads only the group column whole; every other pass reads bounded batches
(:data:`~mlpipe.core.files.BATCH_ROWS`), so memory is flat in the number of rows. The features are
computed here once, with the one fitted :class:`~mlpipe.features.preprocessor.Preprocessor`;
``train``, ``evaluate`` and ``package`` read the matrices in row slices instead of transforming
again. The raw splits stay for what needs records: permutation importance and the bundle's parity
check.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import load_params
from mlpipe.core.stage import run
from mlpipe.features import batches, fitting, preprocessor

log = logging.getLogger("mlpipe.preprocess")

SPLITS = ("train", "val", "test")


def assign_groups(
    groups: pd.Series, group: str, val_share: float, test_share: float, seed: int
) -> dict[str, np.ndarray]:
    """Assign whole groups to train/val/test at random, by share of groups; each split gets one or more.

    Args:
        groups: The group column (every row's value; missing values are in no split).

    Raises:
        PipelineError: if there are fewer than three groups.
    """
    values = np.sort(groups.dropna().unique())
    if len(values) < 3:
        raise PipelineError(f"need at least 3 distinct values of {group!r} to split, found {len(values)}")
    shuffled = np.random.default_rng([seed, 10]).permutation(values)
    n_test = max(1, round(test_share * len(values)))
    n_val = max(1, round(val_share * len(values)))
    n_val = min(n_val, len(values) - n_test - 1)
    return {
        "test": shuffled[:n_test],
        "val": shuffled[n_test : n_test + n_val],
        "train": shuffled[n_test + n_val :],
    }


ROW = "row position"  # what a table without preprocess.group is split by


def row_positions(rows: int) -> pd.Series:
    """Each row its own group (no ``preprocess.group``): the rows' positions, 0 to ``rows - 1``."""
    return pd.Series(np.arange(rows), name=ROW)


def split_by_group(
    frame: pd.DataFrame, group: str | None, val_share: float, test_share: float, seed: int
) -> dict[str, pd.DataFrame]:
    """A frame's rows by split (see :func:`assign_groups`); rows keep their order within a split.
    Without a ``group``, rows are assigned one by one (by their seeded position).

    Raises:
        PipelineError: if the group column is missing or there are fewer than three groups.
    """
    if group is not None and group not in frame.columns:
        raise PipelineError(f"preprocess.group: column {group!r} is not in the data")
    keys = frame[group] if group is not None else row_positions(len(frame))
    assignment = assign_groups(keys, group or ROW, val_share, test_share, seed)
    return {name: frame[keys.isin(assignment[name]).to_numpy()].reset_index(drop=True) for name in SPLITS}


def write_splits(
    source: Path, group: str | None, assignment: dict[str, np.ndarray], folder: Path
) -> dict[str, int]:
    """Stream the table's rows into ``<split>.parquet`` files by group (without one, by row
    position), keeping its schema and row order.

    Returns:
        The rows per split.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.ParquetFile(source)
    kind = table.schema_arrow.field(group).type if group is not None else pa.int64()
    members = {name: pa.array(assignment[name].tolist(), type=kind) for name in SPLITS}
    rows = dict.fromkeys(SPLITS, 0)
    writers = {
        name: pq.ParquetWriter(folder / f"{name}.parquet", table.schema_arrow, compression="zstd")
        for name in SPLITS
    }
    offset = 0
    try:
        for batch in table.iter_batches(batch_size=files.BATCH_ROWS):
            keys = (
                batch.column(group)
                if group is not None
                else pa.array(np.arange(offset, offset + batch.num_rows))
            )
            offset += batch.num_rows
            for name in SPLITS:
                part = batch.filter(pc.is_in(keys, value_set=members[name]))
                if part.num_rows:
                    writers[name].write_batch(part)
                    rows[name] += part.num_rows
    finally:
        for writer in writers.values():
            writer.close()
    return rows


def write_matrices(
    frames: Iterator[pd.DataFrame], prep: preprocessor.Preprocessor, x: files.MatrixSink, y: files.MatrixSink
) -> dict[str, int]:
    """Transform a split batch by batch into the features ``x`` and the target ``y``.

    Returns:
        Missing values per input column (imputation, reported).

    Raises:
        PipelineError: naming the column and the row within the split, for anything the
            preprocessor refuses.
    """
    offset = 0
    missing = dict.fromkeys(prep.input_columns, 0)
    for batch in frames:
        x.write(preprocessor.transform(batch, prep, offset))
        y.write(preprocessor.target(batch, prep, offset))
        for column in prep.input_columns:
            missing[column] += int(batch[column].isna().sum())
        offset += len(batch)
    return missing


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlpipe.preprocess", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--data", required=True, help="validated table (Parquet)")
    parser.add_argument("--out", required=True, help="folder for the splits and their matrices")
    parser.add_argument("--preprocessor", required=True, help="fitted preprocessor JSON to write")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    return parser.parse_args(argv)


def write_split_matrices(folder: Path, rows: dict[str, int], prep: preprocessor.Preprocessor) -> dict:
    """Each split's feature and label matrices, next to its Parquet file in ``folder``; the
    missing values per split and input column.

    Raises:
        PipelineError: naming the split, when a value cannot be transformed.
    """
    missing = {}
    for name in SPLITS:
        x_path, y_path = files.matrix_paths(folder, name)
        x = files.MatrixSink(x_path, rows[name], len(prep.feature_names), np.float32)
        y = files.MatrixSink(y_path, rows[name], None, np.float32 if prep.classes is None else np.int32)
        try:
            missing[name] = write_matrices(files.iter_parquet(folder / f"{name}.parquet"), prep, x, y)
        except PipelineError as exc:
            raise PipelineError(f"{name} split: {exc}") from None
        finally:
            x.close()
            y.close()
        x.finish()
        y.finish()
    return missing


def split_metrics(
    prep: preprocessor.Preprocessor,
    rows: dict[str, int],
    groups: dict[str, int],
    missing: dict[str, dict[str, int]],
    class_counts: np.ndarray | None,
) -> dict[str, Any]:
    """Rows and groups per split, the feature count, the imputation (missing values per input
    column and split, and what they became) and, for classification, the training classes."""
    metrics: dict[str, Any] = {name: {"rows": rows[name], "groups": groups[name]} for name in SPLITS}
    metrics["n_features"] = len(prep.feature_names)
    metrics["missing"] = {
        column: {name: missing[name][column] for name in SPLITS}
        for column in prep.input_columns
        if any(missing[name][column] for name in SPLITS)
    }
    metrics["fill"] = {c: prep.fill[c] for c in metrics["missing"] if c in prep.fill}
    if class_counts is not None:
        metrics["classes"] = {str(c): int(n) for c, n in zip(prep.classes, class_counts, strict=True)}
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    all_params = load_params(args.params)
    params = all_params.preprocess
    table = batches.ParquetTable(args.data)
    fitting.check_roles(table.columns, params)
    if params.group is not None:
        keys = files.read_columns(args.data, [params.group])[params.group]
    else:
        keys = row_positions(files.parquet_rows(args.data))
    assignment = assign_groups(
        keys, params.group or ROW, params.val_share, params.test_share, all_params.base.seed
    )
    # Only columns the data contract lets be null get a fill; a null anywhere else is refused.
    nullable = [name for name, rule in all_params.validate.columns.items() if rule.nullable]
    with files.atomic_path(args.out, directory=True) as tmp:
        rows = write_splits(Path(args.data), params.group, assignment, tmp)
        prep = fitting.fit(batches.ParquetTable(tmp / "train.parquet"), params, nullable)
        missing = write_split_matrices(tmp, rows, prep)
        labels = np.asarray(files.Matrix(files.matrix_paths(tmp, "train")[1]))
        class_counts = np.bincount(labels, minlength=len(prep.classes)) if prep.classes else None
    files.write_json(args.preprocessor, prep.to_dict(), sort_keys=False)  # order = feature order
    groups = {name: len(assignment[name]) for name in SPLITS}
    metrics = split_metrics(prep, rows, groups, missing, class_counts)
    files.write_json(args.metrics, metrics)
    log.info(
        "split %s rows; %d features",
        "/".join(str(metrics[n]["rows"]) for n in SPLITS),
        metrics["n_features"],
    )


if __name__ == "__main__":
    raise SystemExit(run(main))
