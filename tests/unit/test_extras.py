"""`pip install mlpipe[serve]` holds what serving imports: the CLI, the server and batch scoring load
no package that only [train] or [dask] installs. (bench/README: an empty venv's install, measured.)"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAIN_ONLY = ["tensorflow", "keras", "dask", "distributed", "matplotlib", "sklearn", "dvc", "gto", "ruamel"]


def loaded_by(*modules: str) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {name.split(".")[0] for name in out.split()}


def test_serving_imports_nothing_that_only_train_or_dask_installs():
    loaded = loaded_by(
        "mlpipe.cli.main", "mlpipe.serving.http.app", "mlpipe.serving.batch", "mlpipe.cli.monitor"
    )
    assert loaded & set(TRAIN_ONLY) == set()


def test_the_check_sees_a_package_that_is_loaded():
    assert "pandera" in loaded_by("mlpipe.validate")  # a stage that loads a [train] package


def test_the_serve_extra_leaves_out_what_only_training_needs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    serve = " ".join(project["dependencies"] + project["optional-dependencies"]["serve"])
    for package in ("tensorflow", "keras", "dask", "matplotlib", "scikit-learn", "dvc"):
        assert package not in serve
