"""How ``mlpipe serve`` runs on uvicorn: its Config with a deadline for a request's head, and the
httptools protocol that enforces it (:mod:`mlpipe.serving.http.connections` says why).

Both are module-level classes, so a Config pickles into uvicorn's worker processes
(:mod:`mlpipe.serving.http.workers`) by reference, deadline included.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class Config(uvicorn.Config):
    """uvicorn's Config, with ``head_timeout``: seconds for a request's line and headers."""

    def __init__(self, app: Any, *, head_timeout: float, **options: Any) -> None:
        super().__init__(app, http=HeadDeadline, **options)
        self.head_timeout = head_timeout


class HeadDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol; a request whose head is not complete within the Config's
    ``head_timeout`` of the connection opening, or of its first byte on a kept-alive connection,
    gets a 408 and the connection is closed."""

    _head: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._head is None:
            self._head = self.loop.call_later(self.config.head_timeout, self._late)

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
