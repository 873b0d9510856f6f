"""``mlpipe serve``: the HTTP service (FastAPI) over one bundle, or a champion and a challenger.

Endpoints: ``GET /health`` (the process is alive), ``GET /ready`` (every bundle verified and loaded;
503 until then, and for good if a bundle fails verification), ``GET /metadata``, ``POST /predict``
(one record as a JSON object, or a batch as an array of them) and the OpenAPI docs at ``/docs``.

Champion/challenger: a record goes to the challenger when a stable hash of its routing key (e.g.
``student_id``) falls under the challenger's share, so the same student always gets the same model;
every prediction names the model, version and arm that made it, and can be appended to a JSON-lines
log for monitoring. Malformed input gets a 4xx naming the field (400 bad JSON, 413 too large, 422
schema), never a 500. Bundles load in a background thread after start-up, so ``/health`` answers at
once; the predictor never imports TensorFlow.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any, TextIO

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi

from mlpipe.errors import PipelineError
from mlpipe.predictor import Predictor, RecordError

log = logging.getLogger("mlpipe.serve")

MAX_BODY_BYTES = 1 << 20
MAX_BATCH = 10_000


def challenger_fraction(key: str) -> float:
    """Where a routing key falls in [0, 1): the first 8 bytes of its sha256, stable across processes."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


@dataclass(frozen=True)
class Settings:
    """How the service routes, limits and logs requests."""

    challenger_share: float = 0.0
    route_key: str = "student_id"
    max_body_bytes: int = MAX_BODY_BYTES
    max_batch: int = MAX_BATCH


def _json(status: int, payload: Any) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _problem(status: int, detail: Any) -> Response:
    return _json(status, {"detail": detail})


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is longer than ``limit`` bytes (checked while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            return None
    return bytes(body)


def create_app(
    champion: Predictor,
    challenger: Predictor | None = None,
    settings: Settings | None = None,
    prediction_log: TextIO | None = None,
) -> FastAPI:
    """The service: ``champion`` answers every request unless ``challenger`` is given and chosen.

    Args:
        champion: The production bundle.
        challenger: An optional second bundle, for a share of the routing keys.
        settings: Routing, size limits.
        prediction_log: An open text file to append one JSON line per prediction to.
    """
    settings = settings or Settings()
    if not 0 <= settings.challenger_share <= 1:
        raise PipelineError(f"challenger share must be in [0, 1], got {settings.challenger_share}")
    arms = {"champion": champion, **({"challenger": challenger} if challenger is not None else {})}

    def status() -> tuple[str, str | None]:
        """``ready``, ``failed`` (with the first refusal) or ``loading``, from the predictors."""
        refused = [p.load_error for p in arms.values() if p.load_error]
        if refused:
            return "failed", refused[0]
        return ("ready", None) if all(p.ready for p in arms.values()) else ("loading", None)

    def load_all() -> None:
        try:
            for predictor in arms.values():
                predictor.load()
        except PipelineError as exc:
            log.error("bundle refused: %s", exc)
            return
        for arm, predictor in arms.items():
            log.info("%s: %s %s from %s", arm, predictor.name, predictor.version, predictor.folder)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(asyncio.to_thread(load_all))
        yield
        await task

    app = FastAPI(
        title="mlpipe model service",
        description="Predictions from a packaged mlpipe bundle; the record schema comes from the bundle.",
        lifespan=lifespan,
    )

    def ready() -> bool:
        return status()[0] == "ready"

    @app.get("/health", summary="The process is alive")
    async def health() -> Response:
        return _json(200, {"status": "alive"})

    @app.get("/ready", summary="Every bundle is verified and loaded")
    async def is_ready() -> Response:
        current, error = status()
        if current != "ready":
            return _json(503, {"status": current, "error": error})
        models = {arm: {"name": p.name, "version": p.version} for arm, p in arms.items()}
        return _json(200, {"status": "ready", "models": models})

    @app.get("/metadata", summary="The bundles' metadata: schema, lineage, metrics")
    async def metadata() -> Response:
        if not ready():
            return _problem(503, f"not ready: {status()[0]}")
        return _json(200, {arm: p.metadata for arm, p in arms.items()})

    def arm_of(record: Any) -> str | None:
        """The arm for a record; None if the record lacks a usable routing key."""
        if challenger is None or settings.challenger_share == 0:
            return "champion"
        key = record.get(settings.route_key) if isinstance(record, dict) else None
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            return None
        return "challenger" if challenger_fraction(str(key)) < settings.challenger_share else "champion"

    @app.post(
        "/predict",
        summary="Predict for one record (a JSON object) or a batch (an array of objects)",
        responses={
            400: {"description": "the body is not JSON"},
            413: {"description": "the body or the batch is too large"},
            422: {"description": "a record does not match the schema; names the row and field"},
            503: {"description": "the bundles are not loaded"},
        },
    )
    async def predict(request: Request) -> Response:
        body = await _read_body(request, settings.max_body_bytes)
        if body is None:
            return _problem(413, f"request body is over {settings.max_body_bytes} bytes")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _problem(400, f"body is not valid JSON: {exc}")
        single = isinstance(payload, dict)
        records = [payload] if single else payload
        if not isinstance(records, list) or not records:
            return _problem(422, "send one record (a JSON object) or a non-empty array of records")
        if len(records) > settings.max_batch:
            return _problem(413, f"a batch holds at most {settings.max_batch} records, got {len(records)}")
        if not ready():
            return _problem(503, f"not ready: {status()[0]}")
        groups: dict[str, list[int]] = {}
        for row, record in enumerate(records):
            arm = arm_of(record)
            if arm is None:
                field = settings.route_key
                message = f"the routing key {field!r} (a string or integer) is required"
                return _problem(422, [{"row": row, "field": field, "message": message}])
            groups.setdefault(arm, []).append(row)
        results: list[dict[str, Any]] = [{}] * len(records)
        for arm, rows in groups.items():
            predictor = arms[arm]
            try:
                answers = predictor.predict_records([records[i] for i in rows]).answers()
            except RecordError as exc:
                detail = [{**asdict(e), "row": None if e.row is None else rows[e.row]} for e in exc.errors]
                return _problem(422, sorted(detail, key=lambda d: d["row"] or 0))
            for i, answer in zip(rows, answers, strict=True):
                results[i] = {**answer, "model": predictor.name, "version": predictor.version, "arm": arm}
        if prediction_log is not None:
            now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            prediction_log.write(
                "".join(
                    orjson.dumps({"time": now, **result, "record": record}).decode() + "\n"
                    for result, record in zip(results, records, strict=True)
                )
            )
        return _json(200, results[0] if single else {"predictions": results})

    def openapi() -> dict[str, Any]:
        """OpenAPI with the champion's record schema, once its bundle is loaded."""
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version="1", description=app.description, routes=app.routes)
        if ready():
            record = record_schema(champion.metadata["inputs"])
            schema["paths"]["/predict"]["post"]["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"oneOf": [record, {"type": "array", "items": record}]}}
                },
            }
            app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def record_schema(inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A bundle's input schema as JSON Schema (for the OpenAPI docs)."""
    properties = {}
    for name, spec in inputs.items():
        prop: dict[str, Any] = {"type": spec["type"]}
        if "min" in spec:
            prop["minimum"] = spec["min"]
        if "max" in spec:
            prop["maximum"] = spec["max"]
        if spec["type"] == "string":
            prop["enum" if spec["unknown"] == "error" else "examples"] = spec["categories"]
        properties[name] = prop
    return {"type": "object", "properties": properties, "required": list(inputs)}
