"""What the serving benchmarks share: ``mlpipe serve`` started on a free 127.0.0.1 port, until ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(
    serve_args: Sequence[str] = (),
    python: Sequence[str] = ("-m", "mlpipe.cli"),
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen, int]:
    """``python <python> serve --port P --bundle models/package <serve_args>``, once ``/ready`` is 200
    on 20 new connections in a row (with ``--workers``, each may reach another worker); ``env`` is
    added to the environment (e.g. ``PYTHONPATH`` for another checkout's code)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, *python, "serve", "--port", str(port), "--bundle", "models/package", *serve_args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    deadline, ready = time.monotonic() + 60, 0
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                ready = ready + 1 if sock.recv(100).startswith(b"HTTP/1.1 200") else 0
                if ready == 20:  # on 20 new connections in a row: every worker is ready
                    return server, port
                continue
        except OSError:
            ready = 0
        time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not become ready")
