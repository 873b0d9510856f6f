"""Atomic writes and the formats stages share: JSON, Parquet (read in batches) and feature matrices.

Every output is written under a temporary name in its destination folder and renamed into place
only when complete, so a failed stage leaves no half-written file (house style, point 9).
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Rows per streamed batch: large enough that per-batch overhead vanishes, small enough that a
# batch of a wide table stays in tens of MiB. Every stage that streams reads this value.
BATCH_ROWS = 131_072


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write into; rename it onto ``path`` on success.

    Args:
        path: Final location of the file or folder.
        directory: Yield an empty temporary folder instead of a file name.

    On an exception the temporary file or folder is removed and ``path`` is left untouched. What a
    killed earlier run left behind (``.<name>.*`` beside ``path``: a process killed with SIGKILL
    cleans nothing) is removed first; the names are git-ignored.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{glob.escape(final.name)}.*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory:
            os.chmod(tmp, 0o755)
            if final.exists():
                shutil.rmtree(final)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _clean(value: Any) -> Any:
    """Make a value JSON-safe and stable: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps_json(data: Any, *, sort_keys: bool = True) -> str:
    """Serialise with a trailing newline, so equal data gives equal bytes.

    Args:
        data: What to write; numpy scalars become Python numbers and NaN becomes null.
        sort_keys: Sort mapping keys; turn off where key order carries meaning.
    """
    return json.dumps(_clean(data), indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], data: Any, *, sort_keys: bool = True) -> None:
    """Atomically write ``data`` as deterministic JSON (see :func:`dumps_json`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(dumps_json(data, sort_keys=sort_keys), encoding="utf-8")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    """Atomically write a frame as Parquet without its index (byte-stable for equal frames)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a Parquet file written by :func:`write_parquet`."""
    return pd.read_parquet(path, engine="pyarrow")


def parquet_rows(path: str | os.PathLike[str]) -> int:
    """The number of rows of a Parquet file, from its footer (no data is read)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def iter_parquet(
    path: str | os.PathLike[str], columns: Sequence[str] | None = None, batch_rows: int | None = None
) -> Iterator[pd.DataFrame]:
    """Stream a Parquet file as frames of at most ``batch_rows`` rows (default :data:`BATCH_ROWS`).

    An empty file yields one empty frame with its columns, so a consumer always sees the schema.
    """
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)
    empty = True
    for batch in source.iter_batches(batch_size=batch_rows or BATCH_ROWS, columns=columns):
        empty = False
        yield batch.to_pandas()
    if empty:
        yield source.schema_arrow.empty_table().select(columns or source.schema_arrow.names).to_pandas()


def read_columns(path: str | os.PathLike[str], columns: Sequence[str]) -> pd.DataFrame:
    """Only the named columns of a Parquet file (what an exact median or a split needs)."""
    return pd.read_parquet(path, engine="pyarrow", columns=list(columns))


class ParquetSink:
    """Append frames to one Parquet file (inside an atomic path), in the given or the first frame's schema."""

    def __init__(self, path: str | os.PathLike[str], schema: Any = None) -> None:
        self.path = Path(path)
        self.rows = 0
        self._writer: Any = None
        self._schema: Any = schema

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False, schema=self._schema)
        if self._writer is None:
            self._schema = self._schema or table.schema
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self._writer.write_table(table)
        self.rows += len(frame)

    def close(self, empty: pd.DataFrame | None = None) -> None:
        """Finish the file; with no frame written, write ``empty`` (a frame with the columns)."""
        if self._writer is None:
            if empty is None:
                raise ValueError(f"nothing was written to {self.path} and no empty frame was given")
            self.write(empty.iloc[:0])
        self._writer.close()


