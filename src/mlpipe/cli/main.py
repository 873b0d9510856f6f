"""mlpipe: score, serve and version the models that the DVC pipeline (`dvc repro`) packages.

``mlpipe init`` writes a pipeline for a team's table. ``mlpipe predict`` (batch scoring) and ``mlpipe
serve`` (HTTP) verify a bundle before loading it and never import TensorFlow. ``monitor`` and
``replay`` judge the served model on live outcomes. Versions (GTO tags) and experiments:
``register``, ``promote``, ``rollback``, ``compare``, ``fetch``, ``gc``, ``fsck``, ``retrain`` and
``sweep`` run in the repository. ``keygen`` makes a key pair for signing bundles. Errors print one
line, ``mlpipe: error: ...``, and exit 1.

Each command group is a module here with ``add(commands)``, which declares its subcommands, each
with ``run=`` a handler that takes the parsed arguments and returns None or an exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from mlpipe.cli import init, keys, monitor, predict, replay, serve, versions
from mlpipe.core.errors import PipelineError

GROUPS = (init, predict, serve, monitor, replay, versions, keys)  # in the order `mlpipe --help` lists


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog="mlpipe",
        description=" ".join(__doc__.split("\n\nEach command group")[0].replace("``", "`").split()),
        allow_abbrev=False,
    )
    main_parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add(commands)
    return main_parser


def package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("mlpipe")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv = argv  # what `mlpipe serve --workers N` hands its workers
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    try:
        status = args.run(args)  # None, or a command's own exit status (monitor's verdict)
    except PipelineError as exc:
        print(f"mlpipe: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return status or 0


def serve_worker() -> Any:
    """One ``mlpipe serve --workers N`` worker's app (uvicorn's app factory, in the worker process),
    built from the server's command line as a single process builds it."""
    from mlpipe.serving.http import workers

    args = parser().parse_args(json.loads(os.environ[workers.ARGV]))
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    resources = contextlib.ExitStack()
    workers.close_at_exit(resources)
    return serve.app(args, serve.settings_of(args), resources)


if __name__ == "__main__":
    raise SystemExit(main())
