"""mlpipe: score, serve and version the models that the DVC pipeline (`dvc repro`) packages.

Serving: ``mlpipe predict`` (batch scoring) and ``mlpipe serve`` (HTTP) take a bundle folder written
by the package stage, verify it before loading, and never import TensorFlow.
Versions (GTO tags) and experiments: ``register``, ``promote``, ``rollback``, ``compare``,
``fetch``, ``gc`` and ``sweep`` run in the repository (``--repo``, default the current folder).
Errors print one line, ``mlpipe: error: ...``, and exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlpipe.errors import PipelineError
from mlpipe.versions import commands as versions


def _predict(args: argparse.Namespace) -> None:
    from mlpipe.batch import predict_file
    from mlpipe.predictor import Predictor

    if args.scheduler or args.cluster:
        _predict_on_cluster(args)
        return

    predictor = Predictor(args.bundle, threads=args.threads, trusted_key=_trusted_pem(args)).load()
    report = predict_file(
        predictor, args.input, args.output, skip_invalid=args.skip_invalid, chunk_rows=args.chunk_rows
    )
    for line in report.problems[:20]:
        print(f"mlpipe: skipped {line}", file=sys.stderr)
    if len(report.problems) > 20:
        print(f"mlpipe: ... and {len(report.problems) - 20} more problems", file=sys.stderr)
    print(
        f"mlpipe: scored {report.scored} rows ({report.skipped} skipped) with {predictor.name}"
        f" {predictor.version} in {report.seconds:.2f} s -> {args.output}",
        file=sys.stderr,
    )


def _predict_on_cluster(args: argparse.Namespace) -> None:
    from mlpipe.scale import dask_scoring

    if args.scheduler and args.cluster:
        raise PipelineError("give --scheduler or --cluster, not both")
    if args.cluster and not (args.cluster == "local" or args.cluster.startswith("local:")):
        raise PipelineError(f"--cluster {args.cluster!r}: use local or local:N")
    parts = dask_scoring.input_parts(args.input)
    with dask_scoring.connect(args.scheduler, args.cluster) as client:
        reports, failed = dask_scoring.score_parts(
            client,
            args.bundle,
            parts,
            args.output,
            args.format,
            skip_invalid=args.skip_invalid,
            chunk_rows=args.chunk_rows,
            threads=args.threads or 1,
            trusted_key=_trusted_pem(args),
        )
    for report in reports:
        for line in report.problems[:5]:
            print(f"mlpipe: {Path(report.source).name}: skipped {line}", file=sys.stderr)
    scored, skipped = sum(r.scored for r in reports), sum(r.skipped for r in reports)
    workers = len({r.worker for r in reports})
    print(
        f"mlpipe: scored {scored} rows ({skipped} skipped) in {len(reports)} of {len(parts)} parts"
        f" on {workers} workers -> {args.output}",
        file=sys.stderr,
    )
    if failed:
        raise PipelineError(
            f"{len(failed)} of {len(parts)} parts failed (their outputs are not written): "
            + "; ".join(f"{Path(part).name}: {error}" for part, error in failed[:5])
        )


def _serve(args: argparse.Namespace) -> None:
    from mlpipe.serving.connections import Limits

    settings = _serve_settings(args)  # a bad combination of flags stops here, in the one process
    limits = Limits(args.head_timeout, args.body_timeout, args.keep_alive_timeout, args.max_connections)
    options = {"host": args.host, "port": args.port, "log_level": "warning", "access_log": args.access_log}
    if args.workers > 1:
        from mlpipe.serving import workers

        config = limits.config("mlpipe.cli:serve_worker", factory=True, workers=args.workers, **options)
        workers.run(config, args.argv)
        return
    import uvicorn

    with contextlib.ExitStack() as resources:
        uvicorn.Server(limits.config(_serve_app(args, settings, resources), **options)).run()


def serve_worker() -> Any:
    """One ``mlpipe serve --workers N`` worker's app (uvicorn's app factory, in the worker process),
    built from the server's command line as a single process builds it."""
    import json

    from mlpipe.serving import workers

    args = parser().parse_args(json.loads(os.environ[workers.ARGV]))
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    resources = contextlib.ExitStack()
    workers.close_at_exit(resources)
    return _serve_app(args, _serve_settings(args), resources)


