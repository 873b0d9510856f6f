"""The sources a pipeline reads a table from: any SQLAlchemy URL (its password from the
environment), or a CSV or Parquet file, streamed in chunks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import sqlalchemy
from sqlalchemy.engine import URL, make_url

from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.sources import csv_text as tables

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
            for batch in tables.csv_batches(path, block_size=64 << 20):
                yield batch.to_pandas()
        else:
            yield from files.iter_parquet(path, batch_rows=chunk_rows)
    except (pa.ArrowInvalid, OSError) as exc:
        raise PipelineError(f"cannot read {path}: {exc}".splitlines()[0]) from None
