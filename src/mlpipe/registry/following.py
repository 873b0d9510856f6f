"""A served bundle that follows the registry: ``mlpipe serve --stage prod --challenger-stage
challenger`` fetches the version each stage holds and, on every reload (SIGHUP), looks again: when
a stage has moved (``mlpipe promote``, ``mlpipe retrain``, ``git fetch --tags``), the new version is
fetched (verified, from the DVC cache or remote) into a folder of its own and the server swaps it in.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mlpipe.registry import storage
from mlpipe.registry import tags as registry
from mlpipe.registry.repository import Project


class Following:
    """The folder of the bundle that ``stage`` holds (or the fixed ``version``), fetched under
    ``workdir`` again whenever that changes; None while the stage holds no version.

    Raises (on call):
        RegistryError, BundleError: if the version cannot be fetched or fails verification.
    """

    def __init__(
        self, project: Project, workdir: Path, stage: str | None, version: str | None = None
    ) -> None:
        self.project, self.workdir = project, Path(workdir)
        self.stage, self.version = stage, version
        self.held: str | None = None
        self.folder: Path | None = None
        self.fetches = 0

    def wanted(self) -> str | None:
        if self.version is not None:
            return self.version
        return registry.current_version(self.project, self.stage or "prod")

    def __call__(self) -> str | None:
        version = self.wanted()
        if version is None:
            return None
        if version != self.held or self.folder is None:
            self.fetches += 1
            target = self.workdir / f"{self.fetches}-{version}"
            storage.fetch(self.project, version, target)
            previous, self.held, self.folder = self.folder, version, target
            if previous is not None:  # the model served from it is loaded in memory already
                shutil.rmtree(previous, ignore_errors=True)
        return str(self.folder)
