"""Scoring early-warning histories, side by side in one run: through the Python path a server uses
(a request's records read by :class:`mlpipe.serving.history.HistorySchema`, then the ONNX graph),
over HTTP (``mlpipe serve``, one worker, one ONNX Runtime thread), and a whole cohort with
``mlpipe predict --as-of`` straight from the student and activity tables.

    python bench/early_warning_serving.py [--weeks 30] [--calls 2000] [--students 20000] [--cohort 200000]

Prints the p50/p99 latency of one student with a full history and the students per second scored
in batches of 1,000, for the issue's targets (p50 at most 2 ms through the Python API and 15 ms over
HTTP; at least 20,000 students/s batch scoring with ``mlpipe predict``). The bundle is a real one
(verified, as the package stage writes it) of a network with its weights as built, untrained: the
time does not depend on their values.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mlpipe.bundle import layout as bundle
from mlpipe.bundle import sequence_bundle, sequence_onnx
from mlpipe.bundle.writing import write_bundle
from mlpipe.core.params import load_early_warning_params
from mlpipe.demo import activity, cohort
from mlpipe.serving.history import HistorySchema
from mlpipe.training import sequence

STATIC = ("prior_gpa", "age", "part_time")
CHANNELS = ("minutes", "clicks", "submissions", "score")


def record(rng: np.random.Generator, weeks: int) -> dict:
    history = [
        {
            "minutes": int(rng.integers(0, 300)),
            "clicks": int(rng.integers(0, 90)),
            "submissions": 1,
            "score": 71.5,
        }
        for _ in range(weeks)
    ]
    return {"prior_gpa": 3.2, "age": 21, "part_time": 0, "history": history}


def write_a_bundle(folder: Path, network, scale, weeks: int) -> Path:
    """A verified bundle of ``network`` reading ``weeks`` weeks, as the package stage writes one."""
    params = load_early_warning_params(str(Path(__file__).parents[1] / "pipelines/early_warning/params.yaml"))
    prep = {
        "static": list(STATIC),
        "channels": {"minutes": "sum", "clicks": "sum", "submissions": "sum", "score": "mean"},
        "weeks": weeks,
        "cutoffs": [weeks],
    }
    meta = sequence_bundle.metadata(prep, params, {"by_cutoff": {}}, {"train": 0, "val": 0, "test": 0})
    meta["git"] = {"revision": "bench", "dirty": False}
    onnx_bytes = sequence_onnx.build(network, scale).SerializeToString()
    meta["version"] = bundle.version_of(onnx_bytes)
    out = folder / "bundle"
    out.mkdir()
    sequence_bundle.export(network, scale, out / bundle.SAVED_MODEL)
    write_bundle(out, onnx_bytes, meta, None, sequence_bundle.card(meta))
    return out


def over_http(folder: Path, one: list[dict], calls: int) -> np.ndarray:
    """Seconds per ``/predict`` of ``one`` record from a real client, ``mlpipe serve`` on one worker."""
    import socket

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlpipe.cli", "serve", "--bundle", str(folder), "--port", str(port)]
        + ["--threads", "1", "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not become ready"
                time.sleep(0.1)
            for _ in range(100):
                client.post("/predict", json=one[0]).raise_for_status()
            times = []
            for _ in range(calls):
                began = time.perf_counter()
                client.post("/predict", json=one[0]).raise_for_status()
                times.append(time.perf_counter() - began)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return np.array(times)


def as_of_rate(
    folder: Path, bundle_folder: Path, students: int, term: int, week: int
) -> tuple[float, float, int]:
    """``mlpipe predict --as-of`` the first day of ``week`` over a demo cohort's two tables for a
    term of ``term`` weeks (read, point-in-time rows built, scored, written): students/s of the
    whole command (start-up included) and of its scoring (the time it reports), and how many it
    scored."""
    source = folder / f"source-{term}"
    source.mkdir()
    cohort.write(activity.Cohort(students, term, dt.date(2026, 9, 7), 7), source, [], oracle=False)
    day = dt.date(2026, 9, 7) + dt.timedelta(days=7 * week)
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mlpipe.cli", "predict", str(source / cohort.STUDENTS)]
        + ["--activity", str(source / cohort.ACTIVITY), "--as-of", day.isoformat()]
        + ["--bundle", str(bundle_folder), "-o", str(folder / "scored.parquet")],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - began
    scored = int(re.search(r"scored (\d+) students", done.stderr).group(1))
    reported = float(re.search(r" in ([\d.]+) s ", done.stderr).group(1))
    return scored / seconds, scored / reported, scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weeks", type=int, default=30)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--students", type=int, default=20_000)
    parser.add_argument("--cohort", type=int, default=200_000, help="students for mlpipe predict --as-of")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    network = sequence.build(len(STATIC), args.weeks, len(CHANNELS), sequence.SequenceSpec(), seed=1)
    seq = rng.gamma(2.0, 10.0, (500, args.weeks, len(CHANNELS)))
    scale = sequence.SequenceScale.fit(
        rng.normal(size=(500, len(STATIC))), seq, np.ones((500, args.weeks), bool)
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        sequence_onnx.build(network, scale).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    schema = HistorySchema(STATIC, CHANNELS, args.weeks)
    one = [record(rng, args.weeks)]
    for _ in range(50):
        session.run(None, schema.parse(one))
    times = []
    for _ in range(args.calls):
        began = time.perf_counter()
        session.run(None, schema.parse(one))
        times.append(time.perf_counter() - began)
    many = [record(rng, int(rng.integers(0, args.weeks + 1))) for _ in range(args.students)]
    began = time.perf_counter()
    for start in range(0, len(many), 1000):
        session.run(None, schema.parse(many[start : start + 1000]))
    rate = len(many) / (time.perf_counter() - began)
    arrays = schema.parse(many)  # as mlpipe predict --as-of would hold them: point-in-time arrays
    began = time.perf_counter()
    for start in range(0, len(many), 1000):
        session.run(None, {name: value[start : start + 1000] for name, value in arrays.items()})
    array_rate = len(many) / (time.perf_counter() - began)
    folder = Path(tempfile.mkdtemp(prefix="early-warning-serving-"))
    bundle_folder = write_a_bundle(folder, network, scale, args.weeks)
    http = over_http(bundle_folder, one, args.calls // 2)
    batch = {
        "week 8 of a 16-week term": as_of_rate(folder, bundle_folder, args.cohort, 16, 8),
        f"week {args.weeks} of a {args.weeks + 4}-week term": as_of_rate(
            folder, bundle_folder, args.cohort, args.weeks + 4, args.weeks
        ),
    }
    p50, p99 = np.percentile(np.array(times) * 1000, [50, 99])
    h50, h99 = np.percentile(http * 1000, [50, 99])
    print(f"one student, {args.weeks} weeks, Python API: p50 {p50:.3f} ms, p99 {p99:.3f} ms (target <= 2)")
    print(f"one student, {args.weeks} weeks, HTTP: p50 {h50:.3f} ms, p99 {h99:.3f} ms (target <= 15)")
    print(f"batches of 1,000 JSON records: {rate:,.0f} students/s; of arrays: {array_rate:,.0f} students/s")
    for when, (cli_rate, scoring_rate, scored) in batch.items():
        print(
            f"mlpipe predict --as-of {when}, {args.cohort:,} students in the tables: {scoring_rate:,.0f}"
            f" students/s scoring, {cli_rate:,.0f} with the start-up ({scored:,} enrolled and scored;"
            " target >= 20,000)"
        )
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
