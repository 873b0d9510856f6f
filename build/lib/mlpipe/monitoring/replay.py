"""``mlpipe replay``: send rows of the source to a running service, as its clients would.

The rows are the ingest query's (``ingest.url`` / ``ingest.query``) that match ``--where``, without
the target (a client does not know the outcome yet), posted in batches to ``/predict``. This is how
the README's walk-through scores a new term through the served model, so its predictions land in
the service's log; it also replays past traffic to a new server (a shadow test).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mlpipe.core.errors import PipelineError
from mlpipe.core.params import Params


@dataclass(frozen=True)
class Replayed:
    sent: int
    refused: int
    first_refusal: str | None


def post(url: str, records: list[dict], timeout: float = 60) -> tuple[int, str]:
    """POST one batch; the status and the body.

    Raises:
        PipelineError: if the service cannot be reached.
    """
    try:
        request = urllib.request.Request(
            url, data=json.dumps(records).encode("utf-8"), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        raise PipelineError(f"cannot reach the service at {url}: {getattr(exc, 'reason', exc)}") from None
    except (ValueError, http.client.InvalidURL) as exc:
        raise PipelineError(f"--url {url!r} is not an http URL: {exc}") from None


def replay(params: Params, folder: Path, where: str, url: str, batch: int = 100) -> Replayed:
    """Post the source rows that match ``where`` to ``url`` in batches of ``batch``.

    Raises:
        PipelineError: if the source cannot be read or the service reached.
    """
    from mlpipe.sources import reading as sources

    if params.ingest.query is None:
        raise PipelineError("mlpipe replay reads a database source (ingest.query)")
    query = f"SELECT * FROM ({params.ingest.query}) AS source WHERE {where}"
    sent = refused = 0
    first: str | None = None
    with contextlib.chdir(folder):  # a SQLite path is relative to the pipeline's folder
        for frame in sources.read_chunks(
            sources.database_url(params.ingest.url), query, chunk_rows=10 * batch
        ):
            rows = frame.drop(columns=[params.preprocess.target], errors="ignore")
            records = json.loads(rows.to_json(orient="records", date_format="iso"))
            for start in range(0, len(records), batch):
                status, body = post(url, records[start : start + batch])
                sent += len(records[start : start + batch])
                if status != 200:
                    refused += 1
                    first = first or f"{status}: {body[:300]}"
    return Replayed(sent, refused, first)
