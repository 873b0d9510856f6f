"""The ``mlpipe`` command: ``mlpipe predict`` (batch scoring) and ``mlpipe serve`` (HTTP).

Both take a bundle folder written by the package stage (``models/package``), verify it before
loading, and never import TensorFlow. Errors print one line, ``mlpipe: error: ...``, and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from mlpipe.errors import PipelineError


def _predict(args: argparse.Namespace) -> None:
    from mlpipe.batch import predict_file
    from mlpipe.predictor import Predictor

    predictor = Predictor(args.bundle, threads=args.threads).load()
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


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from mlpipe.predictor import Predictor
    from mlpipe.server import Settings, create_app

    if args.challenger_share and not args.challenger:
        raise PipelineError("--challenger-share needs --challenger")
    settings = Settings(
        challenger_share=args.challenger_share if args.challenger else 0.0,
        route_key=args.route_key,
        max_body_bytes=args.max_body_bytes,
        max_batch=args.max_batch,
    )
    log_file = open(args.log, "a", encoding="utf-8", buffering=1) if args.log else None  # noqa: SIM115
    try:
        app = create_app(
            Predictor(args.bundle, threads=args.threads),
            Predictor(args.challenger, threads=args.threads) if args.challenger else None,
            settings,
            log_file,
        )
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=args.access_log)
    finally:
        if log_file is not None:
            log_file.close()


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="mlpipe", description=__doc__.split("\n")[0])
    commands = main_parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="score a CSV, Parquet or JSON-lines file")
    predict.add_argument("input", help="input file: .csv, .parquet or .jsonl")
    predict.add_argument("-o", "--output", required=True, help="output file: .csv, .parquet or .jsonl")
    predict.add_argument("--bundle", default="models/package", help="bundle folder (default: %(default)s)")
    predict.add_argument("--skip-invalid", action="store_true", help="report bad rows and score the rest")
    predict.add_argument(
        "--chunk-rows", type=int, default=100_000, help="rows per chunk (default: %(default)s)"
    )
    predict.add_argument(
        "--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)"
    )
    predict.set_defaults(run=_predict)

    serve = commands.add_parser("serve", help="serve predictions over HTTP")
    serve.add_argument("--bundle", default="models/package", help="champion bundle (default: %(default)s)")
    serve.add_argument("--challenger", help="challenger bundle")
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
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(run=_serve)
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    try:
        args.run(args)
    except PipelineError as exc:
        print(f"mlpipe: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
