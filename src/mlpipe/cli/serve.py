"""``mlpipe serve``: the HTTP service, in one process or ``--workers N``."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from mlpipe.cli.keys import add_trusted_key, trusted_pem
from mlpipe.cli.options import command
from mlpipe.core.errors import PipelineError


def run(args: argparse.Namespace) -> None:
    from mlpipe.serving.http.connections import Limits

    settings = settings_of(args)  # a bad combination of flags stops here, in the one process
    limits = Limits(args.head_timeout, args.body_timeout, args.keep_alive_timeout, args.max_connections)
    options = {"host": args.host, "port": args.port, "log_level": "warning", "access_log": args.access_log}
    if args.workers > 1:
        from mlpipe.serving.http import workers

        config = limits.config("mlpipe.cli.main:serve_worker", factory=True, workers=args.workers, **options)
        workers.run(config, args.argv)
        return
    import uvicorn

    with contextlib.ExitStack() as resources:
        uvicorn.Server(limits.config(app(args, settings, resources), **options)).run()


def settings_of(args: argparse.Namespace) -> Any:
    """The service's settings from the command line.

    Raises:
        PipelineError: for flags that do not go together.
    """
    from mlpipe.serving.http.app import Settings

    with_challenger = bool(args.challenger or args.challenger_stage)
    if args.challenger and args.challenger_stage:
        raise PipelineError("give --challenger (a folder) or --challenger-stage, not both")
    if args.challenger_share and not with_challenger:
        raise PipelineError("--challenger-share needs --challenger or --challenger-stage")
    if args.watch and (args.version or args.stage or args.challenger_stage):
        raise PipelineError(
            "--watch reloads a bundle folder; --version/--stage serve a fetched copy (use SIGHUP)"
        )
    if args.workers < 1 or args.batch_rows < 0 or args.batch_wait_ms < 0:
        raise PipelineError("--workers must be at least 1, --batch-rows and --batch-wait-ms at least 0")
    return Settings(
        body_timeout=args.body_timeout,
        challenger_share=args.challenger_share if with_challenger else 0.0,
        route_key=args.route_key,
        max_body_bytes=args.max_body_bytes,
        max_batch=args.max_batch,
        scoring_threads=args.scoring_threads,
        scoring_processes=args.scoring_processes,
        watch=args.watch,
        batch_rows=args.batch_rows,
        batch_wait=args.batch_wait_ms / 1000,
        listen_when_loaded=args.workers > 1,  # the other workers serve meanwhile
    )


def app(args: argparse.Namespace, settings: Any, resources: contextlib.ExitStack) -> Any:
    """The service's app: its bundles (folders, or registry stages fetched into ``resources``),
    the prediction log (appended to, a request's lines in one write) and ``settings``."""
    from mlpipe.serving.http.app import create_app
    from mlpipe.serving.predictor import Predictor

    trusted = trusted_pem(args)
    sources = registry_sources(args, resources)  # arms that follow the registry, fetched
    champion = sources["champion"]() if "champion" in sources else args.bundle
    challenger = sources["challenger"]() if "challenger" in sources else args.challenger
    log_file = None
    if args.log:
        log_file = resources.enter_context(open(args.log, "ab", buffering=0))  # noqa: SIM115
    return create_app(
        Predictor(champion, threads=args.threads, trusted_key=trusted),
        Predictor(challenger, threads=args.threads, trusted_key=trusted) if challenger else None,
        settings,
        log_file,
        sources=sources,
    )


def registry_sources(args: argparse.Namespace, resources: contextlib.ExitStack) -> dict[str, Any]:
    """For ``--version``/``--stage``/``--challenger-stage``: each arm's :class:`Following`, which
    fetches the version its stage holds (again on SIGHUP, when the stage has moved)."""
    if not (args.version or args.stage or args.challenger_stage):
        return {}
    from mlpipe.registry import repository
    from mlpipe.registry.following import Following

    project = repository.project(args.repo, args.pipeline)
    workdir = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="mlpipe-serve-")))
    sources: dict[str, Any] = {}
    if args.version or args.stage:
        sources["champion"] = Following(project, workdir / "champion", args.stage, args.version)
        if sources["champion"].wanted() is None:
            raise PipelineError(f"no version of {project.artifact} is in {args.stage} (see `gto show`)")
    if args.challenger_stage:  # may hold no version yet: the arm opens when it does
        sources["challenger"] = Following(project, workdir / "challenger", args.challenger_stage)
    for arm, source in sources.items():
        print(f"mlpipe: {arm} follows {project.artifact} {source.version or source.stage}", file=sys.stderr)
    return sources


