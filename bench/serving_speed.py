"""Benchmark serving against the alternatives, in one run: the issue's four speed targets.

Run by hand after ``make repro`` (not in CI): ``python bench/serving_speed.py``. Uses the workspace
bundle (``models/package``) and the test split, and prints one line per figure with its target
and, where there is one, the Keras alternative measured in the same run:

1. one record through the public Python API (schema checks + preprocessing + model), p50/p99,
   against Keras ``model.predict`` and ``model(x)`` on the same row (preprocessing excluded there);
2. 100k records through the Python API (DataFrame and JSON-like records), against Keras
   ``model.predict`` on the already-preprocessed matrix;
3. ``mlpipe predict`` on 1M rows (CSV and Parquet), end to end in a fresh process, and its cold
   start to the first prediction, against ``import tensorflow`` alone;
4. HTTP on 127.0.0.1: single-record requests from 8 concurrent keep-alive clients, and what the
   server's Prometheus bookkeeping costs per request, against that latency.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "models" / "package"


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99, in microseconds."""
    values = np.array(seconds) * 1e6
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def time_calls(call, n: int, warmup: int = 50) -> list[float]:
    for _ in range(warmup):
        call()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def best_of(call, repeats: int = 5) -> float:
    call()
    return min(time_calls(call, repeats, warmup=0))


def records_of(frame: pd.DataFrame) -> list[dict]:
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items() if k != "session_date"}
        for row in frame.to_dict(orient="records")
    ]


