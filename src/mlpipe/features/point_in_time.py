"""The early-warning dataset on disk: every student's point-in-time rows for every cutoff week
(:mod:`mlpipe.features.history`), split by student, written as one folder of arrays per split.

The student table is read whole (one row per student); the activity table is streamed in
student order, :attr:`HistoryParams.batch_rows` rows at a time, so memory is bounded by a batch
and the arrays, never by the activity. The split is by student, so all cutoffs of a student land
in the same split. Arrays are ``.npy`` files (read with ``allow_pickle=False``; ``np.save`` writes
the same bytes for the same arrays, so ``dvc.lock`` hashes repeat).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.core.errors import PipelineError
from mlpipe.core.history_params import HistoryParams
from mlpipe.features import history

SPLITS = ("train", "val", "test")
ARRAYS = ("cutoff", "ids", "static", "sequence", "mask", "label", "aggregates")


def columns_of(params: HistoryParams) -> history.Columns:
    return history.Columns(params.key, params.timestamp, params.start, params.outcome)


def read_table(path: str | Path) -> pd.DataFrame:
    """A student table (or a scored one) from a Parquet or CSV file.

    Raises:
        PipelineError: for another file type.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    raise PipelineError(f"{path}: read .parquet or .csv")


def checked_students(frame: pd.DataFrame, columns: history.Columns, static: list[str]) -> pd.DataFrame:
    """The student table under the standard names, its static columns checked.

    Raises:
        PipelineError: naming a missing, non-numeric or null static column, or a repeated key.
    """
    students, _ = columns.standard(frame, pd.DataFrame(columns=[columns.key, columns.timestamp]))
    for column in static:
        if column not in students.columns:
            raise PipelineError(f"the student table has no static column {column!r}")
        if not pd.api.types.is_numeric_dtype(students[column]) or pd.api.types.is_bool_dtype(
            students[column]
        ):
            raise PipelineError(
                f"static column {column!r} is {students[column].dtype}: the static branch reads numbers"
            )
        if students[column].isna().any():
            row = int(np.flatnonzero(students[column].isna().to_numpy())[0])
            raise PipelineError(f"static column {column!r} is null in row {row} of the student table")
    repeated = students["student_id"].duplicated()
    if repeated.any():
        raise PipelineError(
            f"student table: {columns.key} {students['student_id'][repeated].iloc[0]} repeats"
        )
    return students


def activity_frames(
    path: str | Path, columns: history.Columns, channels: list[str], batch_rows: int
) -> Iterator[pd.DataFrame]:
    """The activity table's key, timestamp and channels (Parquet or CSV), ``batch_rows`` rows at a
    time, under the standard names.

    Raises:
        PipelineError: naming a declared column the table lacks.
    """
    wanted = [columns.key, columns.timestamp, *channels]
    renamed = {columns.key: "student_id", columns.timestamp: "date"}
    if Path(path).suffix.lower() != ".parquet":
        for frame in pd.read_csv(path, usecols=wanted, chunksize=batch_rows):
            yield frame.rename(columns=renamed)
        return
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    missing = [c for c in wanted if c not in file.schema_arrow.names]
    if missing:
        raise PipelineError(
            f"the activity table has no column {missing[0]!r} (it has: {', '.join(file.schema_arrow.names)})"
        )
    for batch in file.iter_batches(batch_size=batch_rows, columns=wanted):
        yield batch.to_pandas().rename(columns=renamed)


def split_of(ids: np.ndarray, seed: int, params: HistoryParams) -> np.ndarray:
    """Each student's split (0 train, 1 val, 2 test): a seeded permutation of the sorted ids."""
    order = np.random.default_rng([seed, 10]).permutation(np.sort(ids))
    n_test = round(params.test_share * len(order))
    n_val = round(params.val_share * len(order))
    split = pd.Series(0, index=order)
    split.iloc[:n_test] = 2
    split.iloc[n_test : n_test + n_val] = 1
    return split.reindex(ids).to_numpy()


def build(
    students_path: str | Path, activity_path: str | Path, params: HistoryParams, seed: int
) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """Every split's arrays (:data:`ARRAYS`, rows of every cutoff, cutoff by cutoff within each
    batch of students) and the aggregates' column names."""
    students = checked_students(read_table(students_path), columns_of(params), params.static)
    split = pd.Series(split_of(students["student_id"].to_numpy(), seed, params), students["student_id"])
    parts: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in SPLITS}
    names: list[str] = []
    for some, batch in history.by_student_batch(
        students, activity_frames(activity_path, columns_of(params), list(params.channels), params.batch_rows)
    ):
        for cutoff in params.cutoffs:
            found = history.as_of(some, batch, cutoff, params.weeks, params.channels, params.static)
            names = list(found.aggregates.columns)
            where = split.reindex(found.ids).to_numpy()
            for index, name in enumerate(SPLITS):
                keep = where == index
                parts[name].append(
                    {
                        "cutoff": np.full(int(keep.sum()), cutoff, np.int64),
                        "ids": found.ids[keep],
                        "static": found.static.to_numpy(np.float64)[keep],
                        "sequence": found.sequence[keep],
                        "mask": found.mask[keep],
                        "label": found.label[keep],
                        "aggregates": found.aggregates.to_numpy(np.float64)[keep],
                    }
                )
    joined = {
        name: {key: np.concatenate([p[key] for p in found]) for key in ARRAYS}
        for name, found in parts.items()
    }
    return joined, names


