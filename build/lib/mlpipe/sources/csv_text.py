"""A team's CSV text: streamed batches, one rule for missing values, errors that name the line."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mlpipe.core.errors import PipelineError

# Missing values, one rule for every reader of a team's table (ingest's snapshot and mlpipe
# predict alike): a null (SQL NULL, a Parquet null) or an empty text cell is missing, in any column;
# in a CSV file so is a cell that holds exactly one of these texts (Arrow's list, which pandas and R
# also write). Anything else is a value.
CSV_NULLS = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null",
)  # fmt: skip


def csv_batches(
    path: str | os.PathLike[str], *, block_size: int, columns: Sequence[str] = (), text: Sequence[str] = ()
) -> Iterator[Any]:
    """A CSV file's ``pyarrow.RecordBatch`` es, streamed, under the rule above.

    Args:
        path: The CSV file (UTF-8); its first line names the columns.
        block_size: Bytes per block (and per type inference).
        columns: Only these columns (all when empty).
        text: Columns read as text, whatever they hold.

    Raises:
        PipelineError: ``<file>: line N: <reason>`` (or without the line where none applies) for a
            file that is empty, not UTF-8 text, binary, or has a row of the wrong width.
    """
    import pyarrow as pa
    from pyarrow import csv

    bad_rows: list[Any] = []

    def invalid(row: Any) -> str:  # pyarrow.csv.InvalidRow: keep the first, then stop the read
        bad_rows.append(row)
        return "error"

    convert = csv.ConvertOptions(
        null_values=list(CSV_NULLS),
        strings_can_be_null=True,
        include_columns=list(columns),
        column_types={c: pa.string() for c in text},
    )
    if problem := not_csv_text(Path(path)):  # before Arrow reads (and decodes) a binary row
        raise PipelineError(problem)
    try:
        yield from csv.open_csv(
            path,
            read_options=csv.ReadOptions(block_size=block_size),
            parse_options=csv.ParseOptions(invalid_row_handler=invalid),
            convert_options=convert,
        )
    except pa.ArrowInvalid as exc:
        raise PipelineError(csv_problem(Path(path), str(exc), bad_rows[:1])) from None


def csv_header(path: str | os.PathLike[str]) -> list[str]:
    """The column names of a CSV file (its first block read), with :func:`csv_batches`' errors."""
    for batch in csv_batches(path, block_size=1 << 16):
        return batch.schema.names
    return []


def csv_problem(path: Path, message: str, bad_rows: list[Any]) -> str:
    """One line naming the file, the line where there is one, and what is wrong with it."""
    with open(path, "rb") as file:
        head = file.read(1 << 16)
    if bad_rows:
        row = bad_rows[0]
        line = (
            row.number
            if row.number is not None and row.number > 0
            else first_row_of_width(path, row.actual_columns)
        )
        where = f"line {line}" if line is not None else "a row"
        return f"{path}: {where}: {row.actual_columns} fields, the header has {row.expected_columns}"
    if "UTF8" in message or "UTF-8" in message:
        line = first_non_utf8_line(path)
        return f"{path}: line {line}: not UTF-8 text (Latin-1?): save it as UTF-8"
    if b"\n" not in head and b"\r" not in head:
        return f"{path}: line 1: a header and no rows"
    return f"{path}: {' '.join(message.split())[:300]}"


def not_csv_text(path: Path) -> str | None:
    """What makes a file no CSV text at all (empty, UTF-16, binary), from its first 64 KiB; or None."""
    with open(path, "rb") as file:
        head = file.read(1 << 16)
    if not head:
        return f"{path}: empty file (no header line)"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return f"{path}: UTF-16 text: save it as UTF-8"
    if b"\x00" in head:
        return f"{path}: a binary file, not CSV text"
    return None


def first_row_of_width(path: str | os.PathLike[str], width: int) -> int | None:
    """The line number where the first CSV row of ``width`` fields starts (after the header), or None."""
    import csv

    with open(path, encoding="utf-8", errors="replace", newline="") as file:
        reader = csv.reader(file)
        next(reader, None)
        start = reader.line_num + 1
        for row in reader:
            if len(row) == width:
                return start
            start = reader.line_num + 1
    return None


def first_non_utf8_line(path: str | os.PathLike[str]) -> int | None:
    """The number of the first line of a file that is not valid UTF-8, or None."""
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def blank_to_null(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every empty text cell missing (the rule above, for sources that keep ``""``)."""
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
            blank = values.eq("").to_numpy(dtype=bool, na_value=False)
            if blank.any():
                frame[column] = values.mask(blank)
    return frame
