from __future__ import annotations

from pathlib import Path

import pytest

from mlpipe.core.errors import PipelineError
from mlpipe.registry import sweep

ROOT = Path(__file__).resolve().parents[2]


def test_the_seed_grid_has_27_valid_runs(params_dict):
    runs = sweep.combinations(sweep.load_grid(ROOT / "sweeps" / "seed-grid.yaml"))
    assert len(runs) == 27
    assert runs[0] == {
        "train.units": [32, 16, 8, 4],
        "train.dropout": [0.1, 0.1, 0.1, 0.1],
        "train.learning_rate": 0.001,
    }
    sweep.check(params_dict, runs)  # every combination loads with the strict params loader


def test_overrides_use_hydra_syntax():
    assert sweep.override("train.units", [64, 32]) == "train.units=[64,32]"
    assert sweep.override("train.learning_rate", 0.01) == "train.learning_rate=0.01"
    assert sweep.override("train.activation", "gelu") == 'train.activation="gelu"'


def test_a_bad_key_or_value_is_refused_naming_the_run(params_dict):
    with pytest.raises(PipelineError, match=r"unknown key 'train.learning_rat'"):
        sweep.check(params_dict, [{"train.learning_rat": 0.1}])
    with pytest.raises(PipelineError, match=r'sweep run \{"train.units": \[8\]\}: .*dropout has 4 entries'):
        sweep.check(params_dict, [{"train.units": [8]}])
    assert params_dict["train"]["units"] == [128, 64, 32, 16]  # the loaded params are not changed


def test_a_malformed_sweep_file_is_refused(tmp_path):
    with pytest.raises(PipelineError, match="sweep file not found"):
        sweep.load_grid(tmp_path / "none.yaml")
    (tmp_path / "s.yaml").write_text("grid:\n  train.units: []\n")
    with pytest.raises(PipelineError, match="grid.train.units must be a non-empty list"):
        sweep.load_grid(tmp_path / "s.yaml")
