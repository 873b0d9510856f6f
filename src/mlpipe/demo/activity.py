"""The early-warning demo's generative model: students whose engagement moves week by week over a
term, their daily activity, their dropout, and the oracle's probability of it.

Each student ``i`` has static attributes (``prior_gpa``, ``study_mode``, ``age``) and a latent
engagement ``e[w]`` for weeks ``w = 0 .. weeks - 1``, a random walk with a drift of its own::

    e[0]   = 0.8 * (prior_gpa - 2.9) / 0.5 - 0.4 * part_time + Normal(0, 0.6)
    d      = Normal(-0.05, 0.15)                     # some students drift down, some up
    e[w]   = e[w - 1] + d + Normal(0, 0.25)

Dropout is a weekly hazard from week 1 on, driven by the recent level and the trend::

    trend[w]  = (e[w - 1] - e[max(w - 3, 0)]) / max(min(w - 1, 2), 1)
    logit h[w] = -4.6 - 0.9 * e[w - 1] - 2.0 * trend[w]
    dropped_week = the first week whose Bernoulli(h[w]) fires (none: the student completes)

A student who drops out in week ``k`` withdraws on the first day of that week (``dropout_date``)
and has no activity from then on. So the signal is in how engagement *moves*: two students with
the same average over the weeks seen differ in risk when one is falling, which whole-history
averages lose and a model of the weekly sequence (or its slope and last week) can see.

Daily activity in a week the student is enrolled, each day independently::

    active      = Bernoulli(sigmoid(0.6 + 1.2 * e[w]))
    minutes     = max(1, round(Gamma(2, exp(3.2 + 0.3 * e[w]) / 2)))    if active
    clicks      = Poisson(exp(2.5 + 0.4 * e[w]))                         if active
    submissions = Poisson(0.2 * exp(0.5 * e[w]))                         if active
    score       = clip(Normal(65 + 8 * e[w], 10), 0, 100)  if submissions > 0, else null

Only active days are rows of the activity table (``student_id``, ``date``, the four channels).

**The latent oracle.** For a cutoff week ``k`` and a student still enrolled at it, the probability of
dropping out in weeks ``k .. weeks - 1`` given everything that happened before ``k``, the latent
engagement included: ``1 - E[prod_w (1 - h[w])]`` over the future walks from ``e[k - 1]`` with the
student's own drift (:data:`ORACLE_PATHS` paths). It knows the latent state that activity only
shows noisily, so it is a ceiling no model of the activity reaches; the best such a model can do
given what it sees is :func:`mlpipe.demo.filtering.observable_oracle`.

Streaming: students are made :data:`CHUNK` at a time, each chunk from its own seeded generator, and
written as they are made (:mod:`mlpipe.demo.cohort`), so memory is bounded by a chunk whatever the
number of students.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

CHUNK = 5_000  # students per chunk: part of the data's definition (each chunk has its own stream)
ORACLE_PATHS = 256  # future walks per student for the oracle
STUDY_MODES = {"full_time": 0.7, "part_time": 0.3}


@dataclass(frozen=True)
class Cohort:
    """How many students, over how long a term starting when, from which seed."""

    students: int
    weeks: int
    start: dt.date
    seed: int


@dataclass(frozen=True)
class Chunk:
    """One chunk of students: their table, their activity rows, and the latent state behind them."""

    students: pd.DataFrame  # student_id, prior_gpa, study_mode, part_time, age, start_date, dropout_date
    activity: pd.DataFrame  # student_id, date, minutes, clicks, submissions, score
    engagement: np.ndarray  # (n, weeks) latent e[w]
    drift: np.ndarray  # (n,)
    dropped_week: np.ndarray  # (n,) the dropout week, or -1 for a student who completes


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def hazard(engagement: np.ndarray, w: int) -> np.ndarray:
    """The dropout hazard of week ``w`` from engagement ``(..., weeks)``: last week's level and its
    trend (module docstring); 0 in week 0, before the term has begun."""
    if w == 0:
        return np.zeros(engagement.shape[:-1])
    level, before = engagement[..., w - 1], engagement[..., max(w - 3, 0)]
    return sigmoid(-4.6 - 0.9 * level - 2.0 * (level - before) / max(min(w - 1, 2), 1))


def week_hazards(engagement: np.ndarray) -> np.ndarray:
    """``h[w]`` for every student and week."""
    return np.stack([hazard(engagement, w) for w in range(engagement.shape[1])], axis=1)


def make_chunk(cohort: Cohort, index: int, first_id: int, n: int) -> Chunk:
    """Students ``first_id .. first_id + n - 1``, from chunk ``index``'s own generator."""
    rng = np.random.default_rng([cohort.seed, 28, index])
    weeks = cohort.weeks
    gpa = np.clip(rng.normal(2.9, 0.5, n), 0.0, 4.0).round(2)
    part_time = rng.random(n) < STUDY_MODES["part_time"]
    age = 18 + np.floor(rng.gamma(2.0, 3.0, n)).astype(np.int64)
    drift = rng.normal(-0.05, 0.15, n)
    steps = drift[:, None] + rng.normal(0.0, 0.25, (n, weeks))
    steps[:, 0] = 0.8 * (gpa - 2.9) / 0.5 - 0.4 * part_time + rng.normal(0.0, 0.6, n)
    engagement = np.cumsum(steps, axis=1)
    fires = rng.random((n, weeks)) < week_hazards(engagement)
    dropped_week = np.where(fires.any(axis=1), fires.argmax(axis=1), -1)
    start = np.datetime64(cohort.start, "D")
    students = pd.DataFrame(
        {
            "student_id": np.arange(first_id, first_id + n, dtype=np.int64),
            "prior_gpa": gpa,
            "study_mode": np.where(part_time, "part_time", "full_time"),
            "part_time": part_time.astype(np.int64),  # the same, as a number a model reads
            "age": age,
            "start_date": np.full(n, start),
            "dropout_date": np.where(
                dropped_week >= 0, start + 7 * dropped_week.astype("timedelta64[D]"), np.datetime64("NaT")
            ),
        }
    )
    activity = daily_activity(rng, students["student_id"].to_numpy(), engagement, dropped_week, start)
    return Chunk(students, activity, engagement, drift, dropped_week)


