"""Benchmark the study-time pipeline at scale: `dvc repro` at 100k, 1M and 10M sessions.

Run by hand (not in CI): ``python bench/scale.py [--sizes 100000 1000000 10000000] [--max-size N]``.
For each size it clones the committed repository into a temporary folder, sets ``simulate``'s
size in params.yaml (a student has ~4 sessions), wraps every stage's command in dvc.yaml with a
probe that records the stage's own wall time, CPU time and peak RSS, and runs ``dvc repro``. It
then prints one line per stage and size, the model's RMSE over the noise floor, and training
throughput against a bare ``model.fit`` on in-memory arrays of the same model and batch size,
measured in the same run. Results go in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
PROBE = "probe"


def probe(log: str, command: list[str]) -> int:
    """Run a stage's command as this process's only child and append its resource use to ``log``."""
    start = time.perf_counter()
    code = subprocess.run(command, check=False).returncode
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    stage = command[2].removeprefix("mlpipe.") if command[1:2] == ["-m"] else command[0]
    with open(log, "a", encoding="utf-8") as out:
        out.write(
            json.dumps(
                {
                    "stage": stage,
                    "wall_s": wall,
                    "cpu_s": usage.ru_utime + usage.ru_stime,
                    "peak_rss_mib": usage.ru_maxrss / 1024,
                    "exit": code,
                }
            )
            + "\n"
        )
    return code


def load() -> str:
    """The 1-minute load average and the core count: how quiet the machine was."""
    return f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def env_for(repo: Path) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["PYTHONPATH"] = str(repo / "src")
    return env


def prepare(repo: Path, sessions: int, log: Path) -> None:
    """Size the demo source and wrap each stage's command in the probe."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["simulate"].update(n_sessions=sessions, n_students=max(3000, sessions // 4))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    wrapper = f"python {shlex.quote(str(Path(__file__).resolve()))} {PROBE} {shlex.quote(str(log))} --"
    for stage in pipeline["stages"].values():
        stage["cmd"] = f"{wrapper} {stage['cmd']}"
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))


THROUGHPUT = """
import json, sys, time
import numpy as np
sys.path.insert(0, "src")
from mlpipe import train
from mlpipe.training import feed
from mlpipe.core import files
from mlpipe.training.model import build_model
from mlpipe.core.params import load_params

params = load_params("params.yaml")
tp = params.train
x_all, y_all = files.load_split("data/processed", "train")
rows = min(len(x_all), int(sys.argv[2]))
mode = sys.argv[1]
epochs = 3
if mode == "bare":  # in-memory arrays, Keras' own shuffling, no determinism, no validation
    import keras
    keras.utils.set_random_seed(1)
    x, y = np.array(x_all[:rows]), np.array(y_all[:rows])
    model = build_model(x.shape[1], tp)
    model.fit(x[: tp.batch_size * 4], y[: tp.batch_size * 4], batch_size=tp.batch_size, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=tp.batch_size, epochs=epochs, shuffle=True, verbose=0)
else:  # the train stage's way: op determinism, tf.data from the memory map, seeded block shuffle
    train.set_determinism(params.base.seed)
    x, y = x_all[:rows], y_all[:rows]
    model = build_model(x.shape[1], tp)
    batches = feed.Batches(x, y, tp.batch_size, params.base.seed, shuffle=True)
    data = feed.dataset(batches, repeat=True)
    model.fit(data, steps_per_epoch=4, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=batches.steps, epochs=epochs, shuffle=False, verbose=0)
print(json.dumps({"rows_per_s": rows * epochs / (time.perf_counter() - start)}))
"""


def throughput(repo: Path, rows: int, repeats: int = 5) -> dict[str, float]:
    """Training rows/s of a bare in-memory ``model.fit`` and of the stage's streamed input.

    Alternated ``repeats`` times, each in a fresh process; the median of each (this machine's
    run-to-run spread is about 30%).
    """
    found: dict[str, list[float]] = {"bare": [], "streamed": []}
    for _ in range(repeats):
        for mode in found:
            out = subprocess.run(
                [sys.executable, "-c", THROUGHPUT, mode, str(rows)],
                cwd=repo,
                env=env_for(repo),
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            found[mode].append(json.loads(out.strip().splitlines()[-1])["rows_per_s"])
    return {mode: statistics.median(values) for mode, values in found.items()}


def run_size(sessions: int, keep: Path | None) -> None:
    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        log = Path(tmp) / "stages.jsonl"
        prepare(repo, sessions, log)
        before = load()
        start = time.perf_counter()
        result = subprocess.run(
            ["dvc", "repro", "--force"], cwd=repo, env=env_for(repo), capture_output=True, text=True
        )
        total = time.perf_counter() - start
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        for r in records:
            print(
                f"{sessions:>10,} {r['stage']:<10} wall {r['wall_s']:7.1f} s  cpu {r['cpu_s']:7.1f} s"
                f"  peak RSS {r['peak_rss_mib']:7.0f} MiB{'' if r['exit'] == 0 else '  FAILED'}"
            )
        print(f"{sessions:>10,} dvc repro  wall {total:7.1f} s ({before} before, {load()} after)")
        if result.returncode:
            print(result.stderr[-3000:])
            return
        evaluation = json.loads((repo / "metrics/evaluate.json").read_text())
        summary = json.loads((repo / "metrics/train/metrics.json").read_text())
        print(
            f"{sessions:>10,} model RMSE {evaluation['model']['rmse']:.4f},"
            f" {evaluation['model']['rmse_over_noise_floor']:.3f} x noise floor"
            f" (hgb {evaluation['baselines']['hgb']['rmse_over_noise_floor']:.3f});"
            f" {summary.get('epochs_run')} epochs, best {summary.get('best_epoch')}"
        )
        speed = throughput(repo, min(sessions, 300_000))
        print(
            f"{sessions:>10,} training rows/s (medians of 5): streamed {speed['streamed']:,.0f},"
            f" bare in-memory model.fit {speed['bare']:,.0f}: {speed['streamed'] / speed['bare']:.2f}x"
        )


def main() -> None:
    if sys.argv[1:2] == [PROBE]:
        raise SystemExit(probe(sys.argv[2], sys.argv[4:]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--max-size", type=int, default=None, help="stop before sizes above this")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the clones (disk: ~3 GiB at 10M)")
    args = parser.parse_args()
    print(describe())
    for sessions in args.sizes:
        if args.max_size and sessions > args.max_size:
            break
        run_size(sessions, args.tmp)


if __name__ == "__main__":
    main()
