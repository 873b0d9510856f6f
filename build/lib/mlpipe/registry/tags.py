"""Model versions the GTO way, plus the checks GTO does not make.

A version is a GTO git tag (``study-time@v1.0.0``) on the commit whose ``dvc.lock`` names the
bundle; a stage assignment is another tag (``study-time#prod#3``). GTO and DVC do the work:
``gto`` writes the tags, ``dvc metrics diff`` compares, ``dvc artifacts get`` fetches. This module
adds only what they lack:

- :func:`register` refuses a commit whose gate verdict (the package stage's metrics) did not pass;
- :func:`promote` refuses a version worse than the one currently in the stage, beyond
  ``registry.tolerance`` on ``registry.metric``; :func:`rollback` re-points the stage to the
  version it held before;
- ``mlpipe compare`` prints every metric of two versions and says whether the second regressed
  (:mod:`mlpipe.registry.comparison`);
- fetching a version's bundle and guarding ``dvc gc`` are in :mod:`mlpipe.registry.storage`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from mlpipe.registry.comparison import bundle_path, compare_revisions, gate_verdict
from mlpipe.registry.repository import Project, RegistryError, git

VERSION = r"v\d+\.\d+\.\d+"  # GTO's semantic version, as in study-time@v1.0.0


def version_tag(project: Project, version: str) -> str:
    """``study-time@v1.0.0`` from ``v1.0.0`` (a full tag or another git ref passes through)."""
    return f"{project.tag_name}@{version}" if re.fullmatch(VERSION, version) else version


def version_tags(project: Project) -> list[str]:
    """The registered versions' tags, oldest version first."""
    name = project.tag_name
    tags = git(project.root, "tag", "--list", f"{name}@v*").split()
    tags = [t for t in tags if re.fullmatch(rf"{re.escape(name)}@{VERSION}", t)]
    return sorted(tags, key=lambda t: tuple(int(x) for x in t.rsplit("@v", 1)[1].split(".")))


def check_built_from_head(project: Project) -> None:
    """That what ``HEAD`` names is what the workspace holds: no uncommitted change to a tracked
    file, the pipeline up to date (``dvc status``), and a bundle built from committed code.

    Raises:
        RegistryError: naming what is out of date and the command that fixes it.
    """
    changed = git(project.root, "status", "--porcelain", "--untracked-files=no").splitlines()
    if changed:
        files = ", ".join(line[3:] for line in changed[:5]) + (" ..." if len(changed) > 5 else "")
        raise RegistryError(f"uncommitted changes ({files}): commit them, then register")
    pipeline = str(Path(project.pipeline or ".", "dvc.yaml"))
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json", pipeline],
        cwd=project.root,
        capture_output=True,
        text=True,
    )
    if status.returncode != 0 or status.stdout.strip() not in ("", "{}"):
        stale = (
            ", ".join(json.loads(status.stdout or "{}")) if status.returncode == 0 else status.stderr.strip()
        )
        raise RegistryError(f"{pipeline} is not up to date ({stale}): run `dvc repro`, commit, then register")
    bundle_dir = bundle_path((project.root / pipeline).read_text(encoding="utf-8"), project.pipeline)
    metadata = project.root / bundle_dir / "metadata.json"
    if metadata.is_file() and json.loads(metadata.read_text(encoding="utf-8"))["git"].get("dirty"):
        raise RegistryError(
            f"the bundle was built from uncommitted code: run `dvc repro -f {pipeline}:package`,"
            " commit dvc.lock, then register"
        )