def daily_activity(
    rng: np.random.Generator,
    ids: np.ndarray,
    engagement: np.ndarray,
    dropped_week: np.ndarray,
    start: np.datetime64,
) -> pd.DataFrame:
    """The active days' rows, in student and date order (module docstring)."""
    weeks = engagement.shape[1]
    daily = np.repeat(engagement, 7, axis=1)  # (n, days): each day its week's engagement
    enrolled = np.arange(weeks * 7)[None, :] < np.where(dropped_week >= 0, dropped_week, weeks)[:, None] * 7
    active = enrolled & (rng.random(daily.shape) < sigmoid(0.6 + 1.2 * daily))
    student, day = np.nonzero(active)
    e = daily[student, day]
    submissions = rng.poisson(0.2 * np.exp(0.5 * e))
    score = np.clip(rng.normal(65 + 8 * e, 10), 0, 100).round(1)
    return pd.DataFrame(
        {
            "student_id": ids[student],
            "date": start + day.astype("timedelta64[D]"),
            "minutes": np.maximum(1, np.round(rng.gamma(2.0, np.exp(3.2 + 0.3 * e) / 2))).astype(np.int64),
            "clicks": rng.poisson(np.exp(2.5 + 0.4 * e)).astype(np.int64),
            "submissions": submissions.astype(np.int64),
            "score": np.where(submissions > 0, score, np.nan),
        }
    )


def chunks(cohort: Cohort) -> Iterator[Chunk]:
    """The cohort, :data:`CHUNK` students at a time."""
    for index, first in enumerate(range(0, cohort.students, CHUNK)):
        yield make_chunk(cohort, index, first + 1, min(CHUNK, cohort.students - first))


def oracle(chunk: Chunk, cutoff: int, seed: int) -> pd.DataFrame:
    """Each student still enrolled at week ``cutoff``: the true probability of dropping out in
    weeks ``cutoff .. weeks - 1`` given the past (module docstring), and whether they did."""
    weeks = chunk.engagement.shape[1]
    alive = (chunk.dropped_week < 0) | (chunk.dropped_week >= cutoff)
    past = chunk.engagement[alive, :cutoff]
    drift = chunk.drift[alive]
    rng = np.random.default_rng([seed, 29, cutoff, int(chunk.students["student_id"].iloc[0])])
    n = len(past)
    paths = np.empty((n, ORACLE_PATHS, weeks))
    paths[:, :, :cutoff] = past[:, None, :]
    for w in range(cutoff, weeks):
        paths[:, :, w] = paths[:, :, w - 1] + drift[:, None] + rng.normal(0.0, 0.25, (n, ORACLE_PATHS))
    survive = np.ones((n, ORACLE_PATHS))
    for w in range(cutoff, weeks):
        survive *= 1 - hazard(paths, w)
    return pd.DataFrame(
        {
            "student_id": chunk.students["student_id"].to_numpy()[alive],
            "probability": 1 - survive.mean(axis=1),
            "dropped_out": chunk.dropped_week[alive] >= cutoff,
        }
    )
