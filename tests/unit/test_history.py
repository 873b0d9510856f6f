"""A student's history as of a cutoff: the demo's generative model, the point-in-time rows, and the
proof that nothing on or after the cutoff is read (the future is changed; nothing moves)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlpipe.core.errors import PipelineError
from mlpipe.demo import activity
from mlpipe.demo import cohort as cohort_files
from mlpipe.features import history

CHANNELS = {"minutes": "sum", "clicks": "sum", "submissions": "sum", "score": "mean"}
STATIC = ["prior_gpa", "age"]
COHORT = activity.Cohort(students=600, weeks=12, start=dt.date(2026, 9, 7), seed=3)


@pytest.fixture(scope="module")
def chunk() -> activity.Chunk:
    return activity.make_chunk(COHORT, 0, 1, COHORT.students)


def same(a: history.History, b: history.History) -> None:
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.sequence, b.sequence)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.label, b.label)
    pd.testing.assert_frame_equal(a.aggregates, b.aggregates, check_exact=True)
    pd.testing.assert_frame_equal(a.static, b.static, check_exact=True)


def rewrite_the_future(frame: pd.DataFrame, students: pd.DataFrame, cutoff: int) -> pd.DataFrame:
    """Every row on or after each student's cutoff day changed, half of them deleted, and a new
    busy row on the cutoff's first day for every student."""
    start = frame["student_id"].map(students.set_index("student_id")["start_date"])
    future = (pd.to_datetime(frame["date"]) - pd.to_datetime(start)).dt.days >= 7 * cutoff
    changed = frame.copy()
    changed.loc[future, ["minutes", "clicks", "submissions"]] *= 7
    changed.loc[future, "score"] = 3.0
    changed = changed[~(future & (np.arange(len(frame)) % 2 == 0))]
    first_day = students.assign(date=history.cutoff_dates(students, cutoff))[["student_id", "date"]]
    busy = first_day.assign(minutes=999, clicks=999, submissions=9, score=1.0)
    return pd.concat([changed, busy], ignore_index=True)


@pytest.mark.parametrize("cutoff", [1, 4, 8])
def test_changing_every_row_on_or_after_the_cutoff_changes_nothing(chunk, cutoff):
    before = history.as_of(chunk.students, chunk.activity, cutoff, 12, CHANNELS, STATIC)
    changed = rewrite_the_future(chunk.activity, chunk.students, cutoff)
    same(before, history.as_of(chunk.students, changed, cutoff, 12, CHANNELS, STATIC))
    only_past = chunk.activity[
        np.isin(chunk.activity.index, history.before_cutoff(chunk.activity, chunk.students, cutoff).index)
    ]
    same(before, history.as_of(chunk.students, only_past, cutoff, 12, CHANNELS, STATIC))


def test_the_check_fails_when_a_feature_reads_one_day_too_far(chunk):
    """The same comparison, as of one day later (every date moved a day earlier): the rows on the
    cutoff's first day now count, and the features move."""
    cutoff = 4
    changed = rewrite_the_future(chunk.activity, chunk.students, cutoff)
    early = lambda f: f.assign(date=pd.to_datetime(f["date"]) - pd.Timedelta(days=1))  # noqa: E731
    before = history.as_of(chunk.students, early(chunk.activity), cutoff, 12, CHANNELS, STATIC)
    after = history.as_of(chunk.students, early(changed), cutoff, 12, CHANNELS, STATIC)
    with pytest.raises(AssertionError):
        same(before, after)


