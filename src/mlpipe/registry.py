"""Model versions the GTO way, plus the checks GTO does not make.

A version is a GTO git tag (``study-time@v1.0.0``) on the commit whose ``dvc.lock`` names the
bundle; a stage assignment is another tag (``study-time#prod#3``). GTO and DVC do the work:
``gto`` writes the tags, ``dvc metrics diff`` compares, ``dvc artifacts get`` fetches. This module
adds only what they lack:

- :func:`register` refuses a commit whose gate verdict (the package stage's metrics) did not pass;
- :func:`promote` refuses a version worse than the one currently in the stage, beyond
  ``registry.tolerance`` on ``registry.metric``; :func:`rollback` re-points the stage to the
  version it held before;
- :func:`compare` prints every metric of two versions and says whether the second regressed;
- :func:`fetch` downloads a version's bundle into a folder without moving HEAD, and verifies it;
- :func:`unpushed` lists, per registered version, the data missing from the DVC remote, which
  :func:`gc` checks before it lets ``dvc gc`` run.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpipe.errors import PipelineError
from mlpipe.params import Params, RegistryParams, load_params


class RegistryError(PipelineError):
    """A registry operation refused, with the reason."""


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise RegistryError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def project(root: str | Path = ".") -> tuple[Path, Params]:
    """The repository root and its params (for the artifact name and the registry settings)."""
    path = Path(root).resolve()
    return path, load_params(path / "params.yaml")


def version_tag(name: str, version: str) -> str:
    """``study-time@v1.0.0`` from ``v1.0.0`` (a full tag or another git ref passes through)."""
    return f"{name}@{version}" if re.fullmatch(r"v\d+\.\d+\.\d+", version) else version


def version_tags(root: Path, name: str) -> list[str]:
    """The registered versions' tags, oldest version first."""
    tags = _git(root, "tag", "--list", f"{name}@v*").split()
    tags = [t for t in tags if re.fullmatch(rf"{re.escape(name)}@v\d+\.\d+\.\d+", t)]
    return sorted(tags, key=lambda t: tuple(int(x) for x in t.split("@v")[1].split(".")))


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested metrics as ``{"model.rmse": 0.42, ...}``, the keys ``dvc metrics`` shows."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def metrics_at(root: Path, rev: str) -> dict[str, dict[str, Any]]:
    """Every metrics file at a git revision, flattened: ``{file: {key: value}}``.

    Raises:
        RegistryError: if the revision does not exist.
    """
    from dvc.repo import Repo

    _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    with Repo(str(root)) as repo:
        shown = repo.metrics.show(revs=[rev], hide_workspace=True)
    files = shown.get(rev, next((v for k, v in shown.items() if k != "workspace"), {})).get("data", {})
    return {path: flatten(entry.get("data", {})) for path, entry in files.items() if "data" in entry}


def gate_verdict(metrics: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The package stage's verdict among the metrics files (the one with ``passed`` and checks)."""
    for values in metrics.values():
        if "passed" in values and any(k.startswith("checks.") for k in values):
            return values
    return None


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

    def describe(self) -> str:
        verdict = "worse" if self.worse else "not worse"
        return (
            f"{self.metric}: {self.old:.6g} -> {self.new:.6g} ({self.change:+.2%} towards worse;"
            f" {verdict} beyond the tolerance)"
        )


def judge(old: float, new: float, settings: RegistryParams) -> Comparison:
    """Is ``new`` worse than ``old`` by more than the tolerance (relative)?"""
    if not (math.isfinite(old) and math.isfinite(new)):
        raise RegistryError(f"registry.metric {settings.metric!r} is not a finite number: {old}, {new}")
    change = (new - old) / abs(old) if old else new - old
    if not settings.lower_is_better:
        change = -change
    return Comparison(settings.metric, old, new, change, change > settings.tolerance)


def compare_revisions(root: Path, params: Params, old_rev: str, new_rev: str) -> Comparison:
    settings = params.registry
    old = metric_value(metrics_at(root, old_rev), settings.metric, old_rev)
    new = metric_value(metrics_at(root, new_rev), settings.metric, new_rev)
    return judge(old, new, settings)


def diff_table(root: Path, old_rev: str, new_rev: str) -> list[tuple[str, str, Any, Any, Any]]:
    """``(file, key, old, new, change)`` for every metric, as ``dvc metrics diff --all`` lists them."""
    old, new = metrics_at(root, old_rev), metrics_at(root, new_rev)
    rows = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path, {}), new.get(path, {})
        for key in sorted(set(a) | set(b)):
            x, y = a.get(key), b.get(key)
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
            rows.append((path, key, x, y, y - x if numeric else None))  # type: ignore[operator]
    return rows


