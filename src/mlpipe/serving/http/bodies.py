"""The HTTP side of ``/predict``, apart from the service's state: reading and parsing a body,
the problems a request is refused with, the prediction log's lines and the OpenAPI record schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import Request, Response

from mlpipe.serving.schema import FieldError, quoted

MAX_PROBLEMS = 100  # problems listed in a 422; the response says how many there were


def json_response(status: int, payload: Any) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def check_headers(request: Request) -> None:
    """A ``/predict`` body must be JSON as sent: no content coding, a JSON media type (or none, as a
    bare client sends it), UTF-8.

    Raises:
        Problem: 415 naming the header, for a compressed body (``Content-Encoding: gzip``: decoding
            it would let a small body expand past the size limit), a media type that is not JSON
            (``text/plain``, or the form type ``curl -d`` sends without ``-H``), or a charset that is
            not UTF-8.
    """
    coding = request.headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        raise Problem(415, f"Content-Encoding {quoted(coding)} is not accepted: send the JSON uncompressed")
    declared = request.headers.get("content-type")
    if declared is None:
        return
    media, *parameters = [part.strip().lower() for part in declared.split(";")]
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise Problem(415, f"Content-Type {quoted(media)} is not JSON: send application/json")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            raise Problem(415, f"charset {quoted(value.strip())} is not accepted: send UTF-8 JSON")


async def read_body(request: Request, limit: int, timeout: float) -> bytes | None:
    """The request body, or None when it is longer than ``limit`` bytes (checked while reading).

    Raises:
        Problem: 408 if the whole body has not arrived within ``timeout`` seconds (a slow client,
            or a Content-Length larger than what is sent).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for part in request.stream():
                body += part
                if len(body) > limit:
                    return None
    except TimeoutError:
        raise Problem(408, f"the request body did not arrive within {timeout:g} s") from None
    return bytes(body)


class Problem(Exception):
    """A request the service refuses: its status and detail (the ``detail`` of the JSON body)."""

    def __init__(self, status: int, detail: Any, fields: Sequence[str | None] = (), **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra
        self.fields = fields  # the field of every problem found (for the metrics), shown or not

    def response(self) -> Response:
        return json_response(self.status, {"detail": self.detail, **self.extra})


def parse_records(body: bytes | None, max_body_bytes: int, max_batch: int) -> tuple[list[Any], bool]:
    """The records of a ``/predict`` body, and whether it was a single record.

    Raises:
        Problem: 413 (too large), 400 (not JSON), 422 (neither an object nor a non-empty array).
    """
    if body is None:
        raise Problem(413, f"request body is over {max_body_bytes} bytes")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"body is not valid JSON: {exc}") from None
    single = isinstance(payload, dict)
    records = [payload] if single else payload
    if not isinstance(records, list) or not records:
        raise Problem(422, "send one record (a JSON object) or a non-empty array of records")
    if len(records) > max_batch:
        raise Problem(413, f"a batch holds at most {max_batch} records, got {len(records)}")
    return records, single


def field_problems(errors: Sequence[FieldError], rows: Sequence[int]) -> Problem:
    """A 422 listing the first ``MAX_PROBLEMS`` field problems by row (``rows`` maps an error's
    row in its arm's batch to the request's), and how many there were. Only the problems shown
    are turned into JSON: a batch of 10,000 empty records has 150,000."""
    ordered = sorted(errors, key=lambda e: 0 if e.row is None else rows[e.row])
    shown = [
        {"row": None if e.row is None else rows[e.row], "field": e.field, "message": e.message}
        for e in ordered[:MAX_PROBLEMS]
    ]
    extra = {"problems": len(errors)} if len(errors) > MAX_PROBLEMS else {}
    return Problem(422, shown, fields=[e.field for e in errors], **extra)


LOGGED_NAME = 80  # characters of a field name a log line keeps
LOGGED_TEXT = 1_000  # characters of a text value a log line keeps
LOGGED_NESTED = 65_536  # bytes of a list or object value (a history) a log line keeps


def loggable(record: Any) -> Any:
    """A record as a log line holds it: field names and text values cut (``...``), and a list or
    object value over :data:`LOGGED_NESTED` bytes replaced by its size, so one request cannot write
    a line of megabytes (a 900 KB field name once made a 900 KB line)."""
    if not isinstance(record, dict):
        return record
    out = {}
    for name, value in record.items():
        if isinstance(value, str) and len(value) > LOGGED_TEXT:
            value = value[: LOGGED_TEXT - 3] + "..."
        elif isinstance(value, list | dict):
            size = len(orjson.dumps(value))
            if size > LOGGED_NESTED:
                value = f"<{type(value).__name__} of {size} bytes: not logged>"
        out[name if len(name) <= LOGGED_NAME else name[: LOGGED_NAME - 3] + "..."] = value
    return out


def log_lines(results: list[dict[str, Any]], records: list[Any], now: str) -> str:
    """One JSON line per prediction, with its record (:func:`loggable`); a record JSON cannot hold
    (nested too deep, integers too large) is replaced by the reason, so logging never fails a
    request."""
    lines = []
    for result, record in zip(results, records, strict=True):
        try:
            lines.append(orjson.dumps({"time": now, **result, "record": loggable(record)}))
        except (orjson.JSONEncodeError, RecursionError) as exc:
            lines.append(orjson.dumps({"time": now, **result, "record": None, "record_error": str(exc)}))
    return b"".join(line + b"\n" for line in lines).decode("utf-8")


def record_schema(inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A bundle's input schema as JSON Schema (for the OpenAPI docs)."""
    properties = {}
    for name, spec in inputs.items():
        prop: dict[str, Any] = {"type": spec["type"]}
        if "min" in spec:
            prop["minimum"] = spec["min"]
        if "max" in spec:
            prop["maximum"] = spec["max"]
        if spec["type"] == "string" and spec.get("allowed") is not None:
            prop["enum"] = spec["allowed"]  # the contract's levels; unseen ones among them are ignored
        elif spec["type"] == "string":
            prop["enum" if spec["unknown"] == "error" else "examples"] = spec["categories"]
        properties[name] = prop
    return {"type": "object", "properties": properties, "required": list(inputs)}
