"""Benchmark what host independence costs, and show what it buys.

Run by hand (not in CI), after ``make repro``: ``python bench/host_independence.py``. On the demo
pipeline's committed splits it trains and evaluates (1) as the stages run, with the host pins of
``mlpipe.core.host``, and (2) without them (the stage's ``main`` called directly, TensorFlow on every
core, oneDNN free to pick its instruction set), each on this machine and on an emulated other host
(one core, other OpenBLAS kernels and threads, numpy without its AVX2 loops, an SSE4.1 cap for
oneDNN), and prints each run's time and the hashes of the model and the metrics. Then it times the
linear baselines against scikit-learn's on ``evaluate.baseline_rows`` rows. Results go in the README.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.pipeline.repo import OTHER_HOST, one_core  # noqa: E402

TRAIN = ["--splits", "data/processed", "--preprocessor", "models/preprocessor.json"]
EVALUATE = [*TRAIN, "--noise-floor", "metrics/simulate.json"]
UNPINNED = "import sys; from mlpipe import {0}; {0}.main(sys.argv[1:])"


def digest(path: Path) -> str:
    paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return hashlib.md5(b"".join(f.read_bytes() for f in paths)).hexdigest()[:8]


def stage(name: str, args: list[str], pinned: bool, host: dict[str, str] | None) -> float:
    command = ["-m", f"mlpipe.{name}"] if pinned else ["-c", UNPINNED.format(name)]
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, *command, *args],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(host or {})},
        check=True,
        capture_output=True,
        preexec_fn=one_core if host else None,
    )
    return time.perf_counter() - start


def run(pinned: bool, host: dict[str, str] | None, out: Path) -> str:
    train = stage("train", [*TRAIN, "--out", str(out / "model"), "--live", str(out / "live")], pinned, host)
    outputs = ["--metrics", str(out / "evaluate.json"), "--importance", str(out / "importance.json")]
    evaluate = stage(
        "evaluate",
        [*EVALUATE, "--model", str(out / "model"), *outputs, "--plots", str(out / "plots")],
        pinned,
        host,
    )
    linear = json.loads((out / "evaluate.json").read_text())["baselines"]["linear"]["rmse"]
    return (
        f"train {train:5.1f} s  evaluate {evaluate:5.1f} s  model {digest(out / 'model')}"
        f"  metrics {digest(out / 'evaluate.json')}  linear rmse {linear!r}"
    )


def baselines() -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression, Ridge

    from mlpipe.core import files
    from mlpipe.core.params import load_params
    from mlpipe.evaluation import baselines

    rows = load_params(ROOT / "params.yaml").evaluate.baseline_rows
    x, y = (np.asarray(a)[:rows] for a in files.load_split(ROOT / "data" / "processed", "train"))
    x = np.tile(x, (max(1, rows // len(x) + 1), 1))[:rows]
    y = np.tile(y, max(1, rows // len(y) + 1))[:rows]
    labels = (y > np.median(y)).astype(np.int64)
    for name, fit in (
        ("ridge, mlpipe.evaluation.baselines", lambda: baselines.Ridge.fit(x, y, 1.0)),
        ("ridge, scikit-learn", lambda: Ridge(alpha=1.0).fit(x, y)),
        ("logistic, mlpipe.evaluation.baselines", lambda: baselines.Logistic.fit(x, labels, 2, 1.0)),
        ("logistic, scikit-learn", lambda: LogisticRegression(C=1.0, max_iter=2000).fit(x, labels)),
    ):
        start = time.perf_counter()
        fit()
        print(f"{name:26s} {len(x)} x {x.shape[1]}: {time.perf_counter() - start:.2f} s")


def main() -> None:
    print(describe(), f"load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as scratch:
        for pinned in (True, False):
            for label, host in (("this host", None), ("emulated other host", OTHER_HOST)):
                out = Path(scratch, f"{pinned}-{label}".replace(" ", "-"))
                print(f"{'pinned' if pinned else 'unpinned':8s} {label:20s} {run(pinned, host, out)}")
    baselines()
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
