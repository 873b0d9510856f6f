"""Batch scoring for ``mlpipe predict``: a CSV, Parquet or JSON-lines file of any size, in chunks.

Memory stays flat in the file's size: each chunk is read, checked against the bundle's schema,
scored and appended to the output, which is written under a temporary name and renamed into place
only when every chunk succeeded. The output holds the input's id columns that the bundle names
(``session_id``, ``student_id``, ...) and ``prediction`` (regression) or ``label`` and one
``probability_<class>`` per class (classification), one row per input row.

A bad row stops the run and is reported by line number (CSV and JSON lines, header = line 1) or row
number (Parquet, from 1), naming the field; with ``skip_invalid`` bad rows are reported, left out,
and the rest is scored. CSV and Parquet go through the column-wise checks (numbers written as text
are parsed); JSON lines keep JSON's types, so ``"age": "24"`` is refused as in the HTTP API.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.serving.predictor import FieldError, Predictor, RecordError, summarise
from mlpipe.sources import csv_text as tables

log = logging.getLogger("mlpipe.predict")

CHUNK_ROWS = 100_000
FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def file_format(path: str | os.PathLike[str]) -> str:
    """``csv``, ``parquet`` or ``jsonl``, from the file name's suffix.

    Raises:
        PipelineError: for any other suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise PipelineError(f"{path}: unknown format {suffix!r} (use {', '.join(sorted(FORMATS))})")
    return FORMATS[suffix]


@dataclass
class Chunk:
    """Rows read from the input: a frame (CSV, Parquet) or JSON records, and each row's line number."""

    rows: pd.DataFrame | list[Any]
    lines: np.ndarray


def _read_csv(path: Path, columns: list[str], text: list[str], chunk_rows: int) -> Iterator[Chunk]:
    # Bundle columns are read as text and parsed by the predictor, so a bad value is reported by line
    # number instead of failing the whole block; missing cells follow ingest's rule (tables.CSV_NULLS).
    header = tables.csv_header(path)
    wanted = [c for c in columns if c in header]
    reader = tables.csv_batches(
        path,
        block_size=max(1 << 20, chunk_rows * 128),
        columns=wanted,
        text=[c for c in text if c in header],
    )
    line = 2
    for batch in reader:
        frame = batch.to_pandas()
        yield Chunk(frame, np.arange(line, line + len(frame)))
        line += len(frame)
    if line == 2:
        yield Chunk(pd.DataFrame(columns=wanted), np.empty(0, np.int64))


def _read_parquet(path: Path, columns: list[str], chunk_rows: int) -> Iterator[Chunk]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise PipelineError(f"{path}: not a Parquet file ({' '.join(str(exc).split())[:200]})") from None
    wanted = [c for c in columns if c in file.schema_arrow.names]
    row = 1
    for batch in file.iter_batches(batch_size=chunk_rows, columns=wanted):
        frame = batch.to_pandas()
        yield Chunk(frame, np.arange(row, row + len(frame)))
        row += len(frame)


