"""A real bundle, built once by the real stages from the small demo data, for the serving tests."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tests.tiny import TINY

from mlpipe import evaluate, package, preprocess, train
from mlpipe.core import files


def write_lock(path: Path, outs: dict[str, Path]) -> None:
    """A dvc.lock as DVC writes it, for outputs made here by calling the stages directly."""
    stages = {}
    for stage, out in outs.items():
        md5 = hashlib.md5(out.read_bytes()).hexdigest() if out.is_file() else "0" * 32 + ".dir"
        stages[stage] = {"cmd": stage, "outs": [{"path": str(out), "hash": "md5", "md5": md5}]}
    path.write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))


def run_package(root: Path, out: Path, metrics: Path, params: Path | None = None) -> None:
    package.main(
        ["--params", str(params or root / "params.yaml"), "--splits", str(root / "splits")]
        + ["--preprocessor", str(root / "prep.json"), "--model", str(root / "model")]
        + ["--evaluation", str(root / "evaluate.json"), "--lock", str(root / "dvc.lock")]
        + ["--out", str(out), "--metrics", str(metrics)]
    )


@pytest.fixture(scope="session")
def built(tmp_path_factory, valid_frame: pd.DataFrame, params_dict: dict) -> Path:
    """A folder with params, splits, preprocessor, model, metrics, a lock and ``bundle/``."""
    root = tmp_path_factory.mktemp("built")
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in params_dict.items()}
    for section, values in TINY.items():
        data[section].update(values)
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    files.write_parquet(root / "valid.parquet", valid_frame)
    common = ["--params", str(params)]
    preprocess.main(
        [*common, "--data", str(root / "valid.parquet"), "--out", str(root / "splits")]
        + ["--preprocessor", str(root / "prep.json"), "--metrics", str(root / "prep_metrics.json")]
    )
    train.main(
        [*common, "--splits", str(root / "splits"), "--preprocessor", str(root / "prep.json")]
        + ["--out", str(root / "model"), "--live", str(root / "live")]
    )
    evaluate.main(
        [*common, "--splits", str(root / "splits"), "--preprocessor", str(root / "prep.json")]
        + ["--model", str(root / "model"), "--metrics", str(root / "evaluate.json")]
        + ["--importance", str(root / "importance.json"), "--plots", str(root / "plots")]
    )
    write_lock(
        root / "dvc.lock",
        {"preprocess": root / "prep.json", "train": root / "model", "evaluate": root / "evaluate.json"},
    )
    run_package(root, root / "bundle", root / "package.json")
    return root


@pytest.fixture
def bundle_copy(built: Path, tmp_path: Path) -> Path:
    """A fresh copy of the bundle to alter."""
    return Path(shutil.copytree(built / "bundle", tmp_path / "bundle"))


@pytest.fixture(scope="session")
def test_frame(built: Path) -> pd.DataFrame:
    return files.read_parquet(built / "splits" / "test.parquet")


@pytest.fixture(scope="session")
def record(test_frame: pd.DataFrame) -> dict:
    """One test-split row as a JSON record (Python types)."""
    row = test_frame.iloc[0]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items() if k != "session_date"}