def add(commands: Any) -> None:
    """``mlpipe serve``: the HTTP service. Its defaults are the service's own (``Settings``,
    ``Limits``): the help text reads them."""
    serve = command(
        commands,
        "serve",
        "serve predictions over HTTP",
        "Endpoints: GET /health, GET /ready, GET /metadata, GET /metrics (Prometheus), POST /predict"
        " (a record or an array of them), docs at /docs. With --challenger, a share of the routing"
        " keys goes to the second bundle. On SIGHUP (or, with --watch, when a bundle folder changes)"
        " the bundles are verified and loaded again and swapped in without a restart; one that"
        " fails is refused and the old one keeps serving.",
    )
    serve.add_argument("--bundle", default="models/package", help="champion bundle (default: %(default)s)")
    serve.add_argument("--version", help="serve this registered version instead, e.g. v1.0.0 (fetched)")
    serve.add_argument("--stage", help="serve the version this stage holds, e.g. prod (fetched)")
    serve.add_argument("--repo", default=".", help="with --version/--stage: the project's repository")
    serve.add_argument("--pipeline", default=".", help="with --version/--stage: the pipeline's folder")
    serve.add_argument("--challenger", help="challenger bundle")
    serve.add_argument(
        "--challenger-stage",
        help="serve the version this stage holds as challenger, e.g. challenger (fetched)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    serve.add_argument("--log", help="append every prediction to this JSON-lines file")
    serve.add_argument(
        "--watch", action="store_true", help="reload when a bundle folder changes (e.g. after dvc checkout)"
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    add_routing_and_scoring(serve)
    add_limits(serve)
    add_trusted_key(serve)
    serve.set_defaults(run=run)


def add_routing_and_scoring(serve: argparse.ArgumentParser) -> None:
    """Routing between the arms, and how requests are scored: defaults from ``Settings``."""
    from mlpipe.serving.http.settings import INLINE_RECORDS, PROCESS_RECORDS, Settings

    serve.add_argument(
        "--challenger-share",
        type=float,
        default=Settings.challenger_share,
        help="share of routing keys (0-1; default: %(default)s)",
    )
    serve.add_argument(
        "--route-key", default=Settings.route_key, help="record field to route by (default: %(default)s)"
    )
    serve.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per model (default: 1)")
    serve.add_argument(
        "--scoring-threads",
        type=int,
        default=Settings.scoring_threads,
        help=f"batches of over {INLINE_RECORDS} records scored at once, off the event loop"
        " (default: %(default)s)",
    )
    serve.add_argument(
        "--scoring-processes",
        type=int,
        default=Settings.scoring_processes,
        help=f"batches of over {PROCESS_RECORDS:,} records are scored in these processes, so that their"
        " checks never slow the small requests (default: %(default)s; 0: in the threads)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on the one port, each verifying and serving the bundles; SIGHUP reaches"
        " them all and /metrics adds them up (default: %(default)s)",
    )
    serve.add_argument(
        "--batch-rows",
        type=int,
        default=Settings.batch_rows,
        help="small requests that are ready together are scored in one model call, up to this many"
        " records (micro-batching; default: %(default)s; 0: each alone)",
    )
    serve.add_argument(
        "--batch-wait-ms",
        type=float,
        default=Settings.batch_wait * 1000,
        help="milliseconds the first request of a batch waits for others (default: %(default)s: only"
        " those already there)",
    )


def add_limits(serve: argparse.ArgumentParser) -> None:
    """Sizes and deadlines: defaults from ``Settings`` and ``Limits``."""
    from mlpipe.serving.http.connections import Limits
    from mlpipe.serving.http.settings import Settings

    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=Settings.max_body_bytes,
        help="larger bodies get 413 (default: %(default)s)",
    )
    serve.add_argument(
        "--max-batch",
        type=int,
        default=Settings.max_batch,
        help="larger batches get 413 (default: %(default)s)",
    )
    for flag, limit, help in (
        ("--head-timeout", Limits.head_timeout, "seconds for a request's line and headers, then 408"),
        ("--body-timeout", Limits.body_timeout, "seconds for a request's body, then 408"),
        ("--keep-alive-timeout", Limits.keep_alive_timeout, "seconds an idle connection stays open"),
    ):
        serve.add_argument(flag, type=float, default=limit, help=f"{help} (default: %(default)s)")
    serve.add_argument(
        "--max-connections",
        type=int,
        default=Limits.max_connections,
        help="open connections served at once; more get 503 (default: %(default)s)",
    )