def test_weeks_masks_aggregates_and_labels_on_a_hand_made_history():
    students = pd.DataFrame(
        {
            "student_id": [1, 2, 3],
            "start_date": pd.to_datetime(["2026-09-07"] * 3),
            "dropout_date": pd.to_datetime([None, "2026-09-21", "2026-09-14"]),  # weeks 2 and 1
            "age": [20, 30, 40],
        }
    )
    rows = pd.DataFrame(
        {
            "student_id": [1, 1, 1, 2, 3],
            "date": pd.to_datetime(["2026-09-07", "2026-09-08", "2026-09-15", "2026-09-09", "2026-09-07"]),
            "minutes": [10, 20, 40, 5, 1],
            "score": [50.0, None, 70.0, None, 9.0],
        }
    )
    found = history.as_of(students, rows, 2, 4, {"minutes": "sum", "score": "mean"}, ["age"])
    assert found.ids.tolist() == [1, 2]  # student 3 left in week 1, before the cutoff
    assert found.label.tolist() == [0, 1]  # student 2 leaves on the cutoff's first day: after it
    assert found.sequence[0, :, 0].tolist() == [30, 40, 0, 0] and found.sequence[1, :, 0].tolist() == [
        5,
        0,
        0,
        0,
    ]
    assert found.sequence[0, :, 1].tolist() == [50, 70, 0, 0]  # a null score is skipped, not zero
    assert found.mask.tolist() == [[True, True, False, False]] * 2
    agg = found.aggregates
    assert agg["active_days"].tolist() == [3, 1]
    assert agg["minutes_slope"].tolist() == [10.0, -5.0] and agg["minutes_last"].tolist() == [40, 0]
    assert agg["weeks_since_active"].tolist() == [0.0, 1.0]
    assert found.static["age"].tolist() == [20, 30]


def test_bad_inputs_are_named():
    students = pd.DataFrame(
        {"student_id": [1], "start_date": pd.to_datetime(["2026-09-07"]), "dropout_date": [None]}
    )
    rows = pd.DataFrame({"student_id": [2], "date": pd.to_datetime(["2026-09-08"]), "minutes": [1]})
    with pytest.raises(PipelineError, match="student_id 2 is not in the student table"):
        history.as_of(students, rows, 1, 4, {"minutes": "sum"}, [])
    with pytest.raises(PipelineError, match="cutoff week 5 is outside 1..4"):
        history.as_of(students, rows.assign(student_id=1), 5, 4, {"minutes": "sum"}, [])
    with pytest.raises(PipelineError, match="unknown weekly aggregation 'median'"):
        history.as_of(students, rows.assign(student_id=1), 1, 4, {"minutes": "median"}, [])


def test_the_demo_is_seeded_and_a_student_who_left_has_no_activity_after(chunk):
    again = activity.make_chunk(COHORT, 0, 1, COHORT.students)
    pd.testing.assert_frame_equal(chunk.activity, again.activity)
    leaves = chunk.activity["student_id"].map(chunk.students.set_index("student_id")["dropout_date"])
    assert not (pd.to_datetime(chunk.activity["date"]) >= leaves).any()
    assert 0.2 < chunk.students["dropout_date"].notna().mean() < 0.6


def test_the_oracle_is_calibrated_and_sees_what_averages_lose():
    big = activity.make_chunk(activity.Cohort(4000, 12, dt.date(2026, 9, 7), 11), 0, 1, 4000)
    truth = activity.oracle(big, 6, 11)
    assert abs(truth["probability"].mean() - truth["dropped_out"].mean()) < 0.03
    # the whole history's average engagement ranks worse than the oracle's probability
    alive = np.isin(big.students["student_id"], truth["student_id"])
    average = -big.engagement[alive, :6].mean(axis=1)
    assert (
        roc_auc_score(truth["dropped_out"], truth["probability"])
        > roc_auc_score(truth["dropped_out"], average) + 0.02
    )


def test_write_streams_three_tables(tmp_path):
    cohort = activity.Cohort(students=activity.CHUNK + 10, weeks=4, start=dt.date(2026, 1, 5), seed=1)
    paths = [tmp_path / name for name in (cohort_files.STUDENTS, cohort_files.ACTIVITY, cohort_files.ORACLE)]
    counts = cohort_files.write(cohort, tmp_path, cutoffs=[2])
    assert counts["students"] == len(pd.read_parquet(paths[0])) == activity.CHUNK + 10
    assert counts["activity_rows"] == len(pd.read_parquet(paths[1]))
    oracle = pd.read_parquet(paths[2])
    assert set(oracle["cutoff"]) == {2}
    assert (oracle["probability"] != oracle["latent"]).mean() > 0.9  # two oracles, not one twice