def register(
    root: Path, params: Params, ref: str = "HEAD", version: str | None = None, bump: str = "minor"
) -> str:
    """Register the bundle at ``ref`` as a new version; return its tag.

    Raises:
        RegistryError: if the gate verdict at ``ref`` is missing or failed.
    """
    from gto import api

    verdict = gate_verdict(metrics_at(root, ref))
    if verdict is None:
        raise RegistryError(
            f"no gate verdict at {ref}: run `dvc repro` and commit the package stage's metrics"
        )
    if verdict["passed"] is not True:
        failed = sorted(
            k.removesuffix(".passed") for k, v in verdict.items() if k.endswith(".passed") and not v
        )
        raise RegistryError(f"the gate failed at {ref} ({', '.join(failed)}): not registering")
    name = params.package.name
    bumps = {f"bump_{bump}": True} if version is None else {}
    before = set(version_tags(root, name))
    api.register(str(root), name, ref, version=version, **bumps)
    created = sorted(set(version_tags(root, name)) - before)
    if len(created) != 1:
        raise RegistryError(f"GTO did not create a version tag for {name} at {ref}")
    return created[0]


def current_version(root: Path, name: str, stage: str) -> str | None:
    """The version assigned to ``stage`` now (GTO's latest assignment), or None."""
    from gto import api

    found = api.find_versions_in_stage(str(root), name, stage)
    return found[0].version if found else None


def promote(root: Path, params: Params, version: str, stage: str = "prod") -> str:
    """Assign ``stage`` to ``version`` unless it is worse than the current one beyond tolerance.

    Raises:
        RegistryError: naming both versions and the metric, for a regression.
    """
    from gto import api

    name = params.package.name
    tag = version_tag(name, version)
    if tag not in version_tags(root, name):
        raise RegistryError(f"{tag} is not a registered version (see `gto show {name}`)")
    current = current_version(root, name, stage)
    if current is not None:
        result = compare_revisions(root, params, version_tag(name, current), tag)
        if result.worse:
            raise RegistryError(
                f"{tag} is worse than {stage}'s {current} beyond the tolerance {params.registry.tolerance:g}:"
                f" {result.describe()}; not promoting"
            )
    api.assign(str(root), name, stage, version=tag.split("@")[1])
    return tag.split("@")[1]


def rollback(root: Path, params: Params, stage: str = "prod", to: str | None = None) -> str:
    """Re-point ``stage`` to ``to``, or to the version it held before the current one.

    Raises:
        RegistryError: if the stage has no earlier version.
    """
    from gto import api

    name = params.package.name
    assigned = [
        event["version"]
        for event in sorted(api.history(str(root), name), key=lambda e: e["timestamp"])
        if event["event"] == "assignment" and event["stage"] == stage
    ]
    if not assigned:
        raise RegistryError(f"{name} has never been in stage {stage!r}")
    target = to
    if target is None:
        earlier = [v for v in assigned if v != assigned[-1]]
        if not earlier:
            raise RegistryError(f"{stage!r} has held only {assigned[-1]}: nothing to roll back to")
        target = earlier[-1]
    api.assign(str(root), name, stage, version=version_tag(name, target).split("@")[1], force=True)
    return version_tag(name, target).split("@")[1]


def fetch(root: Path, params: Params, version: str, out: Path) -> Path:
    """Download a version's bundle into ``out`` (from the cache or the remote), without moving HEAD.

    Raises:
        RegistryError: if DVC cannot get it; mlpipe.bundle.BundleError if it fails verification.
    """
    from mlpipe import bundle

    name = params.package.name
    tag = version_tag(name, version)
    if tag not in version_tags(root, name):
        raise RegistryError(f"{tag} is not a registered version")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dvc",
            "artifacts",
            "get",
            str(root),
            name,
            "--rev",
            tag.split("@")[1],
            "-o",
            str(out),
        ],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RegistryError(
            f"dvc artifacts get {name} {tag}: {result.stderr.strip() or result.stdout.strip()}"
        )
    bundle.verify(out)
    return out


def unpushed(root: Path, params: Params, remote: str | None = None) -> dict[str, list[str]]:
    """Per registered version, the outputs whose data the DVC remote does not hold."""
    from dvc.repo import Repo

    tags = version_tags(root, params.package.name)
    missing: dict[str, list[str]] = {}
    if not tags:
        return missing
    with Repo(str(root)) as repo:
        for rev in repo.brancher(revs=tags, workspace=False):
            used = repo.index.used_objs(force=True, remote=remote, push=True)
            objects = set().union(*(objs for odb, objs in used.items() if odb is None))
            status = repo.cloud.status(objects, remote=remote)
            lost = sorted({h.obj_name for h in [*status.new, *status.missing]})
            if lost:
                names = [t for t in tags if _git(root, "rev-parse", f"{t}^{{commit}}").strip() == rev] or [
                    rev
                ]
                for name in names:
                    missing[name] = lost
    return missing


def gc(root: Path, params: Params, dvc_args: Sequence[str], remote: str | None = None) -> None:
    """Run ``dvc gc`` with ``dvc_args`` only if every registered version's data is on the remote.

    Raises:
        RegistryError: naming the versions and outputs that only exist locally.
    """
    missing = unpushed(root, params, remote)
    if missing:
        listed = "; ".join(f"{tag}: {', '.join(paths)}" for tag, paths in missing.items())
        raise RegistryError(
            f"refusing `dvc gc`: registered versions have data that is not on the remote ({listed});"
            " run `dvc push --all-tags` first"
        )
    result = subprocess.run([sys.executable, "-m", "dvc", "gc", *dvc_args], cwd=root)
    if result.returncode != 0:
        raise RegistryError(f"dvc gc exited with {result.returncode}")
