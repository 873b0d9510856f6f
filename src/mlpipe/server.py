"""``mlpipe serve``: the HTTP service (FastAPI) over one bundle, or a champion and a challenger.

Endpoints: ``GET /health`` (the process is alive), ``GET /ready`` (every bundle verified and loaded;
503 until then, and for good if a bundle fails verification), ``GET /metadata``, ``POST /predict``
(one record as a JSON object, or a batch as an array of them), ``GET /metrics`` (Prometheus:
:mod:`mlpipe.serving.metrics`) and the OpenAPI docs at ``/docs``.

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
:mod:`mlpipe.serving.batching`, ``Settings.batch_rows`` and ``batch_wait``). Batches of more than
``INLINE_RECORDS`` records are checked and scored in worker threads, at most
``Settings.scoring_threads`` at a time, so a large or invalid batch does not hold up the small
requests behind it; batches of more than ``PROCESS_RECORDS`` go to a pool of
``Settings.scoring_processes`` scoring processes (:mod:`mlpipe.serving.scoring`), where their Python
checks do not hold this process's GIL either. A log line that cannot be written (e.g. a record
nested too deep for JSON) is logged without the record; it never fails the request. Slow clients are
cut off: a request's head and body each have a deadline (408), idle connections close, and
connections past a limit get 503 (:mod:`mlpipe.serving.connections`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from starlette.routing import Route

from mlpipe import signing
from mlpipe.errors import PipelineError
from mlpipe.predictor import Predictor
from mlpipe.serving import scoring
from mlpipe.serving.batching import Batcher
from mlpipe.serving.connections import Limits
from mlpipe.serving.http import (
    Problem,
    json_response,
    log_lines,
    parse_records,
    read_body,
    record_schema,
)
from mlpipe.serving.metrics import CONTENT_TYPE_LATEST, ServiceMetrics

log = logging.getLogger("mlpipe.serve")

MAX_BODY_BYTES = 1 << 20
MAX_BATCH = 10_000
INLINE_RECORDS = 256  # requests up to this size are scored on the event loop, micro-batched (README)
PROCESS_RECORDS = 1000  # larger ones go to a scoring process (if any), smaller ones to a thread


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
    scoring_threads: int = 2  # large batches scored at once, in worker threads
    scoring_processes: int = 2  # batches over PROCESS_RECORDS are scored in these processes (0: threads)
    watch: bool = False  # reload the bundles when a file in their folders changes
    batch_rows: int = 256  # small requests ready together: one model call for up to this many rows (0: off)
    batch_wait: float = 0.0  # seconds the first of them waits for more (0: those ready on the next turn)
    listen_when_loaded: bool = False  # take connections only once the bundles are loaded (a worker)
    body_timeout: float = Limits.body_timeout  # seconds for a request's whole body (then 408)


class Service:
    """The service's state and handlers: the arms (``champion``, optionally ``challenger``), their
    loading, routing, scoring and the prediction log. :func:`create_app` wires it to FastAPI."""

    def __init__(
        self,
        champion: Predictor,
        challenger: Predictor | None,
        settings: Settings,
        prediction_log: BinaryIO | None,
        sources: Mapping[str, Callable[[], str | None]] | None = None,
    ) -> None:
        if not 0 <= settings.challenger_share <= 1:
            raise PipelineError(f"challenger share must be in [0, 1], got {settings.challenger_share}")
        if settings.scoring_threads < 1:
            raise PipelineError(f"scoring threads must be at least 1, got {settings.scoring_threads}")
        if settings.scoring_processes < 0:
            raise PipelineError(f"scoring processes must be 0 or more, got {settings.scoring_processes}")
        self.arms = {"champion": champion, **({"challenger": challenger} if challenger is not None else {})}
        # Where each arm's bundle is (re)loaded from: its folder, or a registry stage's latest fetch
        # (an arm whose stage holds no version yet opens on the reload after it does).
        self.sources: dict[str, Callable[[], str | None]] = {
            arm: (lambda folder=p.folder: folder) for arm, p in self.arms.items()
        }
        self.sources.update(sources or {})
        self.settings = settings
        self.prediction_log = prediction_log
        self.slots = asyncio.Semaphore(settings.scoring_processes or settings.scoring_threads)
        self.batcher = Batcher(settings.batch_rows, settings.batch_wait) if settings.batch_rows else None
        self.pool: ProcessPoolExecutor | None = None  # started by the app's lifespan
        self.metrics = ServiceMetrics()
        self.refused: dict[str, str] = {}  # arm -> why its last reload was refused
        self._loading = threading.Lock()  # one load or reload at a time
        self._tasks: set[asyncio.Task[None]] = set()

    def status(self) -> tuple[str, str | None]:
        """``ready``, ``failed`` (with the first refusal) or ``loading``, from the predictors."""
        refused = [p.load_error for p in self.arms.values() if p.load_error]
        if refused:
            return "failed", refused[0]
        return ("ready", None) if all(p.ready for p in self.arms.values()) else ("loading", None)

    def load_all(self) -> None:
        with self._loading:
            try:
                for predictor in self.arms.values():
                    predictor.load()
            except PipelineError as exc:
                log.error("bundle refused: %s", exc)
                return
            for arm, predictor in self.arms.items():
                self.serving(arm, predictor)
            self.warm_pool()

    def serving(self, arm: str, predictor: Predictor) -> None:
        log.info("%s: %s %s from %s", arm, predictor.name, predictor.version, predictor.folder)
        self.metrics.serving(arm, predictor.name, predictor.version, predictor.folder)

    def reload(self, reason: str) -> None:
        """Verify and load every arm's bundle again from its source (in the calling thread: never
        the event loop's) and swap in, at once, each arm whose new bundle loaded; a refused one
        keeps its old model."""
        with self._loading:
            arms = dict(self.arms)
            for arm, source in self.sources.items():
                current = arms.get(arm)
                try:
                    folder = source()
                    if folder is None:  # a stage that holds no version (yet)
                        continue
                    fresh = arms["champion"].fresh(folder)
                    fresh.load()
                except PipelineError as exc:
                    self.refused[arm] = str(exc)
                    self.metrics.reloaded(arm, "refused")
                    kept = current.version if current is not None and current.ready else "nothing"
                    log.error("%s: %s: new bundle refused, still serving %s: %s", reason, arm, kept, exc)
                    continue
                self.refused.pop(arm, None)
                if current is not None and current.ready and fresh.version == current.version:
                    self.metrics.reloaded(arm, "unchanged")
                    log.info("%s: %s: %s unchanged", reason, arm, current.version)
                    continue
                arms[arm] = fresh
                self.metrics.reloaded(arm, "swapped")
                self.serving(arm, fresh)
            self.arms = arms  # one assignment: a request sees the old arms or the new ones

    def reload_soon(self, reason: str) -> None:
        """Start :meth:`reload` in a worker thread (from the event loop, e.g. a signal handler)."""
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.reload, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload whenever a file in a bundle folder changes (each burst of changes once)."""
        import watchfiles

        folders = {Path(p.folder).resolve() for p in self.arms.values()}

        def inside(_: Any, path: str) -> bool:
            changed = Path(path)
            return any(changed == f or f in changed.parents for f in folders)

        parents = sorted({str(f.parent) for f in folders})
        async for changes in watchfiles.awatch(*parents, watch_filter=inside, stop_event=stop, step=200):
            await asyncio.to_thread(self.reload, f"{len(changes)} changes in the bundle folders")

    def require_ready(self) -> None:
        current = self.status()[0]
        if current != "ready":
            raise Problem(503, f"not ready: {current}")

    def arm_of(self, record: Any, arms: Mapping[str, Predictor]) -> str | None:
        """The arm for a record; None if the record lacks a usable routing key."""
        if "challenger" not in arms or self.settings.challenger_share == 0:
            return "champion"
        key = record.get(self.settings.route_key) if isinstance(record, dict) else None
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            return None
        share = self.settings.challenger_share
        return "challenger" if challenger_fraction(str(key)) < share else "champion"

    def route(self, records: list[Any], arms: Mapping[str, Predictor]) -> dict[str, list[int]]:
        """Arm -> the rows it answers.

        Raises:
            Problem: 422 naming the first row without a routing key.
        """
        groups: dict[str, list[int]] = {}
        for row, record in enumerate(records):
            arm = self.arm_of(record, arms)
            if arm is None:
                field = self.settings.route_key
                message = f"the routing key {field!r} (a string or integer) is required"
                raise Problem(422, [{"row": row, "field": field, "message": message}], fields=[field])
            groups.setdefault(arm, []).append(row)
        return groups

    async def score(self, records: list[Any]) -> list[dict[str, Any]]:
        """Each record's answer, naming the model, version and arm that made it: on the event loop,
        together with the other small requests ready now (:class:`Batcher`) unless batching is off.

        Raises:
            Problem: 422 listing the records' field problems (rows counted in the whole batch).
        """
        arms = self.arms  # this request's models, whatever a reload swaps in meanwhile
        request = (records, self.route(records, arms), arms)
        if self.batcher is None:
            return scoring.score_records(*request)
        return await self.batcher.score(request)

    async def score_aside(self, records: list[Any], body: bytes) -> list[dict[str, Any]]:
        """:meth:`score` off the event loop: in a scoring process if there are any, else (or if the
        process cannot: a bundle folder in the middle of a checkout) in a worker thread."""
        arms = self.arms
        groups = self.route(records, arms)
        if self.pool is None or len(records) <= PROCESS_RECORDS:
            return await asyncio.to_thread(scoring.score_records, records, groups, arms)
        bundles = {arm: (arms[arm].folder, arms[arm].version) for arm in groups}
        try:
            kind, value = await asyncio.get_running_loop().run_in_executor(
                self.pool, scoring.score_body, body, groups, bundles, *self.process_settings()
            )
        except (PipelineError, BrokenProcessPool) as exc:  # StaleBundle, BundleError
            log.warning("scoring in a thread instead of a process: %s", exc or type(exc).__name__)
            if isinstance(exc, BrokenProcessPool):
                self.start_pool()
            return await asyncio.to_thread(scoring.score_records, records, groups, arms)
        if kind == "refused":
            detail, extra, fields = value
            raise Problem(422, detail, fields=fields, **extra)
        return value

    def process_settings(self) -> tuple[int | None, bytes | None]:
        """What a scoring process loads a bundle with: the ONNX Runtime threads and trusted key."""
        champion = self.arms["champion"]
        key = champion.trusted_key
        return champion.threads, None if key is None else signing.public_pem(key)

    def start_pool(self) -> None:
        """(Re)start the scoring processes (none unless ``Settings.scoring_processes``)."""
        if self.settings.scoring_processes:
            if self.pool is not None:
                self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = ProcessPoolExecutor(
                self.settings.scoring_processes,
                mp_context=get_context("spawn"),
                initializer=scoring.follow_parent,
                initargs=(os.getpid(),),
            )

    def warm_pool(self) -> None:
        """Have the scoring processes load the bundles now, not on their first batch."""
        if self.pool is not None and all(p.ready for p in self.arms.values()):
            bundles = {arm: (p.folder, p.version) for arm, p in self.arms.items()}
            for _ in range(self.settings.scoring_processes):
                self.pool.submit(scoring.warm, bundles, *self.process_settings())

    async def health(self) -> Response:
        return json_response(200, {"status": "alive"})

    async def ready(self) -> Response:
        current, error = self.status()
        if current != "ready":
            return json_response(503, {"status": current, "error": error})
        models = {arm: {"name": p.name, "version": p.version} for arm, p in self.arms.items()}
        refused = {"refused": dict(self.refused)} if self.refused else {}
        return json_response(200, {"status": "ready", "models": models, **refused})

    async def prometheus(self) -> Response:
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def metadata(self) -> Response:
        try:
            self.require_ready()
        except Problem as problem:
            return problem.response()
        return json_response(200, {arm: p.metadata for arm, p in self.arms.items()})

    async def predict(self, request: Request) -> Response:
        start = time.perf_counter()
        try:
            limit = self.settings.max_body_bytes
            body = await read_body(request, limit, self.settings.body_timeout)
            records, single = parse_records(body, limit, self.settings.max_batch)
            self.require_ready()
            if len(records) <= INLINE_RECORDS:
                results = await self.score(records)
            else:
                async with self.slots:
                    results = await self.score_aside(records, body or b"")
        except Problem as problem:
            self.metrics.refused(problem.status, time.perf_counter() - start, problem.fields)
            return problem.response()
        self.metrics.answered(
            Counter((r["arm"], r["version"]) for r in results), 200, time.perf_counter() - start
        )
        if self.prediction_log is not None:
            now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            # one write per request: with O_APPEND, workers' lines never interleave
            self.prediction_log.write(log_lines(results, records, now).encode("utf-8"))
        return json_response(200, results[0] if single else {"predictions": results})

    def openapi(self, app: FastAPI) -> dict[str, Any]:
        """OpenAPI with the champion's record schema, once its bundle is loaded."""
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version="1", description=app.description, routes=app.routes)
        schema["paths"]["/predict"] = {"post": dict(PREDICT_OPERATION)}  # a plain route: written here
        if self.status()[0] == "ready":
            record = record_schema(self.arms["champion"].metadata["inputs"])
            schema["paths"]["/predict"]["post"]["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"oneOf": [record, {"type": "array", "items": record}]}}
                },
            }
            app.openapi_schema = schema
        return schema


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
            started with); a registry stage's :class:`mlpipe.versions.following.Following`.
    """
    service = Service(champion, challenger, settings or Settings(), prediction_log, sources)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
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

    app = FastAPI(
        title="mlpipe model service",
        description="Predictions from a packaged mlpipe bundle; the record schema comes from the bundle.",
        lifespan=lifespan,
        # The service exports Prometheus metrics itself; FastAPI's OpenTelemetry hook would ask on
        # every request whether a provider is configured (about 30 µs of a single record's time).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    # /predict is the hot path: a plain Starlette route, matched first, which reads its body raw
    # (FastAPI's per-request dependency solving would cost more than scoring a micro-batched record);
    # its OpenAPI operation is written by Service.openapi.
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
    app.openapi = lambda: service.openapi(app)  # type: ignore[method-assign]
    return app
