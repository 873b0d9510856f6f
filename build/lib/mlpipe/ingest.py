"""Stage ``ingest``: snapshot the raw table from a SQL database, a CSV or a Parquet file into Parquet.

Inputs: the source at ``ingest.url`` (for the demo, the SQLite file written by ``simulate``).
Outputs: the raw snapshot (Parquet) and a metrics file with its extent: rows, columns and, with
``ingest.key`` (a column that grows with new rows, e.g. ``session_id``), its newest value, which
``mlpipe retrain`` counts new rows from.
Params: ``ingest.url``, ``ingest.query``, ``ingest.key``.

The URL is any SQLAlchemy URL, with ``ingest.query`` the SQL to run; or the path of a ``.csv`` or
``.parquet`` file, with ``query: null``. A URL must not hold a password: the password comes from
the environment variable ``MLPIPE_DB_PASSWORD``. Rows are streamed in chunks, so the snapshot can
be larger than memory.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import IngestParams, load_params
from mlpipe.core.stage import run
from mlpipe.sources import csv_text as tables
from mlpipe.sources.reading import database_url, is_file_source, read_chunks, read_file_chunks

log = logging.getLogger("mlpipe.ingest")


def write_snapshot(chunks: Iterator[pd.DataFrame], path: Path, key: str | None = None) -> dict[str, Any]:
    """Write the chunks to one Parquet file; every chunk must have the first one's columns. The
    metrics: rows, columns and, with ``key``, the key column's newest (largest) value.

    Raises:
        PipelineError: if there are no rows, a chunk's column types cannot match the first's, or
            ``key`` is not a column.
    """
    writer: pq.ParquetWriter | None = None
    rows = 0
    newest: Any = None
    try:
        for frame in chunks:
            # the one missing-value rule (tables.CSV_NULLS): an empty text is missing here as in serving
            table = pa.Table.from_pandas(tables.blank_to_null(frame), preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            else:
                try:
                    table = table.cast(writer.schema)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                    raise PipelineError(
                        f"rows {rows + 1}-{rows + len(frame)} change a column's type: {exc}"
                    ) from None
            writer.write_table(table)
            rows += len(frame)
            if key is not None:
                newest = newest_of(frame, key, newest)
    finally:
        if writer is not None:
            writer.close()
    if writer is None or rows == 0:
        raise PipelineError("the source has no rows (ingest.url / ingest.query): nothing to train on")
    extent = {"newest": newest, "key": key} if key is not None else {}
    return {"rows": rows, "columns": len(writer.schema), **extent}


def newest_of(frame: pd.DataFrame, key: str, newest: Any) -> Any:
    """The larger of ``newest`` and the chunk's largest ``key`` (a number or a text, e.g. a date).

    Raises:
        PipelineError: if ``key`` is not a column.
    """
    if key not in frame.columns:
        raise PipelineError(
            f"ingest.key {key!r} is not a column of the source (it has: {', '.join(frame.columns)})"
        )
    largest = frame[key].dropna().max()
    if pd.isna(largest):
        return newest
    value = largest.item() if hasattr(largest, "item") else largest
    return value if newest is None or value > newest else newest


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlpipe.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--out", required=True, help="Parquet snapshot to write")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    args = parser.parse_args(argv)

    params: IngestParams = load_params(args.params).ingest
    if is_file_source(params.url):
        if params.query is not None:
            raise PipelineError("ingest.query applies to databases: set it to null for a CSV or Parquet file")
        chunks = read_file_chunks(Path(params.url))
    else:
        if params.query is None:
            raise PipelineError("ingest.query is required for a database URL")
        chunks = read_chunks(database_url(params.url), params.query)
    with files.atomic_path(args.out) as tmp:
        metrics = write_snapshot(chunks, tmp, params.key)
    files.write_json(args.metrics, metrics)
    log.info("snapshot of %d rows x %d columns", metrics["rows"], metrics["columns"])


if __name__ == "__main__":
    raise SystemExit(run(main))
