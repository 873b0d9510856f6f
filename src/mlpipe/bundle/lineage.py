"""What built a bundle: the md5 of every upstream output (from ``dvc.lock``), the code's git
revision and the library versions. Read by the package stage into the bundle's metadata.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from importlib import metadata as distributions
from pathlib import Path
from typing import Any

import yaml

from mlpipe.core.errors import PipelineError

LIBRARIES = ("mlpipe", "numpy", "pandas", "scikit-learn", "keras", "onnx", "onnxruntime")


def read_lock(lock_path: Path) -> dict[str, Any]:
    """``dvc.lock`` as a mapping.

    Raises:
        PipelineError: if it is missing (the stage was not run by ``dvc repro``).
    """
    try:
        return yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise PipelineError(f"{lock_path} not found: run this stage with `dvc repro`") from None


def outputs(lock: dict[str, Any], stage: str, lock_path: Path) -> dict[str, str]:
    """Path -> md5 of every output of the other stages in ``dvc.lock``, checked against the files.

    Raises:
        PipelineError: if the lock has no outputs, or a file no longer matches its md5 (a stale
            lock: run the stage through ``dvc repro``).
    """
    outs = {}
    for name, entry in sorted(lock.get("stages", {}).items()):
        for out in entry.get("outs", []) if name != stage else []:
            path = Path(out["path"])
            if path.is_file() and hashlib.md5(path.read_bytes()).hexdigest() != out["md5"]:
                raise PipelineError(
                    f"{lock_path} is stale for {out['path']}: run this stage with `dvc repro`"
                )
            outs[out["path"]] = out["md5"]
    if not outs:
        raise PipelineError(f"{lock_path} records no outputs: run this stage with `dvc repro`")
    return dict(sorted(outs.items()))


def code_files(lock: dict[str, Any]) -> list[str]:
    """The Python files that built the bundle: every ``.py`` dep of the other stages in the lock
    (every module of a folder dep), and every mlpipe module this process has imported (this
    stage's own code)."""
    files = {
        str(Path(module.__file__).resolve())
        for name, module in list(sys.modules.items())
        if (name == "mlpipe" or name.startswith("mlpipe.")) and getattr(module, "__file__", None)
    }
    for entry in lock.get("stages", {}).values():
        for dep in entry.get("deps", []):
            path = Path(dep["path"])
            if dep["path"].endswith(".py"):
                files.add(str(path.resolve()))
            elif "src/mlpipe" in path.as_posix() and path.is_dir():  # a part named whole in dvc.yaml
                files |= {str(f.resolve()) for f in path.rglob("*.py")}
    return sorted(files)


def git_revision(files: list[str]) -> dict[str, Any]:
    """The last commit that changed any of ``files`` (the code that built the bundle), and whether
    they differed from it when the bundle was built.

    Not ``HEAD``: a commit that does not touch that code (results, docs, the server) must not
    change what a rebuild writes, or no two builds on either side of it would agree. Params and
    data are recorded by value and md5 elsewhere in the metadata.
    """

    def git(*args: str) -> str:
        return subprocess.run(["git", *args, "--", *files], capture_output=True, text=True, check=True).stdout

    try:
        revision = git("log", "-1", "--format=%H").strip()
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return {"revision": None, "dirty": None}
    return {"revision": revision or None, "dirty": bool(status.strip())}


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        versions[name] = distributions.version(name)
    for name in ("tensorflow", "tensorflow-cpu"):
        try:
            versions["tensorflow"] = distributions.version(name)
        except distributions.PackageNotFoundError:
            continue
    return dict(sorted(versions.items()))
