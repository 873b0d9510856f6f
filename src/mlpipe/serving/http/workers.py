"""``mlpipe serve --workers N``: N uvicorn worker processes on one port, each listening on a socket of
its own (``SO_REUSEPORT``: the kernel spreads connections over them), supervised as uvicorn
supervises them (:class:`uvicorn.supervisors.Multiprocess`: a worker that dies is replaced).

Each worker is a whole service, built from the server's own command line: it verifies and loads its
bundles, scores small requests on its event loop (micro-batched) and large ones in its own scoring
processes. What makes N of them one service:

- **SIGHUP** to the server is passed on to every worker, and each reloads its bundles as a single
  process does: a bundle that fails verification is refused and the old one keeps serving. (uvicorn's
  own SIGHUP restarts the workers instead, which would leave a refused bundle's worker answering 503.)
- **/metrics** adds up every worker's values: prometheus-client's multiprocess mode, in a folder of
  its own made here and removed at exit; a worker that dies is marked dead, so its gauges drop out.
- **The prediction log** is appended to by every worker, a request's lines in one ``write`` to a file
  opened with ``O_APPEND``, so the lines of two requests never interleave.
- **/ready** answers for the worker that takes the request; each verifies its own bundles, and
  listens only once they are loaded (or refused), so a new or replacement worker never answers 503
  for loading while the others serve.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import multiprocess
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from mlpipe.core.errors import PipelineError
from mlpipe.serving.http.metrics import MULTIPROCESS

ARGV = "MLPIPE_SERVE_ARGV"  # the server's command line, for the workers to build their service from

log = logging.getLogger("mlpipe.serve")


@contextlib.contextmanager
def shared_metrics() -> Iterator[str]:
    """A fresh folder for the workers' Prometheus values, in the environment they inherit."""
    folder = tempfile.mkdtemp(prefix="mlpipe-metrics-")
    before = os.environ.get(MULTIPROCESS)
    os.environ[MULTIPROCESS] = folder  # read by prometheus-client on import
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(MULTIPROCESS, None)
        else:
            os.environ[MULTIPROCESS] = before
        shutil.rmtree(folder, ignore_errors=True)


def run(config: Any, argv: Sequence[str]) -> None:
    """Serve ``config.workers`` workers of ``config.app`` (an import string of an app factory) on
    one port until SIGINT or SIGTERM; ``argv`` is the command line each worker's factory reads.

    Raises:
        PipelineError: if the port cannot be bound.
    """
    os.environ[ARGV] = json.dumps(list(argv))
    listening_socket(config.host, config.port).close()  # a port in use stops us here, in one line
    with shared_metrics():
        Supervisor(config, sockets=[]).run()


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with ``SO_REUSEPORT``, for one worker: the kernel spreads new
    connections over the workers' sockets, and a socket leaves the port with its worker. (On one
    shared socket the first worker to wake accepts every connection waiting, so a burst of them,
    e.g. a client's pool opening, can all land on one worker while the other idles.)

    Raises:
        PipelineError: if the port cannot be bound (in use, or not allowed).
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PipelineError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class Supervisor(Multiprocess):
    """uvicorn's supervisor, with a socket of its own for each worker (new for a replacement),
    passing SIGHUP on to the workers and marking dead ones dead for the metrics."""

    def spawn(self) -> Process:
        """A worker on a socket of its own; the socket leaves the port when the worker exits."""
        sock = listening_socket(self.config.host, self.config.port)
        process = Process(self.config, [sock])
        process.start()  # the worker has inherited the socket once its process is started
        sock.close()
        return process

    def init_processes(self) -> None:
        self.processes = [self.spawn() for _ in range(self.processes_num)]

    def handle_ttin(self) -> None:  # uvicorn's SIGTTIN, one more worker: on a socket of its own
        log.info("SIGTTIN: one more worker")
        self.processes_num += 1
        self.processes.append(self.spawn())

    def handle_hup(self) -> None:
        log.info("SIGHUP: each of %d workers reloads its bundles", len(self.processes))
        for process in self.processes:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGHUP)

    def keep_subprocess_alive(self) -> None:
        """uvicorn's: a worker that died or hangs is killed and replaced (and if it never started,
        the server stops), here on a new socket, and marked dead for the metrics."""
        for index, process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.pid is not None:
                multiprocess.mark_process_dead(process.pid)
            if process.exitcode == STARTUP_FAILURE:  # the app cannot start: it would fail again
                log.error("worker %s failed to start: stopping", process.pid)
                self.should_exit.set()
                return
            log.warning("worker %s died: starting another", process.pid)
            self.processes[index] = self.spawn()


def close_at_exit(resources: contextlib.ExitStack) -> None:
    """Close a worker's resources (its registry fetches' folder) when the worker exits: a
    multiprocessing child runs its finalizers, not atexit."""
    from multiprocessing import util

    util.Finalize(None, resources.close, exitpriority=10)
