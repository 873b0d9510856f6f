"""How the service routes, limits and logs requests: the one place its defaults are written
(``mlpipe serve``'s flags read them)."""

from __future__ import annotations

from dataclasses import dataclass

from mlpipe.serving.http.connections import Limits

MAX_BODY_BYTES = 1 << 20


MAX_BATCH = 10_000


INLINE_RECORDS = 256  # requests up to this size are scored on the event loop, micro-batched (README)


PROCESS_RECORDS = 1000  # larger ones go to a scoring process (if any), smaller ones to a thread


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