def test_streamed_by_student_batches_equals_the_whole(chunk):
    whole = history.as_of(chunk.students, chunk.activity, 5, 12, CHANNELS, STATIC)
    frames = (chunk.activity.iloc[i : i + 997] for i in range(0, len(chunk.activity), 997))
    parts = list(history.as_of_streamed(chunk.students, frames, 5, 12, CHANNELS, STATIC))
    assert len(parts) > 10
    np.testing.assert_array_equal(np.concatenate([p.ids for p in parts]), whole.ids)
    np.testing.assert_array_equal(np.concatenate([p.sequence for p in parts]), whole.sequence)
    np.testing.assert_array_equal(np.concatenate([p.label for p in parts]), whole.label)
    pd.testing.assert_frame_equal(
        pd.concat([p.aggregates for p in parts], ignore_index=True), whole.aggregates, check_exact=True
    )


def test_streaming_refuses_activity_out_of_student_order(chunk):
    shuffled = chunk.activity.iloc[::-1]
    first_back = int((chunk.activity["student_id"] == chunk.activity["student_id"].iloc[-1]).sum())
    with pytest.raises(PipelineError, match=f"activity row {first_back}: student ids must not go back"):
        list(history.as_of_streamed(chunk.students, iter([shuffled]), 5, 12, CHANNELS, STATIC))


def test_a_teams_own_column_names_and_timestamps_give_the_same_rows(chunk):
    columns = history.Columns(key="learner", timestamp="seen_at", start="term_start", outcome="withdrew_on")
    students = chunk.students.rename(
        columns={"student_id": "learner", "start_date": "term_start", "dropout_date": "withdrew_on"}
    )
    events = chunk.activity.rename(
        columns={"student_id": "learner", "date": "seen_at", "minutes": "time_on_task"}
    )
    events["seen_at"] = pd.to_datetime(events["seen_at"]) + pd.Timedelta(
        hours=23, minutes=59
    )  # late that day
    own = history.as_of(
        *columns.standard(students, events), 6, 12, {"time_on_task": "sum", "score": "mean"}, ["age"]
    )
    demo = history.as_of(chunk.students, chunk.activity, 6, 12, {"minutes": "sum", "score": "mean"}, ["age"])
    np.testing.assert_array_equal(own.sequence, demo.sequence)
    np.testing.assert_array_equal(own.label, demo.label)
    with pytest.raises(PipelineError, match="the activity table has no column 'learner'"):
        columns.standard(students, chunk.activity)


def test_students_after_the_last_activity_are_scored_with_empty_histories(chunk):
    quiet = chunk.students.assign(student_id=chunk.students["student_id"] + 10**6)  # no activity at all
    students = pd.concat([chunk.students, quiet], ignore_index=True)
    frames = (chunk.activity.iloc[i : i + 5000] for i in range(0, len(chunk.activity), 5000))
    parts = list(history.as_of_streamed(students, frames, 5, 12, CHANNELS, STATIC))
    whole = history.as_of(students, chunk.activity, 5, 12, CHANNELS, STATIC)
    np.testing.assert_array_equal(np.concatenate([p.ids for p in parts]), whole.ids)
    last = parts[-1]
    assert len(last.ids) == np.isin(whole.ids, quiet["student_id"]).sum() > 0
    assert np.isin(last.ids, quiet["student_id"]).all() and not last.sequence.any()


def test_no_activity_at_all_is_an_empty_past_whatever_the_tables_types(chunk, tmp_path):
    chunk.students.to_parquet(tmp_path / "students.parquet")
    students = pd.read_parquet(tmp_path / "students.parquet")  # dates as a reader gives them back
    for empty in (pd.DataFrame(columns=["student_id", "date"]), chunk.activity.iloc[:0]):
        assert history.before_cutoff(empty, students, 3).empty
        found = history.as_of(students, empty, 3, 12, CHANNELS, STATIC)
        assert len(found.ids) > 0 and not found.sequence.any()
        # a batch of no students (all had left) whose activity was all filtered away
        assert len(history.as_of(students.iloc[:0], empty, 3, 12, CHANNELS, STATIC).ids) == 0