def _serve_settings(args: argparse.Namespace) -> Any:
    """The service's settings from the command line.

    Raises:
        PipelineError: for flags that do not go together.
    """
    from mlpipe.server import Settings

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


def _serve_app(args: argparse.Namespace, settings: Any, resources: contextlib.ExitStack) -> Any:
    """The service's app: its bundles (folders, or registry stages fetched into ``resources``),
    the prediction log (appended to, a request's lines in one write) and ``settings``."""
    from mlpipe.predictor import Predictor
    from mlpipe.server import create_app

    trusted = _trusted_pem(args)
    sources = _registry_sources(args, resources)  # arms that follow the registry, fetched
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


def _registry_sources(args: argparse.Namespace, resources: contextlib.ExitStack) -> dict[str, Any]:
    """For ``--version``/``--stage``/``--challenger-stage``: each arm's :class:`Following`, which
    fetches the version its stage holds (again on SIGHUP, when the stage has moved)."""
    if not (args.version or args.stage or args.challenger_stage):
        return {}
    from mlpipe.versions import repository
    from mlpipe.versions.following import Following

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


def command(commands: Any, name: str, help: str, details: str = "") -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` opens with its one-line help and any details."""
    description = f"{help[0].upper()}{help[1:]}." + (f" {details}" if details else "")
    return commands.add_parser(name, help=help, description=description)


def _trusted_pem(args: argparse.Namespace) -> bytes | None:
    """``--trusted-key`` (or ``MLPIPE_TRUSTED_KEY``) as a public key's PEM, checked; None if unset."""
    if not args.trusted_key:
        return None
    from mlpipe import signing

    return signing.public_pem(signing.public_key(args.trusted_key))


def add_trusted_key(parser: argparse.ArgumentParser) -> None:
    from mlpipe.signing import TRUSTED_KEY_ENV, from_env

    parser.add_argument(
        "--trusted-key",
        default=from_env(TRUSTED_KEY_ENV),
        help="an Ed25519 public key (PEM file): refuse a bundle it did not sign"
        f" (default: ${TRUSTED_KEY_ENV}, if set)",
    )


def _keygen(args: argparse.Namespace) -> None:
    from mlpipe import signing

    private, public = signing.generate(args.path)
    key_id = signing.key_id(signing.public_key(public))
    print(
        f"mlpipe: wrote {private} (private, mode 0600: keep it out of git; give it to the package stage"
        f" as ${signing.SIGNING_KEY_ENV}) and {public} (public, key {key_id}: for --trusted-key)",
        file=sys.stderr,
    )


def add_keygen(commands: Any) -> None:
    """``mlpipe keygen``: a key pair for signing bundles."""
    keygen = command(
        commands,
        "keygen",
        "write a new Ed25519 key pair for signing bundles (PATH and PATH.pub)",
        "The package stage signs a bundle's checksums with the private key when MLPIPE_SIGNING_KEY"
        " holds its path or text; serve and predict with --trusted-key PATH.pub refuse any bundle it"
        " did not sign. Existing files are never overwritten.",
    )
    keygen.add_argument(
        "path", help="the private key's file, e.g. ~/.mlpipe/signing.pem (outside the repository)"
    )
    keygen.set_defaults(run=_keygen)


def add_predict(commands: Any) -> None:
    """``mlpipe predict``: batch scoring."""
    predict = command(
        commands,
        "predict",
        "score a CSV, Parquet or JSON-lines file (or, on a Dask cluster, a folder of them)",
        "Writes one prediction per input row, in input order, with the model's name and version;"
        " a bad row stops the run with its line and field (or, with --skip-invalid, is reported"
        " and left out).",
    )
    predict.add_argument(
        "input", help="input file: .csv, .parquet or .jsonl; with --scheduler/--cluster a folder or glob"
    )
    predict.add_argument(
        "-o", "--output", required=True, help="output file; with --scheduler/--cluster a folder of parts"
    )
    predict.add_argument("--bundle", default="models/package", help="bundle folder (default: %(default)s)")
    predict.add_argument("--skip-invalid", action="store_true", help="report bad rows and score the rest")
    predict.add_argument(
        "--chunk-rows", type=int, default=100_000, help="rows per chunk (default: %(default)s)"
    )
    predict.add_argument(
        "--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores; 1 per Dask task)"
    )
    predict.add_argument("--scheduler", help="score on this Dask scheduler, e.g. tcp://10.0.0.5:8786")
    predict.add_argument("--cluster", help="score on a Dask cluster started here: local or local:N workers")
    predict.add_argument(
        "--format",
        default="parquet",
        choices=["csv", "jsonl", "parquet"],
        help="output parts' format on a cluster (default: %(default)s)",
    )
    add_trusted_key(predict)
    predict.set_defaults(run=_predict)


def add_serve(commands: Any) -> None:
    """``mlpipe serve``: the HTTP service."""
    from mlpipe.serving.connections import Limits

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
    serve.add_argument("--challenger-share", type=float, default=0.0, help="share of routing keys (0-1)")
    serve.add_argument(
        "--route-key", default="student_id", help="record field to route by (default: %(default)s)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    serve.add_argument("--log", help="append every prediction to this JSON-lines file")
    serve.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger bodies get 413")
    serve.add_argument("--max-batch", type=int, default=10_000, help="larger batches get 413")
    serve.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per model (default: 1)")
    serve.add_argument(
        "--scoring-threads",
        type=int,
        default=2,
        help="batches of over 256 records scored at once, off the event loop (default: 2)",
    )
    serve.add_argument(
        "--scoring-processes",
        type=int,
        default=2,
        help="batches of over 1,000 records are scored in these processes, so that their checks never"
        " slow the small requests (default: %(default)s; 0: in the threads)",
    )
    serve.add_argument(
        "--watch", action="store_true", help="reload when a bundle folder changes (e.g. after dvc checkout)"
    )
    serve.add_argument(
        "--head-timeout",
        type=float,
        default=Limits.head_timeout,
        help="seconds for a request's line and headers, then 408 (default: %(default)s)",
    )
    serve.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        help="seconds for a request's body, then 408 (default: %(default)s)",
    )
    serve.add_argument(
        "--keep-alive-timeout",
        type=float,
        default=Limits.keep_alive_timeout,
        help="seconds an idle connection stays open (default: %(default)s)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=Limits.max_connections,
        help="open connections served at once; more get 503 (default: %(default)s)",
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
        default=256,
        help="small requests that are ready together are scored in one model call, up to this many"
        " records (micro-batching; default: %(default)s; 0: each alone)",
    )
    serve.add_argument(
        "--batch-wait-ms",
        type=float,
        default=0.0,
        help="milliseconds the first request of a batch waits for others (default: %(default)s: only"
        " those already there)",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    add_trusted_key(serve)
    serve.set_defaults(run=_serve)


def _monitor(args: argparse.Namespace) -> int:
    from mlpipe.monitoring import command as monitoring

    return monitoring.run(args)


def add_monitor(commands: Any) -> None:
    """``mlpipe monitor``: live metrics and drift from the prediction log and the outcomes."""
    monitor = command(
        commands,
        "monitor",
        "judge the served model on the outcomes that arrived: live error, drift, challenger",
        "Joins the prediction log with the outcomes in the database (params.yaml: monitor) and writes"
        " metrics/monitor.json, plots and report.html. Exit 0 healthy, 2 alert (live error or drift"
        " over its limit), 3 too few labelled predictions, 1 error.",
    )
    monitor.add_argument("logs", nargs="+", help="prediction logs (JSON lines from `mlpipe serve --log`)")
    monitor.add_argument("--bundle", default="models/package", help="champion bundle (default: %(default)s)")
    monitor.add_argument(
        "--params", default="params.yaml", help="params with a monitor section (default: %(default)s)"
    )
    monitor.add_argument(
        "--metrics", default="metrics/monitor.json", help="metrics file (default: %(default)s)"
    )
    monitor.add_argument(
        "--plots", default="metrics/monitor", help="plots and report.html (default: %(default)s)"
    )
    monitor.add_argument(
        "--until", help="last day of the window, YYYY-MM-DD (default: the newest prediction)"
    )
    monitor.set_defaults(run=_monitor)


def _replay(args: argparse.Namespace) -> int:
    from mlpipe.monitoring.replay import replay
    from mlpipe.params import load_params

    folder = Path(args.pipeline)
    result = replay(load_params(folder / "params.yaml"), folder, args.where, args.url, args.batch)
    print(
        f"mlpipe: sent {result.sent} records to {args.url}, {result.refused} batches refused", file=sys.stderr
    )
    if result.first_refusal:
        print(f"mlpipe: first refusal: {result.first_refusal}", file=sys.stderr)
    return 1 if result.refused else 0


def add_replay(commands: Any) -> None:
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
    replay.set_defaults(run=_replay)


def _init(args: argparse.Namespace) -> None:
    from mlpipe.scaffold import init

    folder = init(args.name, args.data, args.target, args.task, args.group, args.query, Path(args.repo))
    print(
        f"mlpipe: wrote {folder}/params.yaml and dvc.yaml: review the lines marked `inferred`, then"
        f" run `dvc repro {folder}/dvc.yaml`",
        file=sys.stderr,
    )


def add_init(commands: Any) -> None:
    """``mlpipe init``: a pipeline folder for a team's table."""
    init = command(
        commands,
        "init",
        "write pipelines/NAME/ (dvc.yaml, params.yaml) for a table, inferred from its data",
        "Reads a CSV or Parquet file (or a SQLAlchemy URL with --query) as ingest will, infers the data"
        " contract (types, nulls, ranges with a 10% margin, levels), the column roles and the task, and"
        " writes the engine's stages with the plots and gate for that task; every inferred choice is"
        " commented for review. Nothing is written on an error.",
    )
    init.add_argument("name", help="the pipeline's (and model's) name: lower-case letters, digits, dashes")
    init.add_argument(
        "--data",
        required=True,
        help="a CSV or Parquet file in the repository (relative to --repo), or a database URL",
    )
    init.add_argument("--query", help="with a database URL: the SQL that returns the table")
    init.add_argument("--target", required=True, help="the column to predict")
    init.add_argument(
        "--task",
        choices=["regression", "binary", "multiclass"],
        help="default: binary for two classes, regression for numbers, multiclass for text",
    )
    init.add_argument("--group", help="rows sharing its value stay in one split (default: none, row by row)")
    init.add_argument("--repo", default=".", help="the project's repository (default: %(default)s)")
    init.set_defaults(run=_init)


def repo_command(commands: Any, name: str, help: str, pipeline: bool = True) -> argparse.ArgumentParser:
    """A subcommand that runs in the project's repository (and, by default, on one pipeline)."""
    parsed = command(commands, name, help)
    parsed.add_argument("--repo", default=".", help="the project's git repository (default: %(default)s)")
    if pipeline:
        parsed.add_argument(
            "--pipeline",
            default=".",
            help="folder of the pipeline (its dvc.yaml and params.yaml), e.g. pipelines/dropout",
        )
    return parsed


def add_versions(commands: Any) -> None:
    """The commands on model versions and experiments, in the repository."""
    register = repo_command(
        commands, "register", help="register a new model version (refused if the gate failed)"
    )
    register.add_argument("--ref", default="HEAD", help="the commit to register (default: %(default)s)")
    register.add_argument("--version", help="the version, e.g. v1.0.0 (default: bump the latest)")
    register.add_argument(
        "--bump", choices=["major", "minor", "patch"], default="minor", help="without --version"
    )
    register.set_defaults(run=versions.register)

    promote = repo_command(commands, "promote", help="assign a stage to a version (refused if it regresses)")
    promote.add_argument("version", help="e.g. v2.0.0 or study-time@v2.0.0")
    promote.add_argument("--stage", default="prod", help="default: %(default)s")
    promote.add_argument(
        "--live",
        metavar="MONITOR_JSON",
        help="let live outcomes decide: this mlpipe monitor result (metrics/monitor.json) must say promote",
    )
    promote.set_defaults(run=versions.promote)

    rollback = repo_command(commands, "rollback", help="re-point a stage to the version it held before")
    rollback.add_argument("--stage", default="prod", help="default: %(default)s")
    rollback.add_argument("--to", help="a specific earlier version")
    rollback.set_defaults(run=versions.rollback)

    compare = repo_command(
        commands, "compare", help="every metric of two versions; exit 1 if the second regressed"
    )
    compare.add_argument("old", help="version or git ref, e.g. v1.0.0")
    compare.add_argument("new", help="version or git ref, e.g. v2.0.0 or HEAD")
    compare.set_defaults(run=versions.compare)

    fetch = repo_command(
        commands, "fetch", help="download a version's bundle into a folder (HEAD does not move)"
    )
    fetch.add_argument("version", nargs="?", help="e.g. v1.0.0 (or give --stage)")
    fetch.add_argument("--stage", help="the version this stage holds now, e.g. prod")
    fetch.add_argument("-o", "--output", required=True, help="folder to create")
    fetch.set_defaults(run=versions.fetch)

    gc = repo_command(
        commands,
        "gc",
        help="run `dvc gc`, refused while a registered version's data is not on the remote",
        pipeline=False,
    )
    gc.add_argument("--remote", help="DVC remote to check (default: the default remote)")
    gc.add_argument("dvc_args", nargs=argparse.REMAINDER, help="arguments for dvc gc, after --")
    gc.set_defaults(run=versions.gc)

    fsck = repo_command(
        commands,
        "fsck",
        help="re-hash every DVC cache object the locks name; exit 1 naming each bad or missing one",
        pipeline=False,
    )
    fsck.add_argument("--all-tags", action="store_true", help="also every registered version's locks")
    fsck.add_argument(
        "--repair",
        action="store_true",
        help="move bad objects aside, dvc fetch them again, restore spoilt workspace copies",
    )
    fsck.set_defaults(run=versions.fsck)

    retrain = repo_command(
        commands, "retrain", help="retrain on new data or after an alert; register the result as challenger"
    )
    retrain.add_argument(
        "--monitor",
        default="metrics/monitor.json",
        help="mlpipe monitor's metrics, in the pipeline folder: an alert retrains (default: %(default)s)",
    )
    retrain.add_argument("--dry-run", action="store_true", help="say whether it would retrain, do nothing")
    retrain.set_defaults(run=versions.retrain)

    sweep = repo_command(commands, "sweep", help="queue a grid of experiments, every key checked first")
    sweep.add_argument("file", help="sweep file with a grid, e.g. sweeps/seed-grid.yaml")
    sweep.add_argument("--dry-run", action="store_true", help="check and print, queue nothing")
    sweep.set_defaults(run=versions.sweep)


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog="mlpipe", description=" ".join(__doc__.replace("``", "`").split()), allow_abbrev=False
    )
    main_parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_init(commands)
    add_predict(commands)
    add_serve(commands)
    add_monitor(commands)
    add_replay(commands)
    add_versions(commands)
    add_keygen(commands)
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


if __name__ == "__main__":
    raise SystemExit(main())
