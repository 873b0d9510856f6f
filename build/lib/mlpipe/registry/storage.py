"""What a version keeps on the DVC remote: its bundle fetched into a folder (HEAD does not move)
and verified, the data of each registered version not pushed yet, and ``dvc gc`` refused until
all of it is."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from mlpipe.registry.repository import Project, RegistryError, git
from mlpipe.registry.tags import VERSION, version_of, version_tag, version_tags


def fetch(project: Project, version: str, out: Path) -> Path:
    """Download a version's bundle into ``out`` (from the cache or the remote), without moving HEAD.

    ``out`` must not exist or be empty; it is checked before anything is downloaded, and the bundle
    lands there only once it is whole and verified (nothing is left behind on a failure).

    Raises:
        RegistryError: if ``out`` holds files or DVC cannot get the bundle;
            mlpipe.bundle.layout.BundleError if it fails verification.
    """
    import shutil
    import tempfile

    from mlpipe.bundle import layout as bundle

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RegistryError(f"{out} exists and is not an empty folder: choose another -o")
    tag = version_tag(project, version)
    if tag not in version_tags(project):
        raise RegistryError(f"{tag} is not a registered version")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as scratch:
        target = Path(scratch, "bundle")  # must not exist: `dvc artifacts get -o DIR` nests in a folder
        command = [
            "artifacts",
            "get",
            str(project.root),
            project.artifact,
            "--rev",
            version_of(tag),
            "-o",
            str(target),
        ]
        result = subprocess.run(
            [sys.executable, "-m", "dvc", *command], cwd=project.root, capture_output=True, text=True
        )
        if result.returncode != 0:
            reason = result.stderr.strip() or result.stdout.strip()
            raise RegistryError(f"dvc artifacts get {project.artifact} {tag}: {reason}")
        bundle.verify(target)
        if out.exists():
            out.rmdir()
        shutil.move(str(target), out)
    return out


def all_version_tags(root: Path) -> list[str]:
    """Every registered version of every artifact in the repository (GTO ``name@vX.Y.Z`` tags)."""
    return sorted(t for t in git(root, "tag", "--list").split() if re.search(rf"@{VERSION}$", t))


def unpushed(root: Path, remote: str | None = None) -> dict[str, list[str]]:
    """Per registered version (of any artifact), the outputs whose data only the local cache holds.

    Those are what ``dvc gc`` would destroy. An output in neither the cache nor the remote (a
    pipeline that was never built at that commit) is not counted: gc cannot lose it, and no push
    can send it.
    """
    from dvc.repo import Repo

    tags = all_version_tags(root)
    missing: dict[str, list[str]] = {}
    if not tags:
        return missing
    commits = {t: git(root, "rev-parse", f"{t}^{{commit}}").strip() for t in tags}
    with Repo(str(root)) as repo:
        for rev in repo.brancher(revs=tags, workspace=False):
            used = repo.index.used_objs(force=True, remote=remote, push=True)
            objects = set().union(*(objs for odb, objs in used.items() if odb is None))
            status = repo.cloud.status(objects, remote=remote)
            lost = sorted({h.obj_name for h in status.new})
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
