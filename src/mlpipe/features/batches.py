"""A table to fit on, read in bounded batches: a Parquet file streamed (the ``preprocess`` stage),
or a frame held in memory (tests, notebooks)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from mlpipe.core import files


class Table:
    """Rows to fit on, read in batches: the columns, the row count, batches, and one whole column."""

    columns: list[str]
    rows: int

    def batches(self, columns: Sequence[str]) -> Iterator[pd.DataFrame]:
        raise NotImplementedError

    def column(self, name: str) -> pd.Series:
        raise NotImplementedError


class FrameTable(Table):
    """A frame in memory, seen as one batch."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame.reset_index(drop=True)
        self.columns = list(frame.columns)
        self.rows = len(frame)

    def batches(self, columns: Sequence[str]) -> Iterator[pd.DataFrame]:
        yield self.frame[list(columns)]

    def column(self, name: str) -> pd.Series:
        return self.frame[name]


class ParquetTable(Table):
    """A Parquet file, streamed in batches of ``batch_rows`` (default ``files.BATCH_ROWS``)."""

    def __init__(self, path: str | os.PathLike[str], batch_rows: int | None = None) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.batch_rows = batch_rows
        source = pq.ParquetFile(self.path)
        self.columns = list(source.schema_arrow.names)
        self.rows = source.metadata.num_rows

    def batches(self, columns: Sequence[str]) -> Iterator[pd.DataFrame]:
        return files.iter_parquet(self.path, list(dict.fromkeys(columns)), self.batch_rows)

    def column(self, name: str) -> pd.Series:
        return files.read_columns(self.path, [name])[name]
