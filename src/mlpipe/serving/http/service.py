"""The service's state and handlers: its arms (champion, challenger), their loading and swapping,
routing by a stable hash of the routing key, scoring (on the loop, micro-batched; in threads; in
processes) and the prediction log."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import Request, Response

from mlpipe.bundle import signing
from mlpipe.core.errors import PipelineError
from mlpipe.serving.http import scoring
from mlpipe.serving.http.batching import Batcher
from mlpipe.serving.http.bodies import (
    Problem,
    check_headers,
    json_response,
    log_lines,
    parse_records,
    read_body,
)
from mlpipe.serving.http.metrics import CONTENT_TYPE_LATEST, ServiceMetrics
from mlpipe.serving.http.settings import INLINE_RECORDS, PROCESS_RECORDS, Settings
from mlpipe.serving.predictor import Predictor

log = logging.getLogger("mlpipe.serve")


def challenger_fraction(key: str) -> float:
    """Where a routing key falls in [0, 1): the first 8 bytes of its sha256, stable across processes."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


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
            check_headers(request)
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
