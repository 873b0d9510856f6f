"""Benchmark ``mlpipe monitor`` on large prediction logs: time, and peak memory against log size.

Run by hand after ``make repro`` (not in CI): ``python bench/monitor_speed.py [--lines 1000000]``.
Writes logs of 100k and of ``--lines`` predictions of the workspace bundle (the test split's
records, cycled, each line its own session id) and a SQLite table with an outcome for every other
line, then runs ``mlpipe monitor`` on each in a fresh process and prints its wall time and peak
RSS. Target (issue 11): 1,000,000 lines in under 60 s, memory flat in the log's size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "models" / "package"


def write_log(path: Path, lines: int) -> None:
    from mlpipe.serving.http.bodies import log_lines
    from mlpipe.serving.predictor import Predictor

    predictor = Predictor(BUNDLE)
    test = pd.read_parquet(ROOT / "data" / "processed" / "test.parquet").drop(columns=["session_date"])
    records = json.loads(test.to_json(orient="records"))
    answers = predictor.predict_records(records).answers()
    with path.open("w", encoding="utf-8") as log:
        for start in range(0, lines, len(records)):
            batch = [
                {**records[i], "session_id": start + i + 1} for i in range(min(len(records), lines - start))
            ]
            results = [
                {**answers[i], "model": predictor.name, "version": predictor.version, "arm": "champion"}
                for i in range(len(batch))
            ]
            day = f"2026-11-{1 + (start // len(records)) % 30:02d}T12:00:00.000+00:00"
            log.write(log_lines(results, batch, day))


def write_outcomes(path: Path, lines: int) -> None:
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE study_sessions (session_id INTEGER PRIMARY KEY, actual_duration REAL)")
        con.executemany(
            "INSERT INTO study_sessions VALUES (?, ?)", ((i, 1.5) for i in range(1, lines + 1, 2))
        )
    con.close()


def monitor(folder: Path, log: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one ``mlpipe monitor`` process."""
    start = time.perf_counter()
    code = subprocess.run(
        [sys.executable, "-m", "mlpipe.cli", "monitor", str(log), "--bundle", str(BUNDLE)]
        + ["--params", str(folder / "params.yaml"), "--metrics", str(folder / "monitor.json")]
        + ["--plots", str(folder / "plots")],
        stderr=subprocess.DEVNULL,
    ).returncode
    seconds = time.perf_counter() - start
    if code not in (0, 2, 3):
        raise SystemExit(f"mlpipe monitor failed with {code}")
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    if not (BUNDLE / "reference.json").exists():
        raise SystemExit("no bundle with reference statistics: run `make repro` first")
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_outcomes(folder / "outcomes.db", args.lines)
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["monitor"]["url"] = f"sqlite:///{folder / 'outcomes.db'}"
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
        # the smaller log first: ru_maxrss of children is the peak over all of them so far
        for lines in (100_000, args.lines):
            log = folder / f"log-{lines}.jsonl"
            write_log(log, lines)
            seconds, peak = monitor(folder, log)
            size = log.stat().st_size / 2**20
            print(
                f"monitor, {lines:,} lines ({size:.0f} MiB): {seconds:.1f} s,"
                f" {lines / seconds:,.0f} lines/s, peak RSS so far {peak:.0f} MiB (target 1M lines < 60 s)"
            )
            log.unlink()
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
