"""Temporary project repositories for the slow tests: the real code, dvc.yaml and config, tiny params."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from tests import tiny

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    **tiny.TINY,
    # later terms (mlpipe retrain's new rows) of 1,500 sessions: the first term is the same whatever they are
    "simulate": {"n_sessions": 1200, "n_students": 240, "n_topics": 30, "term_sessions": 1500},
}


def one_core() -> None:
    """Pin the calling process (a ``preexec_fn``) to a single CPU: a smaller host."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


# Another x86-64 host, emulated on this one: one core, other OpenBLAS kernels and threads, numpy
# without its AVX2 loops, and an instruction-set cap for oneDNN (which the stages pin back).
OTHER_HOST = {
    "OPENBLAS_CORETYPE": "Sandybridge",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
}


def user_env(repo: Path) -> dict[str, str]:
    """The environment of a user working in ``repo``: its own code on the path, a git identity."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(repo / "src"),
        "DVC_NO_ANALYTICS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }


def sh(
    repo: Path, *args: str, check: bool = True, host: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command in ``repo`` as a user would (:func:`user_env`); ``host`` (e.g.
    :data:`OTHER_HOST`) runs it on one core with those variables set."""
    env = user_env(repo) | (host or {})
    result = subprocess.run(
        args, cwd=repo, env=env, text=True, capture_output=True, preexec_fn=one_core if host else None
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def set_params(folder: Path, **sections: dict) -> None:
    """Update a params.yaml's sections in place (``train={"learning_rate": 0.004}``)."""
    path = folder / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def make_repo(repo: Path, project_config: bool = False, dropout: bool = False) -> Path:
    """A git + DVC repository with the project's code, dvc.yaml and tiny params, committed.

    Args:
        repo: An empty folder.
        project_config: Use the project's ``.dvc/config`` (its S3 remote) instead of a blank one.
        dropout: Add the second demo pipeline, ``pipelines/dropout/``, with tiny params too.
    """
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    set_params(repo, **TINY)
    if dropout:
        folder = repo / "pipelines" / "dropout"
        folder.mkdir(parents=True)
        shutil.copy(ROOT / "pipelines" / "dropout" / "dvc.yaml", folder / "dvc.yaml")
        shutil.copy(ROOT / "pipelines" / "dropout" / "params.yaml", folder / "params.yaml")
        set_params(folder, **tiny.DROPOUT_TINY)
    sh(repo, "git", "init", "-q", "-b", "main")
    sh(repo, "dvc", "init", "-q")
    if project_config:
        shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    sh(repo, "dvc", "config", "core.analytics", "false")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "init")
    return repo


def built_project(shared: Path) -> tuple[Path, str]:
    """The tiny project reproduced once and committed, in ``shared`` (the folder every pytest-xdist
    worker of a run sees), and the stdout of its first ``dvc repro``. The first worker to ask
    builds it; the others wait for it. Tests copy it (:func:`copy_project`) before changing it."""
    from filelock import FileLock

    repo, first = shared / "built-project", shared / "built-project.stdout"
    with FileLock(shared / "built-project.lock"):
        if not first.exists():
            shutil.rmtree(repo, ignore_errors=True)
            make_repo(repo)
            output = sh(repo, "dvc", "repro").stdout
            sh(repo, "git", "add", "-A")
            sh(repo, "git", "commit", "-qm", "built")
            first.write_text(output)
    return repo, first.read_text()


def copy_project(built: Path, folder: Path) -> Path:
    """A copy of the built project to change: its git history, DVC cache and outputs."""
    shutil.copytree(built, folder, symlinks=True)
    return folder