def _read_jsonl(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    records: list[Any] = []
    lines: list[int] = []
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise PipelineError(
                    f"{path}: line {number}: not UTF-8 text (Latin-1?): save it as UTF-8"
                ) from None
            if not text.strip():
                continue
            try:
                records.append(json.loads(text))
            except json.JSONDecodeError as exc:
                raise PipelineError(f"{path}: line {number}: not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise PipelineError(f"{path}: line {number}: JSON nested too deeply") from None
            lines.append(number)
            if len(records) == chunk_rows:
                yield Chunk(records, np.array(lines))
                records, lines = [], []
    if records:
        yield Chunk(records, np.array(lines))


def read_chunks(
    path: str | os.PathLike[str], columns: list[str], text: list[str], chunk_rows: int = CHUNK_ROWS
) -> Iterator[Chunk]:
    """The input file in chunks of about ``chunk_rows`` rows.

    Args:
        path: A CSV, Parquet or JSON-lines file.
        columns: The columns to read from CSV and Parquet (others are skipped).
        text: CSV columns read as text, for the predictor to parse and report by line.
        chunk_rows: About how many rows a chunk holds.
    """
    source = Path(path)
    if not source.is_file():
        raise PipelineError(f"input file not found: {source}")
    kind = file_format(source)
    if kind == "csv":
        return _read_csv(source, columns, text, chunk_rows)
    if kind == "parquet":
        return _read_parquet(source, columns, chunk_rows)
    return _read_jsonl(source, chunk_rows)


class _Writer:
    """Appends scored chunks to a CSV, Parquet or JSON-lines file."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path, self.kind = path, kind
        self._writer: Any = None
        self._file: Any = None

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa

        if self.kind == "jsonl":
            self._file = self._file or open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
            if len(frame):
                frame.to_json(self._file, orient="records", lines=True)
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            if self.kind == "csv":
                from pyarrow import csv

                self._writer = csv.CSVWriter(self.path, table.schema)
            else:
                import pyarrow.parquet as pq

                self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self._writer.write_table(table.cast(self._writer.schema) if self.kind == "parquet" else table)

    def close(self) -> None:
        for handle in (self._writer, self._file):
            if handle is not None:
                handle.close()


@dataclass
class Report:
    """What a run did: rows scored, rows left out, and the problems found (with line numbers)."""

    scored: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _describe(errors: list[FieldError], lines: np.ndarray, unit: str) -> list[str]:
    return [e.located("every row" if e.row is None else f"{unit} {lines[e.row]}") for e in errors]


def _ids(chunk: Chunk, ids: list[str]) -> pd.DataFrame:
    """The id columns of a chunk that has them (for JSON records: those the first record has)."""
    if not isinstance(chunk.rows, list):
        return pd.DataFrame({c: chunk.rows[c] for c in ids if c in chunk.rows.columns})
    first = chunk.rows[0] if chunk.rows and isinstance(chunk.rows[0], dict) else {}
    return pd.DataFrame(
        {c: [r.get(c) if isinstance(r, dict) else None for r in chunk.rows] for c in ids if c in first}
    )


def output_columns(predictor: Predictor, values: np.ndarray) -> dict[str, Any]:
    """``prediction`` (regression), or ``label`` and ``probability_<class>`` per class."""
    result = predictor.as_prediction(values)
    if result.classes is None:
        return {"prediction": values}
    columns: dict[str, Any] = {"label": result.labels}
    for name, column in zip(result.classes, result.probabilities().T, strict=True):
        columns[f"probability_{name}"] = column
    return columns


def _score(predictor: Predictor, chunk: Chunk) -> tuple[np.ndarray, list[FieldError]]:
    """The model's output for the chunk's valid rows (NaN for bad ones), and the problems found."""
    width = predictor.output_width
    values = np.full((len(chunk.lines), width) if width > 1 else len(chunk.lines), np.nan)
    if isinstance(chunk.rows, list):
        try:
            return predictor.predict_records(chunk.rows).values, []
        except RecordError as exc:
            errors = exc.errors
        bad = {e.row for e in errors}
        keep = [i for i in range(len(chunk.rows)) if i not in bad]
        if keep:
            values[keep] = predictor.predict_records([chunk.rows[i] for i in keep]).values
        return values, errors
    columns, errors = predictor.check_frame(chunk.rows)
    if any(e.row is None for e in errors):
        return values, errors
    keep = np.ones(len(values), dtype=bool)
    keep[[e.row for e in errors]] = False
    if keep.any():
        values[keep] = predictor.predict_columns(
            {k: v[keep] for k, v in columns.items()}, int(keep.sum())
        ).values
    return values, errors


def predict_file(
    predictor: Predictor,
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    skip_invalid: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    progress: bool | None = None,
) -> Report:
    """Score ``source`` into ``target`` (formats from the suffixes), chunk by chunk.

    Raises:
        PipelineError: for an unknown format, a missing input or column, or (unless
            ``skip_invalid``) any bad row, listing the lines; ``target`` is then left untouched.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    kind = file_format(target)
    unit = "row" if file_format(source) == "parquet" else "line"
    ids = [c for c in predictor.metadata.get("ids", []) if c not in predictor.metadata["inputs"]]
    report = Report()
    bar = tqdm(unit=" rows", disable=not sys.stderr.isatty() if progress is None else not progress)
    with files.atomic_path(target) as tmp:
        writer = _Writer(tmp, kind)
        try:
            inputs = list(predictor.metadata["inputs"])
            for chunk in read_chunks(source, [*ids, *inputs], inputs, chunk_rows):
                values, errors = _score(predictor, chunk)
                if errors and (not skip_invalid or any(e.row is None for e in errors)):
                    raise PipelineError(f"{source}: " + summarise(_describe(errors, chunk.lines, unit)))
                bad = np.zeros(len(values), dtype=bool)
                bad[[e.row for e in errors]] = True
                report.problems += _describe(errors, chunk.lines, unit)
                report.skipped += int(bad.sum())
                out = _ids(chunk, ids).assign(**output_columns(predictor, values))
                writer.write(out[~bad].reset_index(drop=True))
                report.scored += int((~bad).sum())
                bar.update(len(values))
        finally:
            writer.close()
            bar.close()
    report.seconds = time.perf_counter() - started
    return report
