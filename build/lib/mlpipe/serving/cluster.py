"""Batch scoring on a Dask cluster: ``mlpipe predict PARTS -o FOLDER --scheduler tcp://host:8786``.

The input is a folder or a glob of CSV, Parquet or JSON-lines files (the parts); each part is one
task, scored by :func:`mlpipe.serving.batch.predict_file` exactly as ``mlpipe predict`` scores one file, into
one output part of the same name, written atomically. Each worker process verifies and loads the
bundle once (ONNX Runtime, never TensorFlow) and refuses it if its version differs from the one the
client verified, so a cluster cannot mix model versions in one run. A bad row fails its part with
the same one-line error as on one machine; the other parts still complete.

Every worker must see the bundle and the input and output folders at the same paths: a shared
file system, or the same ``dvc pull`` on each machine. Dask does the rest (placement, retries of
lost workers, the dashboard); there is no home-made cluster here.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpipe.core.errors import PipelineError
from mlpipe.serving.batch import FORMATS, predict_file
from mlpipe.serving.predictor import Predictor, StaleBundle, shared


def input_parts(pattern: str) -> list[Path]:
    """The files to score: a folder's files with a known suffix, a glob's matches, or one file, sorted.

    Raises:
        PipelineError: if nothing matches.
    """
    path = Path(pattern)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FORMATS]
    else:
        found = [Path(p) for p in glob.glob(pattern) if Path(p).is_file()]
    if not found:
        raise PipelineError(f"no .csv, .parquet or .jsonl files in {pattern}")
    return sorted(found)


def output_part(source: Path, folder: Path, kind: str) -> Path:
    """Where a part's scores go: ``folder/<name of the part>.<kind>``."""
    return folder / f"{source.stem}.{kind}"


@dataclass(frozen=True)
class PartReport:
    """One part's result, as it comes back from a worker."""

    source: str
    target: str
    scored: int
    skipped: int
    problems: list[str]
    seconds: float
    worker: int  # the worker's process id: which process scored the part


def worker_predictor(
    bundle: str, version: str, threads: int | None, trusted_key: bytes | None = None
) -> Predictor:
    """The worker process's predictor for ``bundle``: verified (against ``trusted_key``, a public
    key's PEM, when given) and loaded on first use, then reused.

    Raises:
        PipelineError: if the bundle fails verification, or its version is not ``version``.
    """
    try:
        return shared(bundle, version, threads, trusted_key)
    except StaleBundle as exc:
        raise PipelineError(
            f"{bundle} on this worker is version {exc.found}, the client verified {version}"
        ) from None


def score_part(
    bundle: str,
    version: str,
    source: str,
    target: str,
    skip_invalid: bool,
    chunk_rows: int,
    threads: int | None,
    trusted_key: bytes | None = None,
) -> PartReport:
    """Score one part on a worker (the task Dask runs)."""
    predictor = worker_predictor(bundle, version, threads, trusted_key)
    report = predict_file(
        predictor, source, target, skip_invalid=skip_invalid, chunk_rows=chunk_rows, progress=False
    )
    return PartReport(
        source, target, report.scored, report.skipped, report.problems, report.seconds, os.getpid()
    )


@contextlib.contextmanager
def connect(scheduler: str | None = None, cluster: str | None = None) -> Iterator[Any]:
    """A ``dask.distributed.Client``: to a running scheduler, or to a local cluster it starts and stops.

    Args:
        scheduler: The scheduler's address, e.g. ``tcp://10.0.0.5:8786``.
        cluster: ``local`` or ``local:N`` (N worker processes of one thread each, on 127.0.0.1).
    """
    from dask.distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    workers = int(cluster.split(":", 1)[1]) if cluster and ":" in cluster else None
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as local,
        Client(local) as client,
    ):
        yield client


def score_parts(
    client: Any,
    bundle: str | os.PathLike[str],
    parts: list[Path],
    folder: str | os.PathLike[str],
    kind: str = "parquet",
    *,
    skip_invalid: bool = False,
    chunk_rows: int = 100_000,
    threads: int | None = 1,
    trusted_key: bytes | None = None,
) -> tuple[list[PartReport], list[tuple[Path, str]]]:
    """Score every part on the cluster, one task per part; with ``trusted_key`` (a public key's
    PEM), here and on every worker only a bundle signed by it.

    Returns:
        The reports of the parts that were scored, and ``(part, error)`` for each part that failed.

    Raises:
        PipelineError: if the bundle fails verification here (nothing is sent to the cluster), or
            ``kind`` is not an output format.
    """
    if kind not in set(FORMATS.values()):
        raise PipelineError(f"output format {kind!r}: use one of {', '.join(sorted(set(FORMATS.values())))}")
    bundle = str(Path(bundle).resolve())
    # verify once here, before any task
    version = Predictor(bundle, threads=1, trusted_key=trusted_key).load().version
    out = Path(folder).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sources = [str(p.resolve()) for p in parts]
    futures = [
        client.submit(
            score_part,
            bundle,
            version,
            source,
            str(output_part(Path(source), out, kind)),
            skip_invalid,
            chunk_rows,
            threads,
            trusted_key,
            pure=False,  # a fresh task each run: Dask must not hand back an earlier run's result
        )
        for source in sources
    ]
    reports, failed = [], []
    for part, future in zip(parts, futures, strict=True):
        try:
            reports.append(future.result())
        except PipelineError as exc:  # the one-line error of `mlpipe predict` on that file
            failed.append((part, str(exc)))
        except Exception as exc:  # one unreadable part must not hide the other parts' results
            failed.append((part, f"{type(exc).__name__}: {exc}".splitlines()[0]))
    return reports, failed
