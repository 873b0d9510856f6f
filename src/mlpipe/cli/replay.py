"""``mlpipe replay``: the source's rows, sent to a running service."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mlpipe.cli.options import command


def run(args: argparse.Namespace) -> int:
    from mlpipe.core.params import load_params
    from mlpipe.monitoring.replay import replay

    folder = Path(args.pipeline)
    result = replay(load_params(folder / "params.yaml"), folder, args.where, args.url, args.batch)
    print(
        f"mlpipe: sent {result.sent} records to {args.url}, {result.refused} batches refused", file=sys.stderr
    )
    if result.first_refusal:
        print(f"mlpipe: first refusal: {result.first_refusal}", file=sys.stderr)
    return 1 if result.refused else 0


def add(commands: Any) -> None:
    """``mlpipe replay``: the source's rows, sent to a running service."""
    replay = command(
        commands,
        "replay",
        "send the source rows that match --where to a running service, without their outcome",
        "Reads ingest.query on ingest.url (params.yaml of --pipeline), keeps the rows matching the SQL"
        " condition, drops the target and posts them in batches to --url; exit 1 if a batch was refused.",
    )
    replay.add_argument("--where", required=True, help="SQL condition on the ingest query's columns")
    replay.add_argument(
        "--url", default="http://127.0.0.1:8000/predict", help="the service's /predict (default: %(default)s)"
    )
    replay.add_argument("--pipeline", default=".", help="folder of the pipeline's params.yaml (default: .)")
    replay.add_argument("--batch", type=int, default=100, help="records per request (default: %(default)s)")
    replay.set_defaults(run=run)
