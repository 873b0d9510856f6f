"""Benchmark the pipeline: cold and no-op `dvc repro`, and the demo source at 10 million sessions.

Run by hand (not in CI): ``python bench/pipeline_speed.py [--sessions 10000000]``. It clones the
committed repository into a temporary folder so the cache is cold, and prints one line per figure
with the target it is measured against. Results go in the README.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from machine import describe

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    """Wall seconds of a command, and its standard output."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["PYTHONPATH"] = str(cwd / "src")
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sessions", type=int, default=10_000_000, help="size of the big simulate run (0: skip)"
    )
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        cold, log = timed(["dvc", "repro"], repo)
        ran = log.count("Running stage")
        noop = min(timed(["dvc", "repro"], repo)[0] for _ in range(3))
        forced, log = timed(["dvc", "repro", "--force"], repo)
        print(f"cold dvc repro: {cold:.1f} s, {ran} stages run (target 60 s: {cold / 60:.2f} of budget)")
        print(f"no-op dvc repro: {noop:.2f} s (target 2 s: {noop / 2:.2f} of budget)")
        print(f"dvc repro --force: {forced:.1f} s, {log.count('Running stage')} stages run")

        if not args.sessions:
            return
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["simulate"].update(n_sessions=args.sessions, n_students=max(3000, args.sessions // 4))
        (repo / "big.yaml").write_text(yaml.safe_dump(params))
        # A wrapper whose only child is simulate, so its peak RSS is simulate's alone.
        wrapper = (
            "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True);"
            " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        simulate = [sys.executable, "-m", "mlpipe.simulate", "--params", "big.yaml"]
        simulate += ["--out", "big.db", "--metrics", "big.json"]
        seconds, out = timed([sys.executable, "-c", wrapper, *simulate], repo)
        peak = int(out.split()[-1])
        size = (repo / "big.db").stat().st_size
        print(
            f"simulate {args.sessions:,} sessions: {seconds:.0f} s, {args.sessions / seconds:,.0f} rows/s,"
            f" peak RSS {peak / 1024:.0f} MiB, database {size / 2**30:.2f} GiB"
        )
        shutil.rmtree(repo)


if __name__ == "__main__":
    main()
