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
import posixpath
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlpipe import decisions
from mlpipe.errors import PipelineError
from mlpipe.params import Params, RegistryParams, load_params


class RegistryError(PipelineError):
    """A registry operation refused, with the reason."""


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise RegistryError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class Project:
    """A pipeline of the repository: its folder (``""`` for the root one) and its params.

    The artifact is named as DVC and GTO name it: ``study-time`` for the root pipeline,
    ``pipelines/dropout:dropout`` for one in a subfolder, whose tags read
    ``pipelines/dropout=dropout@v1.0.0``.
    """

    root: Path
    pipeline: str
    params: Params

    @property
    def artifact(self) -> str:
        name = self.params.package.name
        return f"{self.pipeline}:{name}" if self.pipeline else name

    @property
    def tag_name(self) -> str:
        return self.artifact.replace(":", "=")


def project(root: str | Path = ".", pipeline: str = ".") -> Project:
    """The repository and one of its pipelines (the folder holding its dvc.yaml and params.yaml)."""
    path = Path(root).resolve()
    folder = Path(pipeline).as_posix().strip("/")
    folder = "" if folder in ("", ".") else folder
    return Project(path, folder, load_params(path / folder / "params.yaml"))


VERSION = r"v\d+\.\d+\.\d+"  # GTO's semantic version, as in study-time@v1.0.0


def version_tag(project: Project, version: str) -> str:
    """``study-time@v1.0.0`` from ``v1.0.0`` (a full tag or another git ref passes through)."""
    return f"{project.tag_name}@{version}" if re.fullmatch(VERSION, version) else version


