"""The demo data's generative model: students, topics and study sessions whose target is a known
function of the features plus noise, and each student's dropout label.

The target ``actual_duration`` (hours) is a known function of the features plus Gaussian noise of
standard deviation ``simulate.noise_sd``::

    ratio  = difficulty_level / (avg_focus_duration / 60)
    signal = 0.5 + estimated_base_time
                   * (0.6 + 0.25 * log1p(ratio))              # harder for short attention spans
                   * exp(-0.1 * (energy_level - distraction_level))
                   * TIME_OF_DAY[time_of_day] * METHOD[study_method]
                   * ENVIRONMENT[environment] * CONTENT[content_type]
                   * (1 + 0.01 * (age - 25))
             + 0.08 * prerequisites_count + 0.12 * breaks_taken
    actual_duration = max(signal + Normal(0, noise_sd), MIN_DURATION)

No model can beat the noise: the realised root-mean-square of ``actual_duration - signal`` is the
best achievable RMSE, recorded as ``noise_floor_rmse`` in the metrics.

Table ``student_outcomes`` holds each student's ``dropped_out`` label (for the dropout example),
driven by engagement over all of the student's sessions, standardised across students (z)::

    logit = -1.4 - 1.0 * z(log1p(sessions)) - 0.5 * z(mean actual_duration)
            - 0.6 * z(mean energy_level) + 0.6 * z(mean distraction_level) + 0.4 * z(mean breaks_taken)
    dropped_out = Bernoulli(sigmoid(logit)), then flipped with probability dropout_label_noise

A student without sessions takes the mean of each mean. The realised share of flipped labels is
recorded as ``dropout_label_noise_realised``.

**Later terms** (``simulate.later_terms``, for the monitoring demo) follow the first, each
``simulate.days`` long with ``simulate.term_sessions`` sessions by the same students, and the world
moves in three documented ways (:data:`LATER_TERM`): sessions skew to the night (time of day drawn
with shares 0.1/0.15/0.3/0.45 instead of 0.25/0.3/0.3/0.15), topics skew to the hard ones (drawn
in proportion to ``difficulty_level`` squared instead of uniformly), and the true formula's
``breaks_taken`` coefficient rises from 0.12 to 0.3 h per break. The first term's rows are the same
bytes with or without later terms, and the dropout labels come from the first term alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlpipe.core.params import SimulateParams

MIN_DURATION = 0.05

EDUCATION = {"high_school": 0.35, "bachelor": 0.35, "master": 0.2, "phd": 0.1}
LEARNING_STYLES = ["visual", "auditory", "reading", "kinesthetic"]
SUBJECTS = [
    "mathematics",
    "physics",
    "chemistry",
    "biology",
    "history",
    "literature",
    "computer_science",
    "economics",
]
CONTENT = {"video": 0.95, "text": 1.05, "interactive": 0.9, "mixed": 1.0}
TIME_OF_DAY = {"morning": 0.9, "afternoon": 1.0, "evening": 1.05, "night": 1.2}
METHOD = {
    "reading": 1.0,
    "practice_problems": 1.1,
    "flashcards": 0.85,
    "video_lecture": 0.95,
    "group_study": 1.15,
}
ENVIRONMENT = {"home": 1.0, "library": 0.9, "cafe": 1.12, "classroom": 0.95}

# What changes in a later term (see the module docstring).
LATER_TERM = {
    "time_of_day_shares": [0.1, 0.15, 0.3, 0.45],  # morning, afternoon, evening, night
    "topic_weight_power": 2.0,  # topics drawn in proportion to difficulty_level ** power
    "breaks_coefficient": 0.3,  # hours per break (0.12 in the first term)
}
FIRST_TERM = {"time_of_day_shares": [0.25, 0.3, 0.3, 0.15], "breaks_coefficient": 0.12}

# Dropout logit: intercept, then weights of the standardised engagement measures.
DROPOUT_LOGIT = {
    "intercept": -1.4,
    "log_sessions": -1.0,
    "duration": -0.5,
    "energy": -0.6,
    "distraction": 0.6,
    "breaks": 0.4,
}


def make_students(n: int, seed: int) -> pd.DataFrame:
    """Students with age, education, learning style and attention span (minutes)."""
    rng = np.random.default_rng([seed, 0])
    education = rng.choice(list(EDUCATION), size=n, p=list(EDUCATION.values()))
    level = pd.Series(education).map({k: i for i, k in enumerate(EDUCATION)}).to_numpy()
    focus = np.clip(rng.normal(40 + 6 * level, 15, size=n), 10, 120)
    return pd.DataFrame(
        {
            "student_id": np.arange(1, n + 1),
            "age": rng.integers(18, 36, size=n),
            "education_level": education,
            "learning_style": rng.choice(LEARNING_STYLES, size=n),
            "avg_focus_duration": np.round(focus, 1),
        }
    )


def make_topics(n: int, seed: int) -> pd.DataFrame:
    """Topics with subject, difficulty (1-10), base time (hours) and prerequisites."""
    rng = np.random.default_rng([seed, 1])
    difficulty = rng.integers(1, 11, size=n)
    base_time = np.clip(0.4 + 0.22 * difficulty + rng.normal(0, 0.35, size=n), 0.25, 5.0)
    return pd.DataFrame(
        {
            "topic_id": np.arange(1, n + 1),
            "subject": rng.choice(SUBJECTS, size=n),
            "difficulty_level": difficulty,
            "estimated_base_time": np.round(base_time, 2),
            "prerequisites_count": np.minimum(rng.poisson(difficulty / 3), 10),
            "content_type": rng.choice(list(CONTENT), size=n),
        }
    )


def true_signal(
    sessions: pd.DataFrame,
    students: pd.DataFrame,
    topics: pd.DataFrame,
    breaks_coefficient: float = FIRST_TERM["breaks_coefficient"],
) -> np.ndarray:
    """The noise-free expected duration in hours (the formula in the module docstring).

    Args:
        sessions: Sessions with their ``student_id`` and ``topic_id``.
        students: Students indexed by ``student_id``.
        topics: Topics indexed by ``topic_id``.
        breaks_coefficient: Hours per break (a later term's differs).
    """
    student = students.loc[sessions["student_id"]]
    topic = topics.loc[sessions["topic_id"]]
    ratio = topic["difficulty_level"].to_numpy() / (student["avg_focus_duration"].to_numpy() / 60)
    state = sessions["energy_level"].to_numpy() - sessions["distraction_level"].to_numpy()
    factor = (
        (0.6 + 0.25 * np.log1p(ratio))
        * np.exp(-0.1 * state)
        * sessions["time_of_day"].map(TIME_OF_DAY).to_numpy()
        * sessions["study_method"].map(METHOD).to_numpy()
        * sessions["environment"].map(ENVIRONMENT).to_numpy()
        * topic["content_type"].map(CONTENT).to_numpy()
        * (1 + 0.01 * (student["age"].to_numpy() - 25))
    )
    return (
        0.5
        + topic["estimated_base_time"].to_numpy() * factor
        + 0.08 * topic["prerequisites_count"].to_numpy()
        + breaks_coefficient * sessions["breaks_taken"].to_numpy()
    )


@dataclass
class NoiseStats:
    """Running sums over all chunks, for the realised noise floor and the target's spread."""

    n: int = 0
    noise_sq: float = 0.0
    target_sum: float = 0.0
    target_sq: float = 0.0

    def add(self, target: np.ndarray, signal: np.ndarray) -> None:
        self.n += len(target)
        self.noise_sq += float(np.sum((target - signal) ** 2))
        self.target_sum += float(np.sum(target))
        self.target_sq += float(np.sum(target**2))

    def summary(self) -> dict[str, float]:
        mean = self.target_sum / self.n
        return {
            "noise_floor_rmse": math.sqrt(self.noise_sq / self.n),
            "target_mean": mean,
            "target_sd": math.sqrt(max(self.target_sq / self.n - mean**2, 0.0)),
        }


class Engagement:
    """Per-student running sums over all chunks: sessions, duration, energy, distraction, breaks."""

    COLUMNS = ("actual_duration", "energy_level", "distraction_level", "breaks_taken")

    def __init__(self, student_ids: np.ndarray) -> None:
        self.ids = student_ids
        self.count = np.zeros(len(student_ids))
        self.sums = {c: np.zeros(len(student_ids)) for c in self.COLUMNS}

    def add(self, sessions: pd.DataFrame) -> None:
        position = np.searchsorted(self.ids, sessions["student_id"].to_numpy())
        self.count += np.bincount(position, minlength=len(self.ids))
        for column, total in self.sums.items():
            total += np.bincount(
                position, weights=sessions[column].to_numpy(np.float64), minlength=len(self.ids)
            )

    def outcomes(self, label_noise: float, seed: int) -> tuple[pd.DataFrame, dict[str, float]]:
        """The ``student_outcomes`` table and its metrics (dropout rate, realised label noise)."""

        def z(values: np.ndarray) -> np.ndarray:
            return (values - values.mean()) / (values.std() or 1.0)

        active = self.count > 0
        means = {}
        for column, total in self.sums.items():
            mean = np.divide(total, self.count, out=np.zeros_like(total), where=active)
            means[column] = np.where(active, mean, mean[active].mean() if active.any() else 0.0)
        w = DROPOUT_LOGIT
        logit = (
            w["intercept"]
            + w["log_sessions"] * z(np.log1p(self.count))
            + w["duration"] * z(means["actual_duration"])
            + w["energy"] * z(means["energy_level"])
            + w["distraction"] * z(means["distraction_level"])
            + w["breaks"] * z(means["breaks_taken"])
        )
        rng = np.random.default_rng([seed, 4])
        truth = rng.random(len(self.ids)) < 1 / (1 + np.exp(-logit))
        flipped = rng.random(len(self.ids)) < label_noise
        label = truth ^ flipped
        table = pd.DataFrame({"student_id": self.ids, "dropped_out": label.astype(np.int64)})
        return table, {
            "dropout_rate": float(label.mean()),
            "dropout_label_noise_realised": float(flipped.mean()),
        }


def make_sessions(
    start: int,
    stop: int,
    chunk_index: int,
    students: pd.DataFrame,
    topics: pd.DataFrame,
    activity: np.ndarray,
    params: SimulateParams,
    seed: int,
    term: int = 0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Sessions ``start`` to ``stop - 1`` (0-based) and their noise-free signal.

    Args:
        start: Index of the first session.
        stop: Index after the last session.
        chunk_index: Which chunk this is; with ``seed`` it seeds the chunk's random numbers.
        students: Students indexed by ``student_id``.
        topics: Topics indexed by ``topic_id``.
        activity: Each student's probability of being the one in a session.
        params: Date range and noise.
        seed: The base seed.
        term: 0 for the first term; a later term starts ``term * days`` days later, shifted
            (:data:`LATER_TERM`), with random numbers of its own.
    """
    rng = np.random.default_rng([seed, 2, chunk_index] if term == 0 else [seed, 6, term, chunk_index])
    shape = FIRST_TERM if term == 0 else LATER_TERM
    n = stop - start
    student_id = rng.choice(students.index.to_numpy(), size=n, p=activity)
    if term == 0:
        topic_id = rng.integers(1, len(topics) + 1, size=n)
    else:
        weight = topics["difficulty_level"].to_numpy(np.float64) ** LATER_TERM["topic_weight_power"]
        topic_id = rng.choice(topics.index.to_numpy(), size=n, p=weight / weight.sum())
    base_time = topics["estimated_base_time"].loc[topic_id].to_numpy()
    first_day = pd.Timestamp(params.start_date) + pd.Timedelta(days=term * params.days)
    day = first_day + pd.to_timedelta(rng.integers(0, params.days, n), "D")
    sessions = pd.DataFrame(
        {
            "session_id": np.arange(start + 1, stop + 1),
            "student_id": student_id,
            "topic_id": topic_id,
            "session_date": day.strftime("%Y-%m-%d"),
            "time_of_day": rng.choice(list(TIME_OF_DAY), size=n, p=shape["time_of_day_shares"]),
            "study_method": rng.choice(list(METHOD), size=n),
            "environment": rng.choice(list(ENVIRONMENT), size=n),
            "energy_level": rng.integers(1, 6, size=n),
            "distraction_level": rng.integers(1, 6, size=n),
            "breaks_taken": np.minimum(rng.poisson(0.5 * base_time), 12),
        }
    )
    signal = true_signal(sessions, students, topics, float(shape["breaks_coefficient"]))
    noisy = signal + rng.normal(0.0, params.noise_sd, size=n)
    sessions["actual_duration"] = np.round(np.maximum(noisy, MIN_DURATION), 4)
    return sessions, signal