def write(folder: Path, splits: dict[str, dict[str, np.ndarray]]) -> None:
    for name, arrays in splits.items():
        (folder / name).mkdir(parents=True)
        for key, values in arrays.items():
            np.save(folder / name / f"{key}.npy", values, allow_pickle=False)


def load(folder: str | Path, split: str) -> dict[str, np.ndarray]:
    """One split's arrays, written by :func:`write`."""
    return {key: np.load(Path(folder) / split / f"{key}.npy", allow_pickle=False) for key in ARRAYS}


def by_cutoff(
    arrays: dict[str, np.ndarray], static: list[str], aggregates: list[str]
) -> dict[int, history.History]:
    """A split's arrays as one :class:`History` per cutoff week."""
    out = {}
    for cutoff in np.unique(arrays["cutoff"]):
        rows = arrays["cutoff"] == cutoff
        out[int(cutoff)] = history.History(
            cutoff=int(cutoff),
            ids=arrays["ids"][rows],
            static=pd.DataFrame(arrays["static"][rows], columns=static),
            sequence=arrays["sequence"][rows],
            mask=arrays["mask"][rows],
            aggregates=pd.DataFrame(arrays["aggregates"][rows], columns=aggregates),
            label=arrays["label"][rows],
        )
    return out


@dataclass(frozen=True)
class SequenceScale:
    """``log1p`` of each channel, then its training-split mean and standard deviation over the
    observed weeks; and the static columns' means and deviations."""

    channel_mean: np.ndarray
    channel_std: np.ndarray
    static_mean: np.ndarray
    static_std: np.ndarray

    def to_dict(self) -> dict[str, list[float]]:
        return {
            k: getattr(self, k).tolist() for k in ("channel_mean", "channel_std", "static_mean", "static_std")
        }

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> SequenceScale:
        return cls(**{k: np.asarray(v, np.float64) for k, v in data.items()})

    @classmethod
    def fit(cls, static: np.ndarray, sequence: np.ndarray, mask: np.ndarray) -> SequenceScale:
        seen = np.log1p(np.maximum(np.nan_to_num(sequence[mask], nan=0.0), 0.0))
        return cls(
            seen.mean(axis=0),
            np.where(seen.std(axis=0) > 0, seen.std(axis=0), 1.0),
            static.mean(axis=0),
            np.where(static.std(axis=0) > 0, static.std(axis=0), 1.0),
        )

    def apply(self, static: np.ndarray, sequence: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """The network's three inputs, by :func:`lower_history` in numpy (float64 until the cast)."""
        from mlpipe.features.preprocessor import NumpyOps

        fixed, scaled = lower_history(
            NumpyOps(), np.asarray(static, np.float64), np.asarray(sequence, np.float64), mask, self
        )
        return {"static": fixed, "sequence": scaled, "mask": np.asarray(mask, bool)}


def lower_history(ops: Any, static: Any, sequence: Any, mask: Any, scale: SequenceScale) -> tuple[Any, Any]:
    """The one definition of how a history and a static row become the network's float32 inputs,
    in a backend's primitives (:class:`mlpipe.features.plan.Ops`: numpy for training, ONNX nodes
    for the bundle, TensorFlow for the SavedModel): a null channel value counts as 0, then
    ``log1p`` of the value (negatives as 0), standardised by the training split's channel mean and
    deviation, and 0 in the weeks the mask leaves out; the static row standardised.

    Returns:
        The static ``[N, S]`` and sequence ``[N, W, C]`` inputs, float32.
    """
    zero = ops.const(0.0, "float64")
    filled = ops.where(ops.is_nan(sequence), zero, sequence)
    logged = ops.log1p(ops.maximum(filled, zero))
    scaled = (logged - ops.const(scale.channel_mean, "float64")) / ops.const(scale.channel_std, "float64")
    masked = ops.where(ops.expand_last(mask), scaled, zero)
    fixed = (static - ops.const(scale.static_mean, "float64")) / ops.const(scale.static_std, "float64")
    return ops.as_float32(fixed), ops.as_float32(masked)
