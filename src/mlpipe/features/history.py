"""A student's history as of a cutoff week: the weekly sequence of activity channels, padded and
masked, the point-in-time aggregates the baselines learn from, and the label.

Time is an axis here, not a column: :func:`before_cutoff` is the one place that decides what the
past is (rows dated strictly before ``start_date + 7 * cutoff`` days), and everything else is
computed from what it returns. So a feature for cutoff ``k`` reads nothing on or after the
cutoff's first day, which ``tests/unit/test_history.py`` proves by changing the future.

The label is "drops out after the cutoff": a ``dropout_date`` on or after the cutoff's first day.
A student whose ``dropout_date`` is before it has already gone and is left out of that cutoff.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlpipe.core.errors import PipelineError

AGGREGATIONS = ("sum", "mean", "max", "count")  # how a channel's days make its week


@dataclass(frozen=True)
class History:
    """One cutoff's point-in-time rows, aligned: ``ids[i]``'s static row, sequence and label."""

    cutoff: int
    ids: np.ndarray  # (n,) student ids, ascending
    static: pd.DataFrame  # (n, static columns)
    sequence: np.ndarray  # (n, max_weeks, channels) float32, zero where padded
    mask: np.ndarray  # (n, max_weeks) bool: the weeks before the cutoff
    aggregates: pd.DataFrame  # (n, ...) the baselines' point-in-time features
    label: np.ndarray  # (n,) 1 if the student drops out on or after the cutoff


@dataclass(frozen=True)
class Columns:
    """Which of a team's columns are the student key, an activity row's timestamp (a date or a
    time), the start of the student's term and the dropout date (null: still enrolled or done)."""

    key: str = "student_id"
    timestamp: str = "date"
    start: str = "start_date"
    outcome: str = "dropout_date"

    def standard(self, students: pd.DataFrame, activity: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The two tables under the names this module reads.

        Raises:
            PipelineError: naming a declared column that a table lacks.
        """
        for table, frame, names in (
            ("student", students, (self.key, self.start, self.outcome)),
            ("activity", activity, (self.key, self.timestamp)),
        ):
            missing = [name for name in names if name not in frame.columns]
            if missing:
                raise PipelineError(
                    f"the {table} table has no column {missing[0]!r} (it has: {', '.join(frame.columns)})"
                )
        renamed = {self.key: "student_id", self.start: "start_date", self.outcome: "dropout_date"}
        return students.rename(columns=renamed), activity.rename(
            columns={self.key: "student_id", self.timestamp: "date"}
        )


def cutoff_dates(students: pd.DataFrame, cutoff: int) -> pd.Series:
    """Each student's cutoff: the first day of week ``cutoff`` of their term."""
    return pd.to_datetime(students["start_date"]) + pd.Timedelta(days=7 * cutoff)


def before_cutoff(activity: pd.DataFrame, students: pd.DataFrame, cutoff: int) -> pd.DataFrame:
    """The activity rows strictly before each student's cutoff, with their ``day`` of term (0 is
    the start date). The only function that decides what the past is.

    Raises:
        PipelineError: for an activity row of a student not in ``students``.
    """
    if activity.empty:  # nothing to date (its columns may have no types)
        return activity.assign(day=np.zeros(0, np.int64))
    start = pd.to_datetime(students.set_index("student_id")["start_date"])
    begun = activity["student_id"].map(start)
    if begun.isna().any():
        unknown = activity.loc[begun.isna(), "student_id"].iloc[0]
        raise PipelineError(f"activity: student_id {unknown} is not in the student table")
    day = (pd.to_datetime(activity["date"]) - begun).dt.days
    keep = (day >= 0) & (day < 7 * cutoff)
    return activity[keep.to_numpy()].assign(day=day[keep].to_numpy())


def weekly(
    past: pd.DataFrame, ids: np.ndarray, weeks: int, channels: Mapping[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """The weekly sequence ``(len(ids), weeks, channels)`` of the past rows (each channel made by
    its aggregation, missing values skipped, an empty week 0) and its active-day counts. Counted
    with ``np.bincount`` over ``student * weeks + week`` cells, in the rows' order."""
    unknown = sorted(set(channels.values()) - set(AGGREGATIONS))
    if unknown:
        raise PipelineError(f"unknown weekly aggregation {unknown[0]!r} (known: {', '.join(AGGREGATIONS)})")
    size = len(ids) * weeks
    sequence = np.zeros((len(ids), weeks, len(channels)), np.float64)
    if past.empty:  # no activity at all (its columns may be absent too)
        return sequence, np.zeros((len(ids), weeks))
    cell = np.searchsorted(ids, past["student_id"].to_numpy()) * weeks + past["day"].to_numpy() // 7
    days = np.bincount(cell, minlength=size).astype(np.float64).reshape(len(ids), weeks)
    for j, (channel, how) in enumerate(channels.items()):
        values = past[channel].to_numpy(np.float64)
        present = ~np.isnan(values)
        cells, kept = cell[present], values[present]
        if how == "max":
            out = np.full(size, -np.inf)
            np.maximum.at(out, cells, kept)
            out[np.isneginf(out)] = 0.0
        else:
            count = np.bincount(cells, minlength=size).astype(np.float64)
            total = count if how == "count" else np.bincount(cells, weights=kept, minlength=size)
            out = np.divide(total, count, out=np.zeros(size), where=count > 0) if how == "mean" else total
        sequence[:, :, j] = out.reshape(len(ids), weeks)
    return sequence, days


def aggregates(sequence: np.ndarray, days: np.ndarray, channels: Sequence[str], cutoff: int) -> pd.DataFrame:
    """The baselines' point-in-time features from the weeks before ``cutoff``: active days, each
    channel's weekly mean and last week, the slope of each channel over the weeks, and the days
    since the last active week's end (the cutoff's length when there was none)."""
    seen = sequence[:, :cutoff]
    weeks = np.arange(cutoff, dtype=np.float64)
    centred = weeks - weeks.mean()
    denominator = float((centred**2).sum()) or 1.0
    out = {"active_days": days[:, :cutoff].sum(axis=1)}
    for j, channel in enumerate(channels):
        out[f"{channel}_mean"] = seen[:, :, j].mean(axis=1)
        out[f"{channel}_last"] = seen[:, -1, j]
        out[f"{channel}_slope"] = (seen[:, :, j] * centred).sum(axis=1) / denominator
    active = days[:, :cutoff] > 0
    last = np.where(active.any(axis=1), cutoff - 1 - np.argmax(active[:, ::-1], axis=1), -1)
    out["weeks_since_active"] = (cutoff - 1 - last).astype(np.float64)
    return pd.DataFrame(out)


def as_of(
    students: pd.DataFrame,
    activity: pd.DataFrame,
    cutoff: int,
    max_weeks: int,
    channels: Mapping[str, str],
    static: Sequence[str],
) -> History:
    """The point-in-time rows for ``cutoff``: every student still enrolled on its first day.

    Args:
        students: ``student_id``, ``start_date``, ``dropout_date`` (null: completed) and ``static``.
        activity: ``student_id``, ``date`` and the channels' columns.
        cutoff: The cutoff week (history is weeks ``0 .. cutoff - 1``).
        max_weeks: The sequence length every cutoff is padded to.
        channels: Channel -> its weekly aggregation (``sum``, ``mean``, ``max``, ``count``).
        static: The students' columns that are features.

    Raises:
        PipelineError: for a cutoff outside ``1 .. max_weeks``, an unknown aggregation, or activity
            of an unknown student.
    """
    if not 1 <= cutoff <= max_weeks:
        raise PipelineError(f"cutoff week {cutoff} is outside 1..{max_weeks}")
    leaves = pd.to_datetime(students["dropout_date"])
    enrolled = (leaves.isna() | (leaves >= cutoff_dates(students, cutoff))).to_numpy()
    cohort = students[enrolled].sort_values("student_id", kind="stable")
    ids = cohort["student_id"].to_numpy()
    past = before_cutoff(activity, students, cutoff)
    past = past[np.isin(past["student_id"].to_numpy(), ids)]
    sequence, days = weekly(past, ids, max_weeks, channels)
    mask = np.zeros((len(ids), max_weeks), bool)
    mask[:, :cutoff] = True
    return History(
        cutoff=cutoff,
        ids=ids,
        static=cohort[list(static)].reset_index(drop=True),
        sequence=sequence.astype(np.float32),
        mask=mask,
        aggregates=aggregates(sequence, days, list(channels), cutoff),
        label=pd.to_datetime(cohort["dropout_date"]).notna().to_numpy().astype(np.int64),
    )


def student_batches(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Activity read in frames (e.g. a Parquet file's batches), regrouped so that no student spans
    two: each frame but the last ends with a complete student. Rows must come in student order.

    Raises:
        PipelineError: naming the row where the student ids go back.
    """
    carried: pd.DataFrame | None = None
    seen = 0
    last = None
    for frame in frames:
        ids = frame["student_id"].to_numpy()
        back = np.flatnonzero(np.diff(ids) < 0) if len(ids) else np.array([], int)
        if len(back) or (last is not None and len(ids) and ids[0] < last):
            row = seen + (int(back[0]) + 1 if len(back) else 0)
            raise PipelineError(
                f"activity row {row}: student ids must not go back (sort the table by student)"
            )
        seen += len(frame)
        frame = frame if carried is None else pd.concat([carried, frame], ignore_index=True)
        if not len(frame):
            continue
        last = frame["student_id"].iloc[-1]
        tail = frame["student_id"].to_numpy() == last
        carried = frame[tail]
        if (~tail).any():
            yield frame[~tail]
    if carried is not None and len(carried):
        yield carried


def by_student_batch(
    students: pd.DataFrame, frames: Iterator[pd.DataFrame]
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Activity that arrives in student order, paired a batch of students at a time with the
    students it covers: the students without activity go with the batch whose ids come next (the
    last with the last), so every student is in exactly one pair."""
    ordered = students.sort_values("student_id", kind="stable")
    ids = ordered["student_id"].to_numpy()
    start = 0
    for batch in student_batches(frames):
        end = int(np.searchsorted(ids, batch["student_id"].iloc[-1], side="right"))
        yield ordered.iloc[start:end], batch
        start = end
    if start < len(ids) or start == 0:
        yield ordered.iloc[start:], pd.DataFrame(columns=["student_id", "date"])


def as_of_streamed(
    students: pd.DataFrame,
    frames: Iterator[pd.DataFrame],
    cutoff: int,
    max_weeks: int,
    channels: Mapping[str, str],
    static: Sequence[str],
) -> Iterator[History]:
    """:func:`as_of` over activity that arrives in student order, a batch of students at a time,
    so memory is bounded by a batch (:func:`by_student_batch`). Concatenated, the batches are
    :func:`as_of` of the whole."""
    for some, batch in by_student_batch(students, frames):
        yield as_of(some, batch, cutoff, max_weeks, channels, static)
