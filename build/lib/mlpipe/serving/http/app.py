"""``mlpipe serve``: the HTTP service (FastAPI) over one bundle, or a champion and a challenger.

Endpoints: ``GET /health`` (the process is alive), ``GET /ready`` (every bundle verified and loaded;
503 until then, and for good if a bundle fails verification), ``GET /metadata``, ``POST /predict``
(one record as a JSON object, or a batch as an array of them), ``GET /metrics`` (Prometheus:
:mod:`mlpipe.serving.http.metrics`) and the OpenAPI docs at ``/docs``.

Versions swap without a restart: on SIGHUP, and with ``Settings.watch`` whenever a file in a bundle
folder changes (``dvc checkout``/``dvc pull`` of another version), every arm's bundle is verified
and loaded again in a worker thread, off the request path, and swapped in whole only then. An arm
can follow a registry stage instead of a folder (``sources``): then a reload fetches the version
the stage holds now, and a challenger arm opens once its stage holds one. A request scores on the
arms it started with, so requests in flight finish on the old model and none sees a half-loaded
one. A bundle that fails verification is refused, with its reason in the log and in ``/ready``'s
``refused``, and the arm keeps serving what it served.

Champion/challenger: a record goes to the challenger when a stable hash of its routing key (e.g.
``student_id``) falls under the challenger's share, so the same student always gets the same model;
every prediction names the model, version and arm that made it, and can be appended to a JSON-lines
log for monitoring. Malformed input gets a 4xx naming the field (400 bad JSON, 413 too large, 422
schema), never a 500; a 422 lists at most ``serving.http.MAX_PROBLEMS`` problems and says how many
there were. Bundles load in a background thread after start-up, so ``/health`` answers at once; the
predictor never imports TensorFlow. Small requests (up to ``INLINE_RECORDS`` records) are scored on
the event loop, those ready together in one model call (micro-batching,
:mod:`mlpipe.serving.http.batching`, ``Settings.batch_rows`` and ``batch_wait``). Batches of more than
``INLINE_RECORDS`` records are checked and scored in worker threads, at most
``Settings.scoring_threads`` at a time, so a large or invalid batch does not hold up the small
requests behind it; batches of more than ``PROCESS_RECORDS`` go to a pool of
``Settings.scoring_processes`` scoring processes (:mod:`mlpipe.serving.http.scoring`), where their Python
checks do not hold this process's GIL either. A log line that cannot be written (e.g. a record
nested too deep for JSON) is logged without the record; it never fails the request. Slow clients are
cut off: a request's head and body each have a deadline (408), idle connections close, and
connections past a limit get 503 (:mod:`mlpipe.serving.http.connections`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, BinaryIO

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import Route

from mlpipe.serving.http.bodies import record_schema
from mlpipe.serving.http.service import Service
from mlpipe.serving.http.settings import Settings
from mlpipe.serving.predictor import Predictor

PREDICT_OPERATION: dict[str, Any] = {
    "summary": "Predict for one record (a JSON object) or a batch (an array of objects)",
    "operationId": "predict",
    "responses": {
        "200": {"description": 'one answer (a record) or {"predictions": [...]} (a batch)'},
        "400": {"description": "the body is not JSON"},
        "408": {"description": "the body did not arrive in time"},
        "413": {"description": "the body or the batch is too large"},
        "422": {"description": "a record does not match the schema; names the row and field"},
        "503": {"description": "the bundles are not loaded"},
    },
}


def openapi(app: FastAPI, service: Service) -> dict[str, Any]:
    """OpenAPI with the champion's record schema, once its bundle is loaded."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version="1", description=app.description, routes=app.routes)
    schema["paths"]["/predict"] = {"post": dict(PREDICT_OPERATION)}  # a plain route: written here
    if service.status()[0] == "ready":
        record = record_schema(service.arms["champion"].metadata["inputs"])
        schema["paths"]["/predict"]["post"]["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"oneOf": [record, {"type": "array", "items": record}]}}
            },
        }
        app.openapi_schema = schema
    return schema


def lifespan(service: Service) -> Callable[[FastAPI], Any]:
    """Start-up and shutdown: the scoring pool, bundles loading in a thread, the watch, SIGHUP."""

    @contextlib.asynccontextmanager
    async def run(_: FastAPI) -> AsyncIterator[None]:
        service.start_pool()
        task = asyncio.create_task(asyncio.to_thread(service.load_all))
        if service.settings.listen_when_loaded:  # uvicorn listens once this startup returns
            await asyncio.shield(task)
        stop = asyncio.Event()
        watching = asyncio.create_task(service.watch(stop)) if service.settings.watch else None
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, service.reload_soon, "SIGHUP")
        yield
        stop.set()
        await task
        if watching is not None:
            await watching
        if service.pool is not None:  # wait: uvicorn re-raises SIGTERM after this, ending us at once
            await asyncio.to_thread(service.pool.shutdown, wait=True, cancel_futures=True)

    return run


def create_app(
    champion: Predictor,
    challenger: Predictor | None = None,
    settings: Settings | None = None,
    prediction_log: BinaryIO | None = None,
    sources: Mapping[str, Callable[[], str | None]] | None = None,
) -> FastAPI:
    """The service: ``champion`` answers every request unless ``challenger`` is given and chosen.

    Args:
        champion: The production bundle.
        challenger: An optional second bundle, for a share of the routing keys.
        settings: Routing, size limits, scoring threads.
        prediction_log: A file opened to append bytes, unbuffered (``open(path, "ab", buffering=0)``):
            one JSON line per prediction, a request's lines in one write.
        sources: Arm -> where a reload takes its bundle folder from (default: the folder it
            started with); a registry stage's :class:`mlpipe.registry.following.Following`.
    """
    service = Service(champion, challenger, settings or Settings(), prediction_log, sources)

    app = FastAPI(
        title="mlpipe model service",
        description="Predictions from a packaged mlpipe bundle; the record schema comes from the bundle.",
        lifespan=lifespan(service),
        # The service exports Prometheus metrics itself; FastAPI's OpenTelemetry hook would ask on
        # every request whether a provider is configured (about 30 µs of a single record's time).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    # /predict is the hot path: a plain Starlette route, matched first, which reads its body raw
    # (FastAPI's per-request dependency solving would cost more than scoring a micro-batched record);
    # its OpenAPI operation is written by openapi().
    app.router.routes.insert(0, Route("/predict", service.predict, methods=["POST"]))
    app.add_api_route("/health", service.health, methods=["GET"], summary="The process is alive")
    app.add_api_route("/ready", service.ready, methods=["GET"], summary="Every bundle is verified and loaded")
    app.add_api_route(
        "/metadata",
        service.metadata,
        methods=["GET"],
        summary="The bundles' metadata: schema, lineage, metrics",
    )
    app.add_api_route(
        "/metrics",
        service.prometheus,
        methods=["GET"],
        summary="Prometheus metrics: requests, latency, rows, rejections, the bundles served",
    )
    app.openapi = lambda: openapi(app, service)  # type: ignore[method-assign]
    return app