class MatrixSink:
    """A new ``.npy`` file of a known shape, filled in order, row slice after row slice.

    Written with plain file writes, not a memory map, so the rows written do not stay in the
    process's memory. ``width`` None makes a vector.
    """

    def __init__(self, path: str | os.PathLike[str], rows: int, width: int | None, dtype: Any) -> None:
        self.path, self.rows = Path(path), rows
        self.shape = (rows,) if width is None else (rows, width)
        self.dtype = np.dtype(dtype)
        descr = np.lib.format.dtype_to_descr(self.dtype)
        header = {"descr": descr, "fortran_order": False, "shape": self.shape}
        with open(self.path, "wb") as file:
            np.lib.format.write_array_header_1_0(file, header)
        self._file = open(self.path, "ab")  # noqa: SIM115 (closed in close())
        self.written = 0

    def write(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if values.shape[1:] != self.shape[1:] or self.written + len(values) > self.rows:
            raise ValueError(f"{self.path}: rows of shape {values.shape} do not fit {self.shape}")
        self._file.write(values.tobytes())
        self.written += len(values)

    def close(self) -> None:
        self._file.close()

    def finish(self) -> None:
        """Close, and check every row was written."""
        self.close()
        if self.written != self.rows:
            raise ValueError(f"{self.path}: {self.written} of {self.rows} rows written")


class Matrix:
    """A ``.npy`` file read in row slices with plain reads (never unpickled, never memory-mapped).

    Slicing (``m[i:j]``) reads those rows; indexing with sorted row positions reads the batches that
    hold them; ``np.asarray(m)`` reads it whole (for the small target vectors). Memory is what the
    caller keeps, whatever the file's size.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as file:
            version = np.lib.format.read_magic(file)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                version, np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(file)
            self.offset = file.tell()
        if fortran or dtype.hasobject:
            raise ValueError(f"{self.path}: not a C-ordered numeric matrix")
        self.shape, self.dtype = tuple(shape), dtype
        self.width = int(np.prod(self.shape[1:], dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, start: int, stop: int) -> np.ndarray:
        count = max(0, stop - start)
        offset = self.offset + start * self.width * self.dtype.itemsize
        values = np.fromfile(self.path, dtype=self.dtype, count=count * self.width, offset=offset)
        return values.reshape((count, *self.shape[1:]))

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise ValueError("only contiguous row slices are read")
            return self._read(start, stop)
        rows = np.asarray(key, dtype=np.int64)
        parts = []
        for start in range(0, len(self), BATCH_ROWS):
            stop = min(start + BATCH_ROWS, len(self))
            inside = _rows_in(rows, start, stop)
            if len(inside):
                parts.append(self._read(start, stop)[inside])
        return np.concatenate(parts) if parts else np.empty((0, *self.shape[1:]), self.dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self._read(0, len(self))
        return values if dtype is None else values.astype(dtype)


def matrix_paths(folder: str | os.PathLike[str], split: str) -> tuple[Path, Path]:
    """Where ``preprocess`` writes a split's feature matrix and target vector (``.npy``)."""
    return Path(folder, f"{split}.features.npy"), Path(folder, f"{split}.target.npy")


def load_split(folder: str | os.PathLike[str], split: str) -> tuple[Matrix, Matrix]:
    """A split's features ``[N, F]`` (float32) and target ``[N]``, read in row slices on demand."""
    x_path, y_path = matrix_paths(folder, split)
    return Matrix(x_path), Matrix(y_path)


def take_parquet(
    path: str | os.PathLike[str], rows: np.ndarray, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Rows at the given sorted, unique positions of a Parquet file, read in batches (bounded memory)."""
    parts, offset = [], 0
    for batch in iter_parquet(path, columns):  # yields at least one (maybe empty) frame
        parts.append(batch.iloc[_rows_in(rows, offset, offset + len(batch))])
        offset += len(batch)
    return pd.concat(parts, ignore_index=True)


def _rows_in(rows: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The positions among ``rows`` that fall in ``[start, stop)``, counted from ``start``."""
    return rows[(rows >= start) & (rows < stop)] - start
