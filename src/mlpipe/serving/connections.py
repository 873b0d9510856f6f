"""What a connection may hold: uvicorn's own limits, plus the one it lacks, a deadline for a request's head.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and answers 503 past a number of
connections (``limit_concurrency``), but it waits forever for a request line and headers that never
end, so a thousand slow clients hold a thousand connections. :func:`protocol` is uvicorn's
httptools protocol with that deadline: a request whose head is not complete within
``head_timeout`` seconds of the connection opening, or of its first byte on a kept-alive connection,
gets a 408 and the connection is closed. The body has its own deadline in the app
(:func:`mlpipe.serving.http.read_body`), so a Content-Length larger than what arrives is answered too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


@dataclass(frozen=True)
class Limits:
    """The service's connection limits (seconds, and connections)."""

    head_timeout: float = 10.0  # the request line and headers
    body_timeout: float = 30.0  # the whole body, once the head is in
    keep_alive_timeout: float = 5.0  # idle between requests
    max_connections: int = 1000  # more get 503

    def uvicorn(self) -> dict[str, Any]:
        """uvicorn.run's keyword arguments for these limits."""
        return {
            "http": protocol(self.head_timeout),
            "timeout_keep_alive": self.keep_alive_timeout,
            "limit_concurrency": self.max_connections,
        }


def protocol(head_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with a ``head_timeout`` deadline for each request's head."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeadDeadline(HttpToolsProtocol):
        _head: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._head is None:
                self._head = self.loop.call_later(head_timeout, self._late)

        def _disarm(self) -> None:
            if self._head is not None:
                self._head.cancel()
                self._head = None

        def _late(self) -> None:
            self._head = None
            if not self.transport.is_closing():
                self.transport.write(TIMED_OUT)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()  # a kept-alive connection's next request (the first one's deadline runs from connect)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeadDeadline
