"""``mlpipe fsck``: re-hash every DVC cache object the locks refer to, and repair from the remote.

DVC trusts its state database: a cache object changed in place with its size and mtime kept passes
``dvc status``, and ``dvc checkout`` copies it out. fsck reads every byte instead. For each cached
output of every pipeline in the workspace's locks (and, with ``all_tags``, at every registered
version), it hashes the output's object and, for a folder, each file's object, against the md5
that names it. Then it hashes the workspace's copy of each output the locks name, which a checkout
from a bad object may have spoilt.

``repair`` moves each corrupted object aside to ``.dvc/tmp/fsck/`` and runs ``dvc fetch`` for what
is then missing (the project's remote has ``verify = true``, so DVC re-hashes what it downloads),
restores the workspace's spoilt outputs from the repaired cache (``dvc checkout --relink``), and
checks everything again.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mlpipe.registry.repository import RegistryError
from mlpipe.registry.storage import all_version_tags

WORKSPACE = "workspace"


@dataclass
class Reference:
    """A cache object, the file it holds and the revisions whose locks name it."""

    oid: str  # its md5 (``.dir`` for a folder's listing)
    path: str  # the file in the repository: an output, or a file of a folder output
    revs: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Damage:
    kind: str  # "missing" or "corrupted" (a cache object); "workspace" (a checked-out copy)
    path: str
    revs: tuple[str, ...]
    where: Path
    output: str = ""  # for a workspace copy: the output it belongs to (what dvc checkout restores)

    def line(self) -> str:
        what = {"missing": "missing from the cache", "corrupted": "corrupted in the cache"}
        return f"{self.path} ({', '.join(self.revs)}): " + (
            f"{what[self.kind]}: {self.where}"
            if self.kind in what
            else f"differs from dvc.lock: {self.where}"
        )


@dataclass(frozen=True)
class Report:
    objects: int  # cache objects hashed
    files: int  # workspace files hashed
    damage: list[Damage]


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def references(root: Path, all_tags: bool) -> tuple[Path, dict[Path, Reference], dict[str, str]]:
    """The local cache's folder, every object the locks name (outputs only: folders are expanded by
    :func:`scan`) and the workspace's cached outputs (repository path -> md5)."""
    from dvc.repo import Repo

    refs: dict[Path, Reference] = {}
    workspace: dict[str, str] = {}
    with Repo(str(root)) as repo:
        cache = repo.cache.local
        revs = all_version_tags(root) if all_tags else []
        for rev in repo.brancher(revs=revs, workspace=True):
            rev = rev if rev and rev != WORKSPACE else WORKSPACE  # brancher names the workspace "" or so
            for out in repo.index.outs:
                if not out.use_cache or not out.hash_info or not out.hash_info.value:
                    continue
                path = (
                    os.path.relpath(out.fs_path, repo.root_dir) if os.path.isabs(out.fs_path) else out.fs_path
                )
                path = path.lstrip("/")
                oid = out.hash_info.value
                ref = refs.setdefault(Path(cache.oid_to_path(oid)), Reference(oid, path))
                ref.revs.add(rev)
                if rev == WORKSPACE:
                    workspace[path] = oid
        return Path(cache.path), refs, workspace


def scan(root: str | os.PathLike[str], all_tags: bool = False) -> Report:
    """Hash every referenced cache object (a folder's listing, then its files) and the workspace's
    copies of the current locks' outputs."""
    root = Path(root).resolve()
    cache, pending, workspace = references(root, all_tags)
    damage: list[Damage] = []
    listings: dict[str, list[dict[str, str]]] = {}
    done: set[Path] = set()
    while pending:
        where, ref = pending.popitem()
        done.add(where)
        revs = tuple(sorted(ref.revs))
        if not where.is_file():
            damage.append(Damage("missing", ref.path, revs, where))
            continue
        if md5_of(where) != ref.oid.removesuffix(".dir"):
            damage.append(Damage("corrupted", ref.path, revs, where))
            continue
        if ref.oid.endswith(".dir"):
            listings[ref.oid] = entries = json.loads(where.read_bytes())
            for entry in entries:
                inner = cache / entry["md5"][:2] / entry["md5"][2:]
                if inner in done:
                    continue
                found = pending.setdefault(inner, Reference(entry["md5"], f"{ref.path}/{entry['relpath']}"))
                found.revs |= ref.revs
    files = 0
    for path, oid in sorted(workspace.items()):
        expected = (
            {f"{path}/{e['relpath']}": e["md5"] for e in listings.get(oid, [])}
            if oid.endswith(".dir")
            else {path: oid}
        )
        for name, md5 in expected.items():
            copy = root / name
            if copy.is_file():
                files += 1
                if md5_of(copy) != md5:
                    damage.append(Damage("workspace", name, (WORKSPACE,), copy, output=path))
    order = {"corrupted": 0, "missing": 1, "workspace": 2}
    return Report(len(done), files, sorted(damage, key=lambda d: (order[d.kind], d.path)))


def dvc(root: Path, *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root)
    if result.returncode != 0:
        raise RegistryError(f"dvc {' '.join(args)} exited with {result.returncode}")


def repair(root: str | os.PathLike[str], report: Report, all_tags: bool = False) -> Report:
    """Move the corrupted objects aside, fetch what is missing, restore spoilt workspace copies,
    and scan again."""
    root = Path(root).resolve()
    aside = root / ".dvc" / "tmp" / "fsck"
    corrupted = [d for d in report.damage if d.kind == "corrupted"]
    for damage in corrupted:
        aside.mkdir(parents=True, exist_ok=True)
        os.replace(damage.where, aside / f"{damage.where.parent.name}{damage.where.name}")
    if corrupted or any(d.kind == "missing" for d in report.damage):
        dvc(root, "fetch", *(["--all-tags"] if all_tags else []))
    spoilt = sorted({d.output for d in report.damage if d.kind == "workspace"})
    if spoilt:
        dvc(root, "checkout", "--relink", *spoilt)
    return scan(root, all_tags)
