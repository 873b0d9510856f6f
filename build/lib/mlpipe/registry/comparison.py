"""What versions' metrics say: the metrics files at a git revision (through ``dvc metrics``), the
package stage's gate verdict, and whether one version is worse than another on the deciding metric.
"""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlpipe.core import decisions
from mlpipe.core.params import RegistryParams
from mlpipe.registry.repository import Project, RegistryError, git


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested metrics as ``{"model.rmse": 0.42, ...}``, the keys ``dvc metrics`` shows."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def metrics_at(project: Project, rev: str) -> dict[str, dict[str, Any]]:
    """The pipeline's metrics files at a git revision, flattened: ``{file: {key: value}}``.

    Raises:
        RegistryError: if the revision does not exist.
    """
    from dvc.repo import Repo

    git(project.root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    # Other pipelines' folders: their metrics are not this pipeline's.
    others = {
        str(Path(f).parent)
        for f in git(project.root, "ls-tree", "-r", "--name-only", rev).split()
        if Path(f).name == "dvc.yaml" and str(Path(f).parent) not in (".", project.pipeline or ".")
    }
    with Repo(str(project.root)) as repo:
        shown = repo.metrics.show(revs=[rev], hide_workspace=True)
    files = shown.get(rev, next((v for k, v in shown.items() if k != "workspace"), {})).get("data", {})
    prefix = f"{project.pipeline}/" if project.pipeline else ""
    return {
        path: flatten(entry.get("data", {}))
        for path, entry in files.items()
        if "data" in entry and path.startswith(prefix) and not any(path.startswith(f"{o}/") for o in others)
    }


def stage_paths(dvc_yaml: str, pipeline: str, entries: str, name: str = "package") -> tuple[str, list[str]]:
    """The ``dvc.yaml`` named for messages, and the paths its stage ``name`` declares under
    ``entries`` (``outs`` or ``metrics``), relative to the repository.

    Raises:
        RegistryError: if there is no such stage.
    """
    where = f"{pipeline}/dvc.yaml" if pipeline else "dvc.yaml"
    try:
        stage = yaml.safe_load(dvc_yaml)["stages"][name]
    except (yaml.YAMLError, KeyError, TypeError):
        raise RegistryError(f"{where} has no {name} stage") from None
    declared = [next(iter(e)) if isinstance(e, dict) else e for e in stage.get(entries) or []]
    return where, [posixpath.normpath(posixpath.join(pipeline, path)) for path in declared]


def gate_path(dvc_yaml: str, pipeline: str = "") -> str:
    """Where the package stage of a pipeline's ``dvc.yaml`` text writes its verdict, as ``dvc
    metrics`` names the file (relative to the repository).

    Raises:
        RegistryError: if there is no package stage, or it declares other than one metrics file.
    """
    where, declared = stage_paths(dvc_yaml, pipeline, "metrics")
    if len(declared) != 1:
        raise RegistryError(f"{where}: the package stage must declare one metrics file (its gate verdict)")
    return declared[0]


def bundle_path(dvc_yaml: str, pipeline: str = "") -> str:
    """Where the package stage writes its bundle: its first declared output.

    Raises:
        RegistryError: if there is no package stage or it declares no output.
    """
    where, outs = stage_paths(dvc_yaml, pipeline, "outs")
    if not outs:
        raise RegistryError(f"{where}: the package stage declares no output (its bundle)")
    return outs[0]


def gate_verdict(project: Project, rev: str) -> dict[str, Any] | None:
    """The package stage's verdict at ``rev`` (flattened), read from the file its stage declares."""
    dvc_yaml = git(
        project.root, "show", f"{rev}:{project.pipeline + '/' if project.pipeline else ''}dvc.yaml"
    )
    return metrics_at(project, rev).get(gate_path(dvc_yaml, project.pipeline))


def metric_value(metrics: dict[str, dict[str, Any]], key: str, rev: str) -> float:
    """The one value of ``key`` among the metrics files.

    Raises:
        RegistryError: if no file or several files have it.
    """
    found = [(path, values[key]) for path, values in metrics.items() if key in values]
    if len(found) != 1:
        where = "no metrics file" if not found else ", ".join(p for p, _ in found)
        raise RegistryError(f"registry.metric {key!r}: found in {where} at {rev}")
    return float(found[0][1])


@dataclass(frozen=True)
class Comparison:
    """Two versions' values of the deciding metric, and whether the second is worse beyond tolerance."""

    metric: str
    old: float
    new: float
    change: float  # relative, positive = worse
    worse: bool
    tolerance: float

    def describe(self) -> str:
        """E.g. ``model.rmse: 0.42 -> 0.418 (0.48% better)`` or ``... (5.00% worse, beyond the
        tolerance of 2%)``."""
        if self.change == 0:
            how = "unchanged"
        else:
            how = f"{abs(self.change):.2%} {'worse' if self.change > 0 else 'better'}"
            if self.change > 0:
                how += f", {'beyond' if self.worse else 'within'} the tolerance of {self.tolerance:.2%}"
        return f"{self.metric}: {self.old:.6g} -> {self.new:.6g} ({how})"


def judge(old: float, new: float, settings: RegistryParams) -> Comparison:
    """Is ``new`` worse than ``old`` by more than the tolerance (relative)?"""
    if not (math.isfinite(old) and math.isfinite(new)):
        raise RegistryError(f"registry.metric {settings.metric!r} is not a finite number: {old}, {new}")
    change = (new - old) / abs(old) if old else new - old
    if not decisions.lower_is_better(settings.metric):
        change = -change
    return Comparison(settings.metric, old, new, change, change > settings.tolerance, settings.tolerance)


def compare_revisions(project: Project, old_rev: str, new_rev: str) -> Comparison:
    settings = project.params.registry
    old = metric_value(metrics_at(project, old_rev), settings.metric, old_rev)
    new = metric_value(metrics_at(project, new_rev), settings.metric, new_rev)
    return judge(old, new, settings)


def diff_table(project: Project, old_rev: str, new_rev: str) -> list[tuple[str, str, Any, Any, Any]]:
    """``(file, key, old, new, change)`` for every metric, as ``dvc metrics diff --all`` lists them."""
    old, new = metrics_at(project, old_rev), metrics_at(project, new_rev)
    rows = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path, {}), new.get(path, {})
        for key in sorted(set(a) | set(b)):
            x, y = a.get(key), b.get(key)
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
            rows.append((path, key, x, y, y - x if numeric else None))  # type: ignore[operator]
    return rows
