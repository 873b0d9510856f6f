"""The early-warning pipeline at scale: every stage on a cohort of 100,000 students over a 40-week
term (about 10M activity rows), each stage a process of its own as DVC runs it, timed with its peak
memory (``/usr/bin/time -v``); then the training speed against a bare ``model.fit`` on the same
tensors, side by side in one process.

    python bench/early_warning_scale.py [--students 100000] [--weeks 40] [--epochs N] [--folder DIR]

The oracle is left out (``simulate.oracle: false``; evaluate without ``--oracle``): it is the demo's
yardstick, a particle filter a team's own pipeline does not have. Prints a table and writes
bench/out/early_warning_scale.json. Targets (issue 28): all stages in at most 15 minutes, no stage
above 4 GiB, training rows/s at least 0.9x a bare ``model.fit``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def params_file(folder: Path, args: argparse.Namespace) -> Path:
    data = yaml.safe_load((ROOT / "pipelines" / "early_warning" / "params.yaml").read_text())
    data["simulate"].update(students=args.students, weeks=args.weeks, oracle=False)
    if args.epochs:  # a fixed number of epochs (no early stopping), for a quick run
        data["train"].update(epochs=args.epochs, patience=args.epochs)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def stage(folder: Path, name: str, *arguments: str) -> dict:
    """Run ``python -m mlpipe.early_warning.<name>`` in ``folder``: its seconds and peak memory."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", f"mlpipe.early_warning.{name}", *arguments]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    found = {"seconds": round(seconds, 1), "peak_mib": round(peak_kb / 1024)}
    speed = re.search(r"trained (\d+) epochs \(([\d.]+) training rows/s\)", done.stderr)
    if speed:
        found["epochs"], found["training_rows_per_s"] = int(speed.group(1)), float(speed.group(2))
    print(f"{name:>10}: {found['seconds']:7.1f} s, peak {found['peak_mib']:5d} MiB", flush=True)
    return found


def bare_fit(folder: Path, params: Path, epochs: int) -> float:
    """Rows/s of a bare ``model.fit`` (the same network, tensors, batch and validation) over as many
    epochs as the stage ran, no callbacks: what the stage's training is measured against."""
    from mlpipe.core.params import load_early_warning_params
    from mlpipe.features import point_in_time
    from mlpipe.training import sequence

    spec = sequence.SequenceSpec.from_params(load_early_warning_params(str(params)).train)
    prep = json.loads((folder / "models" / "preprocessor.json").read_text())
    scale = point_in_time.SequenceScale.from_dict(prep["scale"])
    train, val = (point_in_time.load(folder / "data" / "processed", n) for n in ("train", "val"))
    x = scale.apply(train["static"], train["sequence"], train["mask"])
    x_val = scale.apply(val["static"], val["sequence"], val["mask"])
    model = sequence.build(len(prep["static"]), prep["weeks"], len(prep["channels"]), spec, 1)
    began = time.perf_counter()
    model.fit(
        x,
        train["label"].astype("float32"),
        validation_data=(x_val, val["label"].astype("float32")),
        batch_size=spec.batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=0,
    )
    return epochs * len(train["label"]) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=100_000)
    parser.add_argument("--weeks", type=int, default=40)
    parser.add_argument("--epochs", type=int, help="default: the params' (early stopping decides)")
    parser.add_argument("--folder", help="work folder (default: a temporary one)")
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="early-warning-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    params = params_file(folder, args)
    load = os.getloadavg()[0]
    common = ["--params", str(params)]
    splits = ["--splits", "data/processed", "--preprocessor", "models/preprocessor.json"]
    found = {
        "simulate": stage(folder, "simulate", *common, "--out", "data/source", "--metrics", "simulate.json"),
        "preprocess": stage(
            folder,
            "preprocess",
            *common,
            "--students",
            "data/source/students.parquet",
            "--activity",
            "data/source/activity.parquet",
            "--out",
            "data/processed",
            "--preprocessor",
            "models/preprocessor.json",
            "--metrics",
            "preprocess.json",
        ),
        "train": stage(folder, "train", *common, *splits, "--out", "models/model", "--metrics", "train.json"),
        "evaluate": stage(
            folder,
            "evaluate",
            *common,
            *splits,
            "--model",
            "models/model",
            "--metrics",
            "evaluate.json",
            "--plots",
            "plots",
        ),
    }
    model_out = {"path": "models/model", "md5": "0" * 32 + ".dir"}  # not run by DVC: a stand-in lineage
    lock = {"schema": "2.0", "stages": {"train": {"cmd": "train", "outs": [model_out]}}}
    (folder / "dvc.lock").write_text(yaml.safe_dump(lock))
    found["package"] = stage(
        folder,
        "package",
        *common,
        *splits,
        "--model",
        "models/model",
        "--evaluation",
        "evaluate.json",
        "--lock",
        "dvc.lock",
        "--out",
        "models/package",
        "--metrics",
        "package.json",
    )
    counts = json.loads((folder / "simulate.json").read_text())
    bare = bare_fit(folder, params, found["train"]["epochs"])
    total = sum(s["seconds"] for s in found.values())
    ratio = found["train"]["training_rows_per_s"] / bare
    peak = max(s["peak_mib"] for s in found.values())
    print(
        f"{counts['students']:,} students, {counts['activity_rows']:,} activity rows:"
        f" all stages {total / 60:.1f} min (target <= 15), largest peak {peak} MiB (target <= 4096);"
        f" training {found['train']['training_rows_per_s']:,.0f} rows/s against a bare model.fit's"
        f" {bare:,.0f} ({ratio:.2f}x, target >= 0.9); load before {load:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    result = {"counts": counts, "stages": found, "bare_fit_rows_per_s": bare, "load_before": load}
    (out / "early_warning_scale.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
