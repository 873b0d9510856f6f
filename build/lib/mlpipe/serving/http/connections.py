"""What a connection may hold: uvicorn's own limits, plus the one it lacks, a deadline for a request's head.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and answers 503 past a number of
connections (``limit_concurrency``), but it waits forever for a request line and headers that never
end, so a thousand slow clients hold a thousand connections.
:class:`mlpipe.serving.http.protocol.HeadDeadline` is uvicorn's httptools protocol with that deadline: a
request whose head is not complete within ``head_timeout`` seconds of the connection opening, or of
its first byte on a kept-alive connection, gets a 408 and the connection is closed. The body has its
own deadline in the app (:func:`mlpipe.serving.http.bodies.read_body`), so a Content-Length larger than
what arrives is answered too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    """The service's connection limits (seconds, and connections)."""

    head_timeout: float = 10.0  # the request line and headers
    body_timeout: float = 30.0  # the whole body, once the head is in
    keep_alive_timeout: float = 5.0  # idle between requests
    max_connections: int = 1000  # more get 503

    def config(self, app: Any, **options: Any) -> Any:
        """uvicorn's Config for ``app`` (an app, or an import string for worker processes) with
        these limits: :class:`mlpipe.serving.http.protocol.Config`, whose protocol has the head deadline."""
        from mlpipe.serving.http.protocol import Config

        return Config(
            app,
            head_timeout=self.head_timeout,
            timeout_keep_alive=self.keep_alive_timeout,
            limit_concurrency=self.max_connections,
            **options,
        )