def register(project: Project, ref: str = "HEAD", version: str | None = None, bump: str = "minor") -> str:
    """Register the bundle at ``ref`` as a new version; return its tag.

    For ``HEAD`` the workspace is checked too (:func:`check_built_from_head`); an older commit is
    judged by its gate verdict alone.

    Raises:
        RegistryError: if the gate verdict at ``ref`` is missing or failed, or ``HEAD`` is not
            what the workspace built.
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
    if ref == "HEAD":
        check_built_from_head(project)
    bumps = {f"bump_{bump}": True} if version is None else {}
    before = set(version_tags(project))
    api.register(str(project.root), project.artifact, ref, version=version, **bumps)
    created = sorted(set(version_tags(project)) - before)
    if len(created) != 1:
        raise RegistryError(f"GTO did not create a version tag for {project.artifact} at {ref}")
    return created[0]


def assignments(project: Project, stage: str) -> list[str]:
    """The versions ``stage`` was assigned, oldest first, in the order of GTO's numbered stage tags
    (``study-time#prod#1``, ``#2``, ...): timestamps tie within a second, and GTO's own
    ``find_versions_in_stage`` sorts by version number, not by when (v2 after a rollback to v1)."""
    from gto import api

    prefix = f"{project.tag_name}#{stage}#"
    events = [
        event
        for event in api.history(str(project.root), project.artifact)
        if event["event"] == "assignment" and event["stage"] == stage and str(event["ref"]).startswith(prefix)
    ]
    events.sort(key=lambda event: int(str(event["ref"])[len(prefix) :]))
    return [event["version"] for event in events]


def current_version(project: Project, stage: str) -> str | None:
    """The version ``stage`` holds now (its newest assignment), or None."""
    held = assignments(project, stage)
    return held[-1] if held else None


def stage_tag(project: Project, stage: str) -> str | None:
    """The newest GTO assignment tag of ``stage`` (``study-time#prod#3``), or None."""
    prefix = f"{project.tag_name}#{stage}#"
    numbered = [
        t for t in git(project.root, "tag", "--list", f"{prefix}*").split() if t[len(prefix) :].isdigit()
    ]
    return max(numbered, key=lambda t: int(t[len(prefix) :]), default=None)


def resolve(project: Project, version: str | None, stage: str | None) -> str:
    """The version to act on: ``version`` itself, or the one ``stage`` holds now.

    Raises:
        RegistryError: if neither or both are given, or the stage holds no version.
    """
    if (version is None) == (stage is None):
        raise RegistryError("name a version or a --stage (one of them)")
    if version is not None:
        return version
    current = current_version(project, stage)
    if current is None:
        raise RegistryError(f"no version of {project.artifact} is in {stage} (see `gto show`)")
    return current


def version_of(tag: str) -> str:
    """``v1.0.0`` from ``study-time@v1.0.0``."""
    return tag.rsplit("@", 1)[1]


def promote(project: Project, version: str, stage: str = "prod", live: Path | None = None) -> str:
    """Assign ``stage`` to ``version`` unless it is worse than the current one beyond tolerance.

    With ``live`` (``mlpipe monitor``'s metrics file), live outcomes decide instead of the test
    metrics (a retrained version's test split is not the old one's): the comparison there must say
    ``promote``, for the version the challenger stage holds.

    A version that held the stage before (prod went back from it with a rollback) can be
    promoted again: the stage holds its newest assignment, whatever GTO's own bookkeeping says.

    Raises:
        RegistryError: naming both versions and the metric, for a regression; what the live
            comparison says instead of ``promote``; or that the stage holds the version already.
    """
    from gto import api

    tag = version_tag(project, version)
    if tag not in version_tags(project):
        raise RegistryError(f"{tag} is not a registered version (see `gto show`)")
    current = current_version(project, stage)
    if live is not None:
        check_live_verdict(project, version_of(tag), live)
    if current == version_of(tag):
        raise RegistryError(f"{tag} is in {stage} already: nothing to promote")
    if live is None and current is not None:
        result = compare_revisions(project, version_tag(project, current), tag)
        if result.worse:
            raise RegistryError(
                f"{tag} is worse than {stage}'s {current} beyond the tolerance"
                f" {project.params.registry.tolerance:g}: {result.describe()}; not promoting"
            )
    # force: GTO refuses a version that still has an assignment to the stage from before a rollback
    api.assign(str(project.root), project.artifact, stage, version=version_of(tag), force=True)
    return version_of(tag)


def check_live_verdict(project: Project, version: str, live: Path) -> None:
    """That monitoring's champion/challenger comparison says ``promote`` and that ``version`` is
    the challenger it judged (the version the challenger stage holds).

    Raises:
        RegistryError: otherwise, saying what the comparison says.
    """
    if not live.is_file():
        raise RegistryError(f"{live}: no monitoring result (run `mlpipe monitor` on the prediction log)")
    comparison = json.loads(live.read_text(encoding="utf-8")).get("comparison")
    if comparison is None:
        raise RegistryError(f"{live}: no champion/challenger comparison (the log holds no challenger)")
    challenger = project.params.retrain.stage if project.params.retrain else "challenger"
    held = current_version(project, challenger)
    if held != version:
        raise RegistryError(
            f"{version} is not the version in {challenger} ({held}): the live verdict is not about it"
        )
    if comparison["verdict"] != "promote":
        raise RegistryError(
            f"the live comparison says {comparison['verdict']!r}, not 'promote' ({live}); not promoting"
        )


def rollback(project: Project, stage: str = "prod", to: str | None = None) -> str:
    """Re-point ``stage`` to ``to``, or to the version it held before the current one.

    Raises:
        RegistryError: if the stage has no earlier version.
    """
    from gto import api

    assigned = assignments(project, stage)
    if not assigned:
        raise RegistryError(f"{project.artifact} has never been in stage {stage!r}")
    target = to
    if target is None:
        earlier = [v for v in assigned if v != assigned[-1]]
        if not earlier:
            raise RegistryError(f"{stage!r} has held only {assigned[-1]}: nothing to roll back to")
        target = earlier[-1]
    version = version_of(version_tag(project, target))
    api.assign(str(project.root), project.artifact, stage, version=version, force=True)
    return version
