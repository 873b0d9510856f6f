import copy

import pandas as pd
import pytest
import yaml
from tests.unit.test_streaming import run_preprocess

from mlpipe import preprocess
from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.features import preprocessor


def test_split_keeps_every_row_and_no_student_in_two_splits(valid_frame):
    splits = preprocess.split_by_group(valid_frame, "student_id", 0.15, 0.15, seed=1)
    assert sum(len(s) for s in splits.values()) == len(valid_frame)
    students = {name: set(s["student_id"]) for name, s in splits.items()}
    assert not students["train"] & students["val"]
    assert not students["train"] & students["test"]
    assert not students["val"] & students["test"]
    n = valid_frame["student_id"].nunique()
    assert abs(len(students["test"]) - 0.15 * n) <= 1
    again = preprocess.split_by_group(valid_frame, "student_id", 0.15, 0.15, seed=1)
    other = preprocess.split_by_group(valid_frame, "student_id", 0.15, 0.15, seed=2)
    pd.testing.assert_frame_equal(splits["test"], again["test"])
    assert set(other["test"]["student_id"]) != students["test"]


def test_split_needs_three_groups(valid_frame):
    two = valid_frame[valid_frame["student_id"].isin(valid_frame["student_id"].unique()[:2])]
    with pytest.raises(PipelineError, match="at least 3 distinct values of 'student_id'"):
        preprocess.split_by_group(two, "student_id", 0.2, 0.2, seed=1)
    with pytest.raises(PipelineError, match="column 'class' is not in the data"):
        preprocess.split_by_group(valid_frame, "class", 0.2, 0.2, seed=1)


def test_main_writes_splits_and_a_preprocessor_fitted_on_train(tmp_path, valid_frame, params_dict):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_dict))
    files.write_parquet(tmp_path / "valid.parquet", valid_frame)
    preprocess.main(
        ["--params", str(tmp_path / "params.yaml"), "--data", str(tmp_path / "valid.parquet")]
        + ["--out", str(tmp_path / "processed"), "--preprocessor", str(tmp_path / "prep.json")]
        + ["--metrics", str(tmp_path / "m.json")]
    )
    train = pd.read_parquet(tmp_path / "processed" / "train.parquet")
    prep = preprocessor.Preprocessor.from_dict(files.read_json(tmp_path / "prep.json"))
    assert prep.mean["age"] == pytest.approx(train["age"].astype(float).mean())
    assert prep.mean["age"] != pytest.approx(valid_frame["age"].astype(float).mean(), abs=1e-9)
    metrics = files.read_json(tmp_path / "m.json")
    assert sum(metrics[s]["rows"] for s in preprocess.SPLITS) == len(valid_frame)
    assert metrics["n_features"] == len(prep.feature_names)


def test_without_a_group_rows_are_split_one_by_one_and_deterministically(tmp_path, valid_frame, params_dict):
    splits = preprocess.split_by_group(valid_frame, None, 0.15, 0.15, seed=1)
    assert sorted(pd.concat(splits.values())["session_id"]) == sorted(valid_frame["session_id"])
    assert abs(len(splits["test"]) - 0.15 * len(valid_frame)) <= 1
    again = preprocess.split_by_group(valid_frame, None, 0.15, 0.15, seed=1)
    pd.testing.assert_frame_equal(splits["test"], again["test"])
    assert set(preprocess.split_by_group(valid_frame, None, 0.15, 0.15, seed=2)["test"]["session_id"]) != set(
        splits["test"]["session_id"]
    )

    ungrouped = copy.deepcopy(params_dict)  # the fixture is shared: change a copy
    del ungrouped["preprocess"]["group"]  # the key may be left out (or null)
    folder = run_preprocess(tmp_path, valid_frame, ungrouped)
    shares = params_dict["preprocess"]["val_share"], params_dict["preprocess"]["test_share"]
    expected = preprocess.split_by_group(valid_frame, None, *shares, seed=params_dict["base"]["seed"])
    metrics = files.read_json(tmp_path / "processed_metrics.json")
    for name in preprocess.SPLITS:  # the streamed split is the in-memory one
        written = pd.read_parquet(folder / f"{name}.parquet")
        pd.testing.assert_frame_equal(written, expected[name], check_dtype=False)
        assert metrics[name]["rows"] == len(expected[name])