def version_tags(project: Project) -> list[str]:
    """The registered versions' tags, oldest version first."""
    name = project.tag_name
    tags = _git(project.root, "tag", "--list", f"{name}@v*").split()
    tags = [t for t in tags if re.fullmatch(rf"{re.escape(name)}@{VERSION}", t)]
    return sorted(tags, key=lambda t: tuple(int(x) for x in t.rsplit("@v", 1)[1].split(".")))


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

    _git(project.root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    # Other pipelines' folders: their metrics are not this pipeline's.
    others = {
        str(Path(f).parent)
        for f in _git(project.root, "ls-tree", "-r", "--name-only", rev).split()
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


def gate_path(dvc_yaml: str, pipeline: str = "") -> str:
    """Where the package stage of a pipeline's ``dvc.yaml`` text writes its verdict, as ``dvc
    metrics`` names the file (relative to the repository).

    Raises:
        RegistryError: if there is no package stage, or it declares other than one metrics file.
    """
    where = f"{pipeline}/dvc.yaml" if pipeline else "dvc.yaml"
    try:
        stage = yaml.safe_load(dvc_yaml)["stages"]["package"]
    except (yaml.YAMLError, KeyError, TypeError):
        raise RegistryError(f"{where} has no package stage") from None
    declared = [next(iter(m)) if isinstance(m, dict) else m for m in stage.get("metrics") or []]
    if len(declared) != 1:
        raise RegistryError(f"{where}: the package stage must declare one metrics file (its gate verdict)")
    return posixpath.normpath(posixpath.join(pipeline, declared[0]))


def gate_verdict(project: Project, rev: str) -> dict[str, Any] | None:
    """The package stage's verdict at ``rev`` (flattened), read from the file its stage declares."""
    dvc_yaml = _git(
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
    if not decisions.lower_is_better(settings.metric):
        change = -change
    return Comparison(settings.metric, old, new, change, change > settings.tolerance)


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


def register(project: Project, ref: str = "HEAD", version: str | None = None, bump: str = "minor") -> str:
    """Register the bundle at ``ref`` as a new version; return its tag.

    Raises:
        RegistryError: if the gate verdict at ``ref`` is missing or failed.
    """
    from gto import api

    verdict = gate_verdict(project, ref)
    if verdict is None:
        raise RegistryError(
            f"no gate verdict at {ref}: run `dvc repro` and commit the package stage's metrics"
        )
    if verdict["passed"] is not True:
        failed = sorted(
            k.removesuffix(".passed") for k, v in verdict.items() if k.endswith(".passed") and not v
        )
        raise RegistryError(f"the gate failed at {ref} ({', '.join(failed)}): not registering")
    bumps = {f"bump_{bump}": True} if version is None else {}
    before = set(version_tags(project))
    api.register(str(project.root), project.artifact, ref, version=version, **bumps)
    created = sorted(set(version_tags(project)) - before)
    if len(created) != 1:
        raise RegistryError(f"GTO did not create a version tag for {project.artifact} at {ref}")
    return created[0]


def current_version(project: Project, stage: str) -> str | None:
    """The version assigned to ``stage`` now (GTO's latest assignment), or None."""
    from gto import api

    found = api.find_versions_in_stage(str(project.root), project.artifact, stage)
    return found[0].version if found else None


def _version(tag: str) -> str:
    return tag.rsplit("@", 1)[1]


def promote(project: Project, version: str, stage: str = "prod") -> str:
    """Assign ``stage`` to ``version`` unless it is worse than the current one beyond tolerance.

    Raises:
        RegistryError: naming both versions and the metric, for a regression.
    """
    from gto import api

    tag = version_tag(project, version)
    if tag not in version_tags(project):
        raise RegistryError(f"{tag} is not a registered version (see `gto show`)")
    current = current_version(project, stage)
    if current is not None:
        result = compare_revisions(project, version_tag(project, current), tag)
        if result.worse:
            raise RegistryError(
                f"{tag} is worse than {stage}'s {current} beyond the tolerance"
                f" {project.params.registry.tolerance:g}: {result.describe()}; not promoting"
            )
    api.assign(str(project.root), project.artifact, stage, version=_version(tag))
    return _version(tag)


def rollback(project: Project, stage: str = "prod", to: str | None = None) -> str:
    """Re-point ``stage`` to ``to``, or to the version it held before the current one.

    Raises:
        RegistryError: if the stage has no earlier version.
    """
    from gto import api

    assigned = [
        event["version"]
        for event in sorted(api.history(str(project.root), project.artifact), key=lambda e: e["timestamp"])
        if event["event"] == "assignment" and event["stage"] == stage
    ]
    if not assigned:
        raise RegistryError(f"{project.artifact} has never been in stage {stage!r}")
    target = to
    if target is None:
        earlier = [v for v in assigned if v != assigned[-1]]
        if not earlier:
            raise RegistryError(f"{stage!r} has held only {assigned[-1]}: nothing to roll back to")
        target = earlier[-1]
    version = _version(version_tag(project, target))
    api.assign(str(project.root), project.artifact, stage, version=version, force=True)
    return version


def fetch(project: Project, version: str, out: Path) -> Path:
    """Download a version's bundle into ``out`` (from the cache or the remote), without moving HEAD.

    Raises:
        RegistryError: if DVC cannot get it; mlpipe.bundle.BundleError if it fails verification.
    """
    from mlpipe import bundle

    tag = version_tag(project, version)
    if tag not in version_tags(project):
        raise RegistryError(f"{tag} is not a registered version")
    command = [
        "artifacts",
        "get",
        str(project.root),
        project.artifact,
        "--rev",
        _version(tag),
        "-o",
        str(out),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *command], cwd=project.root, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RegistryError(
            f"dvc artifacts get {project.artifact} {tag}: {result.stderr.strip() or result.stdout.strip()}"
        )
    bundle.verify(out)
    return out


def all_version_tags(root: Path) -> list[str]:
    """Every registered version of every artifact in the repository (GTO ``name@vX.Y.Z`` tags)."""
    return sorted(t for t in _git(root, "tag", "--list").split() if re.search(rf"@{VERSION}$", t))


def unpushed(root: Path, remote: str | None = None) -> dict[str, list[str]]:
    """Per registered version (of any artifact), the outputs whose data the DVC remote does not hold."""
    from dvc.repo import Repo

    tags = all_version_tags(root)
    missing: dict[str, list[str]] = {}
    if not tags:
        return missing
    commits = {t: _git(root, "rev-parse", f"{t}^{{commit}}").strip() for t in tags}
    with Repo(str(root)) as repo:
        for rev in repo.brancher(revs=tags, workspace=False):
            used = repo.index.used_objs(force=True, remote=remote, push=True)
            objects = set().union(*(objs for odb, objs in used.items() if odb is None))
            status = repo.cloud.status(objects, remote=remote)
            lost = sorted({h.obj_name for h in [*status.new, *status.missing]})
            for tag in [t for t, c in commits.items() if c == rev or t == rev] if lost else []:
                missing[tag] = lost
    return missing


def gc(root: Path, dvc_args: Sequence[str], remote: str | None = None) -> None:
    """Run ``dvc gc`` with ``dvc_args`` only if every registered version's data is on the remote.

    Raises:
        RegistryError: naming the versions and outputs that only exist locally.
    """
    missing = unpushed(root, remote)
    if missing:
        listed = "; ".join(f"{tag}: {', '.join(paths)}" for tag, paths in missing.items())
        raise RegistryError(
            f"refusing `dvc gc`: registered versions have data that is not on the remote ({listed});"
            " run `dvc push --all-tags` first"
        )
    result = subprocess.run([sys.executable, "-m", "dvc", "gc", *dvc_args], cwd=root)
    if result.returncode != 0:
        raise RegistryError(f"dvc gc exited with {result.returncode}")
