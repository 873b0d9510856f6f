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
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy
from sqlalchemy.engine import URL, make_url

from mlpipe import io
from mlpipe.errors import PipelineError
from mlpipe.params import IngestParams, load_params
from mlpipe.stage import run

log = logging.getLogger("mlpipe.ingest")

PASSWORD_ENV = "MLPIPE_DB_PASSWORD"
CHUNK_ROWS = 250_000


def database_url(url: str, environ: dict[str, str] | os._Environ[str] = os.environ) -> URL:
    """Parse ``ingest.url`` and add the password from the environment.

    Raises:
        PipelineError: if the URL is malformed, holds a password, or names a missing SQLite file.
    """
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise PipelineError(f"ingest.url is not a valid SQLAlchemy URL: {url!r}") from None
    if parsed.password:
        raise PipelineError(
            f"ingest.url must not contain a password: remove it and set {PASSWORD_ENV} instead"
        )
    if parsed.get_backend_name() == "sqlite":  # a file: no server, no password
        if parsed.database not in (None, "", ":memory:") and not Path(parsed.database).is_file():
            raise PipelineError(f"ingest.url: SQLite database file not found: {parsed.database}")
    elif environ.get(PASSWORD_ENV):
        parsed = parsed.set(password=environ[PASSWORD_ENV])
    return parsed


def read_chunks(url: URL, query: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Yield the query's rows as frames of at most ``chunk_rows`` rows.

    Raises:
        PipelineError: if the database cannot be reached or the query fails.
    """
    shown = url.render_as_string(hide_password=True)
    try:
        engine = sqlalchemy.create_engine(url)
    except (sqlalchemy.exc.ArgumentError, ImportError) as exc:
        raise PipelineError(f"ingest.url {shown}: {exc}".splitlines()[0]) from None
    try:
        with engine.connect() as con:
            result = con.execution_options(stream_results=True).execute(sqlalchemy.text(query))
            columns = list(result.keys())
            while rows := result.fetchmany(chunk_rows):
                yield pd.DataFrame.from_records(rows, columns=columns)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise PipelineError(f"cannot read from {shown}: {detail}") from None
    finally:
        engine.dispose()


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
            # the one missing-value rule (io.CSV_NULLS): an empty text is missing here as in serving
            table = pa.Table.from_pandas(io.blank_to_null(frame), preserve_index=False)
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


FILE_SUFFIXES = (".csv", ".parquet", ".pq")


def is_file_source(url: str) -> bool:
    """Whether ``ingest.url`` names a CSV or Parquet file rather than a database."""
    return "://" not in url and url.lower().endswith(FILE_SUFFIXES)


def read_file_chunks(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Yield a CSV or Parquet file's rows as frames, streaming.

    Raises:
        PipelineError: if the file is missing or cannot be parsed.
    """
    if not path.is_file():
        raise PipelineError(f"ingest.url: file not found: {path}")
    try:
        if path.suffix.lower() == ".csv":
            # large blocks: one type inference for most files
            for batch in io.csv_batches(path, block_size=64 << 20):
                yield batch.to_pandas()
        else:
            yield from io.iter_parquet(path, batch_rows=chunk_rows)
    except (pa.ArrowInvalid, OSError) as exc:
        raise PipelineError(f"cannot read {path}: {exc}".splitlines()[0]) from None


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
    with io.atomic_path(args.out) as tmp:
        metrics = write_snapshot(chunks, tmp, params.key)
    io.write_json(args.metrics, metrics)
    log.info("snapshot of %d rows x %d columns", metrics["rows"], metrics["columns"])


if __name__ == "__main__":
    raise SystemExit(run(main))