def python_api(test: pd.DataFrame) -> None:
    from mlpipe.core import files
    from mlpipe.features import preprocessor
    from mlpipe.serving.predictor import Predictor
    from mlpipe.training.model import load_model

    predictor = Predictor(BUNDLE).load()
    record = records_of(test.head(1))[0]
    p50, p99 = percentiles(time_calls(lambda: predictor.predict_one(record), 5000))
    prep = preprocessor.Preprocessor.from_dict(files.read_json(ROOT / "models" / "preprocessor.json"))
    network = load_model(ROOT / "models" / "model")
    row = preprocessor.transform(test.head(1), prep)
    k50, _ = percentiles(time_calls(lambda: network.predict(row, verbose=0), 200, warmup=5))
    c50, _ = percentiles(time_calls(lambda: network(row, training=False), 1000))
    print(f"one record, Python API: p50 {p50:.0f} us, p99 {p99:.0f} us (target p50 <= 200 us)")
    print(f"  Keras model.predict on one preprocessed row: p50 {k50:.0f} us ({k50 / p50:.0f}x slower)")
    print(f"  Keras model(x) on one preprocessed row: p50 {c50:.0f} us ({c50 / p50:.0f}x slower)")

    big = pd.concat([test] * (100_000 // len(test) + 1), ignore_index=True).iloc[:100_000]
    frame_s = best_of(lambda: predictor.predict_frame(big))
    records = records_of(big)
    records_s = best_of(lambda: predictor.predict_records(records), repeats=3)
    x = preprocessor.transform(big, prep)
    keras_s = best_of(lambda: network.predict(x, batch_size=8192, verbose=0), repeats=3)
    transform_s = best_of(lambda: preprocessor.transform(big, prep), repeats=3)
    print(f"100k records, DataFrame API: {1e5 / frame_s / 1e3:.0f}k records/s (target >= 500k)")
    print(f"100k records, JSON-like records API: {1e5 / records_s / 1e3:.0f}k records/s")
    print(
        f"  Keras model.predict on the preprocessed 100k: {1e5 / keras_s / 1e3:.0f}k rows/s;"
        f" with preprocessor.transform first: {1e5 / (keras_s + transform_s) / 1e3:.0f}k rows/s"
        f" (bundle DataFrame API is {(keras_s + transform_s) / frame_s:.1f}x faster)"
    )


def wall_seconds(command: list[str], repeats: int) -> list[float]:
    """Wall time of each of ``repeats`` runs of a command in a new process."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, capture_output=True)
        runs.append(time.perf_counter() - start)
    return runs


def cli(test: pd.DataFrame, folder: Path) -> None:
    big = pd.concat([test] * (1_000_000 // len(test) + 1), ignore_index=True).iloc[:1_000_000]
    big["session_id"] = np.arange(1, len(big) + 1)
    paths = {"csv": folder / "big.csv", "parquet": folder / "big.parquet"}
    big.to_csv(paths["csv"], index=False)
    big.to_parquet(paths["parquet"], index=False)
    test.head(1).to_csv(folder / "one.csv", index=False)
    predict = ["mlpipe", "predict", "--bundle", str(BUNDLE)]
    for kind, source in paths.items():
        runs = wall_seconds([*predict, str(source), "-o", str(folder / f"out.{kind}")], 3)
        print(
            f"mlpipe predict, 1M rows {kind} -> {kind}: {1e6 / min(runs) / 1e3:.0f}k rows/s end to end,"
            f" best of 3 ({min(runs):.2f} s; target >= 200k)"
        )
    cold = wall_seconds([*predict, str(folder / "one.csv"), "-o", str(folder / "o.csv")], 5)
    tf_runs = wall_seconds([sys.executable, "-c", "import tensorflow"], 3)
    print(
        f"mlpipe predict cold start to first prediction (1-row file, new process): median"
        f" {statistics.median(cold):.2f} s (target <= 1.5 s); `import tensorflow` alone:"
        f" {statistics.median(tf_runs):.2f} s"
    )


def metrics_cost(calls: int = 100_000) -> float:
    """Microseconds the server spends per single-record request on its Prometheus metrics: the
    per-(arm, version) count of the answers, the three counters and the histogram."""
    from collections import Counter

    from mlpipe.serving.http.metrics import ServiceMetrics

    metrics = ServiceMetrics()
    results = [{"prediction": 1.0, "model": "m", "version": "v", "arm": "champion"}]
    start = time.perf_counter()
    for _ in range(calls):
        metrics.answered(Counter((r["arm"], r["version"]) for r in results), 200, 0.004)
    return (time.perf_counter() - start) / calls * 1e6


def http(test: pd.DataFrame, clients: int = 8, per_client: int = 1500) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlpipe.cli", "serve", "--bundle", str(BUNDLE), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port)) as conn:
                    conn.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
                    if b" 200 " in conn.recv(4096):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.1)
        bodies = [json.dumps(r).encode() for r in records_of(test.head(200))]
        requests = [
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(b)}\r\n\r\n".encode()
            + b
            for b in bodies
        ]
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()

        def client(seed: int) -> None:
            mine, failed = [], 0
            with socket.create_connection(("127.0.0.1", port)) as conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for i in range(per_client):
                    request = requests[(seed * 31 + i) % len(requests)]
                    start = time.perf_counter()
                    conn.sendall(request)
                    response = b""
                    while b"\r\n\r\n" not in response:
                        response += conn.recv(65536)
                    head, _, body = response.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    while len(body) < length:
                        body += conn.recv(65536)
                    mine.append(time.perf_counter() - start)
                    failed += not head.startswith(b"HTTP/1.1 200")
            with lock:
                latencies.extend(mine[50:])  # the first requests warm the connection
                errors[0] += failed

        threads = [threading.Thread(target=client, args=(s,)) for s in range(clients)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
        p50, p99 = percentiles(latencies)
        print(
            f"HTTP, {clients} concurrent clients, single records:"
            f" p50 {p50 / 1e3:.2f} ms, p99 {p99 / 1e3:.2f} ms,"
            f" {errors[0]} errors in {clients * per_client} requests, {clients * per_client / wall:.0f} req/s"
            " (target p50 <= 3 ms, p99 <= 15 ms, 0 errors)"
        )
        cost = metrics_cost()
        print(
            f"/metrics bookkeeping per single-record request: {cost:.1f} µs,"
            f" {100 * cost / p50:.2f}% of the HTTP p50 (target <= 5%)"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip", nargs="*", default=[], choices=["api", "cli", "http"], help="parts to skip")
    args = parser.parse_args()
    if not (BUNDLE / "metadata.json").exists():
        raise SystemExit("no bundle: run `make repro` first")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    print(describe())
    test = pd.read_parquet(ROOT / "data" / "processed" / "test.parquet")
    if "http" not in args.skip:
        http(test)
    if "cli" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            cli(test, Path(tmp))
    if "api" not in args.skip:
        python_api(test)


if __name__ == "__main__":
    main()
