"""A pipeline in its git repository: where it lives, its params, and how its versions are named;
the ``git`` calls the registry and the comparison of versions make.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlpipe.core.errors import PipelineError
from mlpipe.core.params import Params, load_params


class RegistryError(PipelineError):
    """A registry operation refused, with the reason."""


def git(root: Path, *args: str) -> str:
    """``git`` in ``root``; its output.

    Raises:
        RegistryError: with git's message, when it fails.
    """
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
