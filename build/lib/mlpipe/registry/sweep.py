"""Hyperparameter sweeps the DVC way: a grid file becomes queued ``dvc exp run`` experiments.

A sweep file holds ``grid: {dotted.params.key: [value, ...]}``. Every combination is applied to
``params.yaml`` and loaded with the strict params loader *before* anything is queued, so a misspelt
key or an invalid value (which ``dvc exp run -S`` would accept, treeverse/dvc#5477) stops the sweep
with the key's name and nothing queued. Then each combination becomes
``dvc exp run --queue -S key=value ...``; ``dvc queue start -j 2`` runs them, ``dvc exp show`` ranks
them, ``dvc exp apply`` brings the best into the workspace.
"""

from __future__ import annotations

import copy
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from mlpipe.core.errors import PipelineError
from mlpipe.core.params import parse_params


def load_grid(path: str | Path) -> dict[str, list[Any]]:
    """The ``grid`` mapping of a sweep file.

    Raises:
        PipelineError: if the file is missing or ``grid`` is not a mapping of non-empty lists.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"sweep file not found: {path}") from None
    grid = data.get("grid") if isinstance(data, dict) else None
    if not isinstance(grid, dict) or not grid:
        raise PipelineError(f"{path}: needs a 'grid' mapping of params keys to lists of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise PipelineError(f"{path}: grid.{key} must be a non-empty list of values")
    return grid


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in a stable order."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def apply(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with dotted keys replaced (a missing key is added, for the loader to refuse)."""
    out = copy.deepcopy(params)
    for key, value in overrides.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else {}
        node[last] = value
    return out


def check(params: dict[str, Any], runs: list[dict[str, Any]], source: str = "params.yaml") -> None:
    """Load every combination with the strict loader.

    Raises:
        PipelineError: naming the combination and the bad key or value.
    """
    for run in runs:
        try:
            parse_params(apply(params, run), source)
        except PipelineError as exc:
            raise PipelineError(f"sweep run {json.dumps(run)}: {exc}") from None


def override(key: str, value: Any) -> str:
    """``-S`` syntax: ``train.units=[32,16]`` (JSON is valid Hydra override syntax for these values)."""
    return f"{key}={json.dumps(value, separators=(',', ':'))}"


def queue(root: Path, sweep_file: str | Path, pipeline: str = "", dry_run: bool = False) -> list[list[str]]:
    """Check every combination, then queue one experiment each; return the commands.

    Args:
        root: The repository.
        sweep_file: The grid.
        pipeline: The pipeline's folder (``""``: the root one); its params.yaml is the one varied.
        dry_run: Check and return the commands without queueing.

    Raises:
        PipelineError: for a bad sweep file or combination (nothing is queued), or a failed queueing.
    """
    params_file = f"{pipeline}/params.yaml" if pipeline else "params.yaml"
    params = yaml.safe_load((root / params_file).read_text(encoding="utf-8"))
    runs = combinations(load_grid(sweep_file))
    check(params, runs, params_file)
    target = [f"{pipeline}/dvc.yaml"] if pipeline else []
    prefix = f"{params_file}:" if pipeline else ""
    commands = [
        [
            sys.executable,
            "-m",
            "dvc",
            "exp",
            "run",
            "--queue",
            *target,
            *(a for k, v in run.items() for a in ("-S", prefix + override(k, v))),
        ]
        for run in runs
    ]
    for command in [] if dry_run else commands:
        result = subprocess.run(command, cwd=root, capture_output=True, text=True)
        if result.returncode != 0:
            raise PipelineError(f"{' '.join(command[2:])}: {result.stderr.strip()}")
    return commands
