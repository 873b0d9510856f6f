"""Scoring a whole cohort as of a date, straight from the student table and the activity table,
with an early-warning bundle (``mlpipe predict --as-of``).

Each student is scored at the last cutoff before the date: ``k`` whole weeks of their term have
passed (``start + 7k <= date``), and the model reads the activity strictly before ``start + 7k``
(:func:`mlpipe.features.history.before_cutoff`, the same code the model was trained with), so
nothing on or after the date is read. A student whose term has not completed a week, or who has
left by the date, is not scored (counted in the report). Histories longer than the model's weeks
are cut to its last cutoff-compatible length: ``k`` is at most the model's weeks.

The activity is streamed in student order, ``batch_rows`` rows at a time, so memory is bounded
by a batch of students, and scored a batch at a time.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.features import history, point_in_time
from mlpipe.serving.predictor import Predictor

BATCH_ROWS = 500_000  # activity rows read at a time


@dataclass
class Report:
    scored: int = 0
    not_begun: int = 0  # no whole week of the term before the date
    left: int = 0  # dropped out on or before the date
    seconds: float = 0.0


def cohort(students: pd.DataFrame, as_of: dt.date, weeks: int, report: Report) -> pd.DataFrame:
    """The students to score and each one's cutoff week."""
    start = pd.to_datetime(students["start_date"])
    day = pd.Timestamp(as_of)
    left = pd.to_datetime(students["dropout_date"]) <= day
    cutoff = ((day - start).dt.days // 7).clip(upper=weeks)
    begun = cutoff >= 1
    report.left += int((left & begun).sum())
    report.not_begun += int((~begun).sum())
    return students[(begun & ~left).to_numpy()].assign(cutoff=cutoff[(begun & ~left).to_numpy()])


def histories(
    predictor: Predictor,
    students_path: str | Path,
    activity_path: str | Path,
    as_of: dt.date,
    batch_rows: int,
    report: Report,
) -> Iterator[history.History]:
    """The point-in-time rows of every student enrolled on ``as_of``, a batch of students at a
    time, each at its last whole week before the date (module docstring)."""
    spec = predictor.metadata.get("history")
    if spec is None:
        raise PipelineError(f"{predictor.name} reads no history: --as-of scores early-warning models")
    names, static = history.Columns(**spec["columns"]), list(predictor.metadata["inputs"])
    table = point_in_time.read_table(students_path)
    if names.outcome not in table.columns:  # no outcome yet: every student is enrolled
        table = table.assign(**{names.outcome: pd.NaT})
    students = point_in_time.checked_students(table, names, static)
    chosen = cohort(students, as_of, int(spec["weeks"]), report)
    for cutoff in sorted(chosen["cutoff"].unique()):
        frames = point_in_time.activity_frames(activity_path, names, list(spec["channels"]), batch_rows)
        for some, batch in history.by_student_batch(chosen[chosen["cutoff"] == cutoff], frames):
            batch = batch[np.isin(batch["student_id"].to_numpy(), some["student_id"].to_numpy())]
            yield history.as_of(some, batch, int(cutoff), int(spec["weeks"]), spec["channels"], static)


def inputs_of(found: history.History) -> dict[str, np.ndarray]:
    """A :class:`History`'s rows as the early-warning graph's inputs."""
    return {
        "static": found.static.to_numpy(np.float64),
        "sequence": found.sequence.astype(np.float64),
        "mask": found.mask,
    }


def score(
    predictor: Predictor,
    students_path: str | Path,
    activity_path: str | Path,
    as_of: dt.date,
    output: str | Path,
    batch_rows: int = BATCH_ROWS,
) -> Report:
    """Score every enrolled student as of ``as_of`` into ``output`` (.parquet or .csv): the key,
    the date, the cutoff week, the probability, whether it is flagged, the model's name and version.

    Raises:
        PipelineError: for a bundle that reads no history, a missing column, or a null static field.
    """
    began, report = time.perf_counter(), Report()
    key = predictor.metadata.get("history", {}).get("columns", {}).get("key", "student_id")
    parts = [
        pd.DataFrame(
            {
                key: found.ids,
                "as_of": pd.Timestamp(as_of),
                "cutoff_week": found.cutoff,
                "probability": predictor.predict_columns(inputs_of(found), len(found.ids)).values,
            }
        )
        for found in histories(predictor, students_path, activity_path, as_of, batch_rows, report)
    ]
    empty = pd.DataFrame({key: [], "as_of": [], "cutoff_week": [], "probability": []})
    out = pd.concat(parts, ignore_index=True) if parts else empty
    out["flagged"] = out["probability"] >= predictor.metadata["output"]["threshold"]
    out["model"], out["version"] = predictor.name, predictor.version
    with files.atomic_path(output) as tmp:
        if Path(output).suffix.lower() == ".csv":
            out.to_csv(tmp, index=False)
        else:
            out.to_parquet(tmp, index=False)
    report.scored, report.seconds = len(out), time.perf_counter() - began
    return report
