"""``mlpipe predict``: batch scoring of a file, or of a folder on a Dask cluster; with ``--as-of``, an
early-warning model's whole cohort straight from the student and activity tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mlpipe.cli.keys import add_trusted_key, trusted_pem
from mlpipe.cli.options import command
from mlpipe.core.errors import PipelineError


def run(args: argparse.Namespace) -> None:
    from mlpipe.serving.batch import predict_file
    from mlpipe.serving.predictor import Predictor

    if args.scheduler or args.cluster:
        run_on_cluster(args)
        return
    if args.as_of or args.activity:
        run_as_of(args)
        return

    predictor = Predictor(args.bundle, threads=args.threads, trusted_key=trusted_pem(args)).load()
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


def run_as_of(args: argparse.Namespace) -> None:
    import datetime as dt

    from mlpipe.serving import as_of
    from mlpipe.serving.predictor import Predictor

    if not (args.as_of and args.activity):
        raise PipelineError("--as-of and --activity go together: the input is then the student table")
    try:
        day = dt.date.fromisoformat(args.as_of)
    except ValueError:
        raise PipelineError(f"--as-of {args.as_of!r}: give a date, YYYY-MM-DD") from None
    predictor = Predictor(args.bundle, threads=args.threads, trusted_key=trusted_pem(args)).load()
    report = as_of.score(predictor, args.input, args.activity, day, args.output, args.chunk_rows)
    print(
        f"mlpipe: scored {report.scored} students as of {day} with {predictor.name} {predictor.version}"
        f" in {report.seconds:.2f} s ({report.left} had left, {report.not_begun} had not completed a"
        f" week) -> {args.output}",
        file=sys.stderr,
    )


def run_on_cluster(args: argparse.Namespace) -> None:
    from mlpipe.serving import cluster

    if args.scheduler and args.cluster:
        raise PipelineError("give --scheduler or --cluster, not both")
    if args.cluster and not (args.cluster == "local" or args.cluster.startswith("local:")):
        raise PipelineError(f"--cluster {args.cluster!r}: use local or local:N")
    parts = cluster.input_parts(args.input)
    with cluster.connect(args.scheduler, args.cluster) as client:
        reports, failed = cluster.score_parts(
            client,
            args.bundle,
            parts,
            args.output,
            args.format,
            skip_invalid=args.skip_invalid,
            chunk_rows=args.chunk_rows,
            threads=args.threads or 1,
            trusted_key=trusted_pem(args),
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


def add(commands: Any) -> None:
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
    predict.add_argument(
        "--as-of",
        metavar="DATE",
        help="early warning: score every enrolled student from activity strictly before DATE (the"
        " input is the student table)",
    )
    predict.add_argument(
        "--activity", help="early warning: the activity table (.parquet or .csv, in student order)"
    )
    add_trusted_key(predict)
    predict.set_defaults(run=run)
