"""The streamed paths on data larger than one batch: the same answers as in memory, the same errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from mlpipe import evaluate, preprocess, validate
from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.features import batches, fitting, preprocessor
from mlpipe.training import feed

BATCH = 97  # rows per batch: the ~1,500-row demo table spans 16 batches, the last one short


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(files, "BATCH_ROWS", BATCH)


def test_streamed_fit_equals_the_fit_in_memory(tmp_path, valid_frame, params):
    holes = valid_frame.copy()
    holes.loc[[5, 300, 1200], "age"] = None
    holes.loc[[7, 900], "subject"] = None
    files.write_parquet(tmp_path / "train.parquet", holes)
    for impute in ("median", "mean"):
        spec = params.preprocess.model_copy(
            update={"impute": params.preprocess.impute.model_copy(update={"numeric": impute})}
        )
        whole = fitting.fit(holes, spec)
        streamed = fitting.fit(batches.ParquetTable(tmp_path / "train.parquet", batch_rows=BATCH), spec)
        assert streamed.categories == whole.categories and streamed.cyclical == whole.cyclical
        assert streamed.fill.keys() == whole.fill.keys()
        for name, value in whole.fill.items():
            assert streamed.fill[name] == (
                value if isinstance(value, str) else pytest.approx(value, rel=1e-12)
            )
        for name in whole.mean:  # Chan's merge against numpy's pairwise sums over the whole column
            assert streamed.mean[name] == pytest.approx(whole.mean[name], rel=1e-12, abs=1e-12)
            assert streamed.scale[name] == pytest.approx(whole.scale[name], rel=1e-12)
    # One batch is bit for bit what numpy computes on the whole column.
    one = fitting.fit(batches.ParquetTable(tmp_path / "train.parquet", batch_rows=10**6), params.preprocess)
    assert one == fitting.fit(holes, params.preprocess)


def test_moments_merge_exactly_enough_across_uneven_batches():
    rng = np.random.default_rng(3)
    values = rng.normal(1e4, 3.0, size=10_001)  # a large mean: the naive sum of squares loses digits
    moments = fitting.Moments()
    for part in np.array_split(values, [1, 50, 51, 4000, 9000]):
        moments.add(part)
    assert moments.n == len(values)
    assert moments.mean == pytest.approx(np.mean(values), rel=1e-14)
    assert moments.std == pytest.approx(np.std(values), rel=1e-9)


def test_streamed_fit_names_the_row_of_a_bad_value_in_a_later_batch(tmp_path, valid_frame, params):
    holes = valid_frame.copy()
    holes.loc[1000, "age"] = None
    files.write_parquet(tmp_path / "train.parquet", holes)
    table = batches.ParquetTable(tmp_path / "train.parquet", batch_rows=BATCH)
    with pytest.raises(PipelineError, match=r"column 'age' has 1 missing .* \(first at row 1000\)"):
        fitting.fit(table, params.preprocess, nullable=[])


def run_preprocess(tmp_path, frame, params_dict, out="processed"):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_dict))
    files.write_parquet(tmp_path / "valid.parquet", frame)
    preprocess.main(
        ["--params", str(tmp_path / "params.yaml"), "--data", str(tmp_path / "valid.parquet")]
        + ["--out", str(tmp_path / out), "--preprocessor", str(tmp_path / f"{out}.json")]
        + ["--metrics", str(tmp_path / f"{out}_metrics.json")]
    )
    return tmp_path / out


def test_preprocess_streams_the_same_splits_and_matrices_as_in_memory(
    tmp_path, valid_frame, params_dict, params, small_batches
):
    folder = run_preprocess(tmp_path, valid_frame, params_dict)
    prep = preprocessor.Preprocessor.from_dict(files.read_json(tmp_path / "processed.json"))
    splits = preprocess.split_by_group(
        valid_frame, "student_id", params.preprocess.val_share, params.preprocess.test_share, params.base.seed
    )
    for name in preprocess.SPLITS:
        written = files.read_parquet(folder / f"{name}.parquet")
        pd.testing.assert_frame_equal(written, splits[name])
        x, y = files.load_split(folder, name)
        np.testing.assert_array_equal(x, preprocessor.transform(splits[name], prep))
        np.testing.assert_array_equal(y, preprocessor.target(splits[name], prep))
    metrics = files.read_json(tmp_path / "processed_metrics.json")
    assert metrics["train"]["rows"] == len(splits["train"]) > 10 * BATCH


def test_preprocess_names_split_and_row_of_a_refused_value_past_the_first_batch(
    tmp_path, valid_frame, params_dict, params, small_batches
):
    data = dict(params_dict, preprocess={**params_dict["preprocess"], "unknown_category": "error"})
    splits = preprocess.split_by_group(
        valid_frame, "student_id", params.preprocess.val_share, params.preprocess.test_share, params.base.seed
    )
    test_students = splits["test"]["student_id"]
    row = int(np.flatnonzero(valid_frame["student_id"].isin(test_students))[150])
    frame = valid_frame.copy()
    frame.loc[row, "subject"] = "astrology"
    at = int(np.flatnonzero(splits["test"]["session_id"] == frame.loc[row, "session_id"])[0])
    assert at > BATCH
    with pytest.raises(
        PipelineError, match=rf"test split: column 'subject' has unknown category 'astrology' at row {at}"
    ):
        run_preprocess(tmp_path, frame, data)
    assert not (tmp_path / "processed").exists()  # nothing half-written
    assert not list(tmp_path.glob(".processed*"))


def test_batches_visit_every_row_once_per_pass_in_a_seeded_order():
    x = np.arange(1000, dtype=np.float32).reshape(-1, 1)
    y = np.arange(1000, dtype=np.float32)
    batches = feed.Batches(x, y, batch_size=64, seed=5, shuffle=True, block_rows=300)
    first = list(batches.one_pass(0))
    assert [len(b[0]) for b in first] == [64] * 15 + [40]  # batches cross block edges
    assert len(first) == batches.steps
    seen = np.concatenate([b[1] for b in first])
    assert sorted(seen.tolist()) == list(range(1000))
    np.testing.assert_array_equal(np.concatenate([b[0][:, 0] for b in first]), seen)  # x and y stay paired
    again = np.concatenate(
        [b[1] for b in feed.Batches(x, y, 64, seed=5, shuffle=True, block_rows=300).one_pass(0)]
    )
    np.testing.assert_array_equal(seen, again)
    second = np.concatenate([b[1] for b in batches.one_pass(1)])
    assert not np.array_equal(seen, second)
    ordered = np.concatenate([b[1] for b in feed.Batches(x, y, 64).one_pass()])
    np.testing.assert_array_equal(ordered, y)
    forever = batches.forever()
    stream = [next(forever)[1] for _ in range(2 * batches.steps)]
    np.testing.assert_array_equal(np.concatenate(stream), np.concatenate([seen, second]))


def test_batches_carry_class_weights_and_refuse_mismatched_lengths():
    x = np.zeros((10, 2), np.float32)
    y = np.array([0, 1] * 5, np.int32)
    (batch,) = list(feed.Batches(x, y, 16, class_weight={0: 0.5, 1: 2.0}).one_pass())
    np.testing.assert_array_equal(batch[2], np.where(y == 0, 0.5, 2.0))
    with pytest.raises(ValueError, match="need as many targets"):
        feed.Batches(x, y[:3], 4)


def test_take_parquet_reads_a_sample_across_batches(tmp_path, valid_frame, small_batches):
    files.write_parquet(tmp_path / "t.parquet", valid_frame)
    rows = evaluate.sample(len(valid_frame), 50, seed=1, salt=2)
    assert len(rows) == 50 and (np.diff(rows) > 0).all()
    taken = files.take_parquet(tmp_path / "t.parquet", rows, ["age", "subject"])
    pd.testing.assert_frame_equal(taken, valid_frame.iloc[rows][["age", "subject"]].reset_index(drop=True))
    np.testing.assert_array_equal(evaluate.sample(10, 50, seed=1, salt=2), np.arange(10))


def run_validate(tmp_path, frame, params_dict):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_dict, sort_keys=False))
    frame.to_parquet(tmp_path / "raw.parquet", index=False)
    outs = [tmp_path / "valid.parquet", tmp_path / "quarantine.parquet", tmp_path / "validate.json"]
    validate.main(
        ["--params", str(tmp_path / "params.yaml"), "--data", str(tmp_path / "raw.parquet")]
        + ["--out", str(outs[0]), "--quarantine", str(outs[1]), "--metrics", str(outs[2])]
    )
    return [pd.read_parquet(outs[0]), pd.read_parquet(outs[1]), files.read_json(outs[2])]


def test_validate_streams_bad_rows_of_late_batches_to_quarantine(
    tmp_path, raw_frame, params_dict, params, small_batches
):
    frame = raw_frame.copy()
    frame.loc[3, "age"] = 99
    frame.loc[37 * BATCH // 3, "subject"] = "astrology"
    frame.loc[1400, "session_date"] = "not a date"
    frame.loc[len(frame) - 1, "energy_level"] = 0  # the last row of the short last batch
    valid, quarantine, metrics = run_validate(tmp_path, frame, params_dict)
    expected_valid, expected_quarantine, expected_metrics = validate.split_valid(frame, params.validate)
    assert quarantine["row"].tolist() == [3, 37 * BATCH // 3, 1400, len(frame) - 1]
    pd.testing.assert_frame_equal(quarantine, expected_quarantine.reset_index(drop=True))
    pd.testing.assert_frame_equal(valid, expected_valid)
    assert metrics == expected_metrics


def test_validate_share_is_judged_on_the_whole_snapshot(tmp_path, raw_frame, params_dict, small_batches):
    frame = raw_frame.copy()
    frame.loc[: BATCH - 1, "time_of_day"] = "midnight"  # the whole first batch, 6.5% of the snapshot
    with pytest.raises(PipelineError, match=r"97 of 1500 rows .*time_of_day: isin.* \(first at row 0"):
        run_validate(tmp_path, frame, params_dict)
    assert not list(tmp_path.glob("*valid*")) and not list(tmp_path.glob(".*"))
    frame = raw_frame.copy()
    frame.loc[200:209, "time_of_day"] = "midnight"  # 10% of one batch, but 0.7% of the snapshot: fine
    valid, _, metrics = run_validate(tmp_path, frame, params_dict)
    assert metrics["rows_quarantined"] == 10 and len(valid) == len(frame) - 10


def test_matrix_files_round_trip_in_slices_and_refuse_objects(tmp_path, small_batches):
    values = np.arange(1000 * 3, dtype=np.float32).reshape(1000, 3)
    sink = files.MatrixSink(tmp_path / "m.npy", 1000, 3, np.float32)
    for part in np.array_split(values, [10, 500]):
        sink.write(part)
    with pytest.raises(ValueError, match="do not fit"):
        sink.write(np.zeros((1, 4), np.float32))
    sink.finish()
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), values)  # a plain .npy
    matrix = files.Matrix(tmp_path / "m.npy")
    assert len(matrix) == 1000 and matrix.shape == (1000, 3)
    np.testing.assert_array_equal(matrix[120:415], values[120:415])
    rows = np.array([0, 96, 97, 500, 999])  # across batches of 97 rows
    np.testing.assert_array_equal(matrix[rows], values[rows])
    np.testing.assert_array_equal(np.asarray(matrix), values)
    short = files.MatrixSink(tmp_path / "short.npy", 5, None, np.int32)
    short.write(np.arange(3))
    with pytest.raises(ValueError, match="3 of 5 rows written"):
        short.finish()
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a C-ordered numeric matrix"):
        files.Matrix(tmp_path / "objects.npy")
