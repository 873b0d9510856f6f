"""``mlpipe serve --workers N``: N uvicorn worker processes on one listening socket, supervised as
uvicorn supervises them (:class:`uvicorn.supervisors.Multiprocess`: a worker that dies is replaced).

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
- **/ready** answers for the worker that takes the request; each verifies its own bundles.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import multiprocess
from uvicorn.supervisors.multiprocess import Multiprocess

from mlpipe.serving.metrics import MULTIPROCESS

ARGV = "MLPIPE_SERVE_ARGV"  # the server's command line, for the workers to build their service from
METRICS_DIR = MULTIPROCESS  # prometheus-client reads it when it is imported

log = logging.getLogger("mlpipe.serve")


@contextlib.contextmanager
def shared_metrics() -> Iterator[str]:
    """A fresh folder for the workers' Prometheus values, in the environment they inherit."""
    folder = tempfile.mkdtemp(prefix="mlpipe-metrics-")
    before = os.environ.get(METRICS_DIR)
    os.environ[METRICS_DIR] = folder
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(METRICS_DIR, None)
        else:
            os.environ[METRICS_DIR] = before
        shutil.rmtree(folder, ignore_errors=True)


def run(config: Any, argv: Sequence[str]) -> None:
    """Serve ``config.workers`` workers of ``config.app`` (an import string of an app factory) on
    one socket until SIGINT or SIGTERM; ``argv`` is the command line each worker's factory reads."""
    os.environ[ARGV] = json.dumps(list(argv))
    with shared_metrics():
        Supervisor(config, sockets=[config.bind_socket()]).run()


class Supervisor(Multiprocess):
    """uvicorn's supervisor, passing SIGHUP on to the workers and marking dead ones dead for the
    metrics."""

    def handle_hup(self) -> None:
        log.info("SIGHUP: each of %d workers reloads its bundles", len(self.processes))
        for process in self.processes:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGHUP)

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        for pid in before - {process.pid for process in self.processes}:
            if pid is not None:
                multiprocess.mark_process_dead(pid)


def close_at_exit(resources: contextlib.ExitStack) -> None:
    """Close a worker's resources (its registry fetches' folder) when the worker exits: a
    multiprocessing child runs its finalizers, not atexit."""
    from multiprocessing import util

    util.Finalize(None, resources.close, exitpriority=10)
