"""Adaptive micro-batching of small requests, as TF Serving batches concurrent requests: the small
``/predict`` requests that are ready together are scored in one predictor call per model.

A model call has a fixed cost (ONNX Runtime's per-call work, one per input column) that is most of
what one record costs, so under concurrency scoring each request alone spends the event loop on
that cost again and again. The first request of a batch schedules its flush: on the loop's next
turn (``wait`` 0, the default), so every request whose bytes arrived in the same turn joins it and
none waits for a timer, or after ``wait`` seconds, to gather more at a bounded delay. A batch that
reaches ``max_rows`` records is flushed at once. Scoring is
:func:`mlpipe.serving.http.scoring.score_together`:
each request gets exactly the answers, or the 422, it would have got alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mlpipe.serving.http import scoring
from mlpipe.serving.http.bodies import Problem


class Batcher:
    """Gathers requests on the running event loop and scores them together.

    Args:
        max_rows: The most records scored in one batch (a request larger than that is one batch).
        wait: Seconds the first request of a batch waits for others (0: the loop's next turn).
    """

    def __init__(self, max_rows: int, wait: float = 0.0) -> None:
        self.max_rows, self.wait = max_rows, wait
        self._pending: list[tuple[scoring.Request, asyncio.Future[Any]]] = []
        self._rows = 0
        self._flush: asyncio.Handle | None = None
        self.batches = 0  # flushed so far, and the requests in them (what the tests check)
        self.requests = 0

    async def score(self, request: scoring.Request) -> list[dict[str, Any]]:
        """The request's results, scored with whatever requests are ready beside it.

        Raises:
            Problem: the 422 the request would get alone.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((request, future))
        self._rows += len(request[0])
        if self._rows >= self.max_rows:
            self.flush()
        elif self._flush is None:
            self._flush = loop.call_later(self.wait, self.flush) if self.wait else loop.call_soon(self.flush)
        result = await future
        if isinstance(result, Problem):
            raise result
        return result

    def flush(self) -> None:
        """Score the pending requests now and answer each one's future."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        pending, self._pending, self._rows = self._pending, [], 0
        if not pending:
            return
        self.batches += 1
        self.requests += len(pending)
        try:
            results: list[Any] = scoring.score_together([request for request, _ in pending])
        except Exception as exc:  # each request fails as it would have alone (a 500)
            results = [exc] * len(pending)
        for (_, future), result in zip(pending, results, strict=True):
            if future.done():  # the client went away
                continue
            if isinstance(result, BaseException) and not isinstance(result, Problem):
                future.set_exception(result)
            else:
                future.set_result(result)
