"""The best any model of the activity can do: the probability of dropping out after cutoff week k
given only what a model sees before k (the static attributes, each day's activity, and that the
student is still enrolled), under the demo's known generative model (:mod:`mlpipe.demo.activity`).

A particle filter over each student's latent engagement and drift: :data:`PARTICLES` draws from
the prior given the static attributes, moved week by week by the random walk, weighted by the
likelihood of the week's observations (the number of active days; the minutes, clicks and
submissions of each active day; the scores) and by having stayed enrolled, and resampled
(systematically) every week. The probability is the weighted mean, over the particles, of the
exact chance of dropping out in weeks k .. weeks - 1 along one future walk each.

Rounded minutes are read as the Gamma density at the recorded value, and clipped scores as the
Normal density: both approximations move the likelihood by far less than the data does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlpipe.demo.activity import Chunk, hazard, sigmoid

PARTICLES = 256


def week_statistics(chunk: Chunk, weeks: int) -> dict[str, np.ndarray]:
    """Each student's sufficient statistics per week, ``(n, weeks)`` arrays, from the activity rows."""
    ids = chunk.students["student_id"].to_numpy()
    rows = chunk.activity
    start = rows["student_id"].map(chunk.students.set_index("student_id")["start_date"])
    day = (pd.to_datetime(rows["date"]) - pd.to_datetime(start)).dt.days.to_numpy()
    row, week = np.searchsorted(ids, rows["student_id"].to_numpy()), day // 7
    score = rows["score"].to_numpy(np.float64)
    scored = ~np.isnan(score)
    columns = {
        "active": np.ones(len(rows)),
        "log_minutes": np.log(rows["minutes"].to_numpy(np.float64)),
        "minutes": rows["minutes"].to_numpy(np.float64),
        "clicks": rows["clicks"].to_numpy(np.float64),
        "submissions": rows["submissions"].to_numpy(np.float64),
        "scored": scored.astype(np.float64),
        "score": np.where(scored, score, 0.0),
        "score_squared": np.where(scored, score, 0.0) ** 2,
    }
    out = {}
    for name, values in columns.items():
        grid = np.zeros((len(ids), weeks))
        np.add.at(grid, (row, week), values)
        out[name] = grid
    return out


def log_likelihood(e: np.ndarray, stats: dict[str, np.ndarray], w: int) -> np.ndarray:
    """The log-likelihood of week ``w``'s observations for each particle's engagement ``e``
    ``(n, particles)``, up to terms that do not depend on ``e``."""
    a = stats["active"][:, w, None]
    p = sigmoid(0.6 + 1.2 * e)
    theta = np.exp(3.2 + 0.3 * e) / 2
    clicks, submissions = np.exp(2.5 + 0.4 * e), 0.2 * np.exp(0.5 * e)
    mean_score = 65 + 8 * e
    return (
        a * np.log(p) + (7 - a) * np.log1p(-p)
        - stats["minutes"][:, w, None] / theta - 2 * a * np.log(theta)
        + stats["clicks"][:, w, None] * np.log(clicks) - a * clicks
        + stats["submissions"][:, w, None] * np.log(submissions) - a * submissions
        - (stats["score_squared"][:, w, None] - 2 * mean_score * stats["score"][:, w, None]
           + stats["scored"][:, w, None] * mean_score**2) / 200
    )  # fmt: skip


def resample(rng: np.random.Generator, log_weights: np.ndarray) -> np.ndarray:
    """Systematic resampling of each row's particles: the indices to keep, ``(n, particles)``."""
    n, p = log_weights.shape
    weights = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))
    cdf = np.cumsum(weights, axis=1)
    cdf = cdf / cdf[:, -1:] + np.arange(n)[:, None]  # rows side by side on one axis
    cdf[:, -1] = np.arange(1, n + 1)  # the last edge exactly, whatever the rounding
    positions = (rng.random((n, 1)) + np.arange(p)) / p + np.arange(n)[:, None]
    return np.searchsorted(cdf.ravel(), positions.ravel()).reshape(n, p) - p * np.arange(n)[:, None]


def observable_oracle(chunk: Chunk, cutoff: int, seed: int) -> pd.DataFrame:
    """Each student still enrolled at week ``cutoff``: the probability of dropping out in weeks
    ``cutoff .. weeks - 1`` given only what was observable before it (module docstring)."""
    weeks = chunk.engagement.shape[1]
    alive = (chunk.dropped_week < 0) | (chunk.dropped_week >= cutoff)
    students = chunk.students[alive]
    stats = {k: v[alive] for k, v in week_statistics(chunk, weeks).items()}
    rng = np.random.default_rng([seed, 30, cutoff, int(chunk.students["student_id"].iloc[0])])
    n = len(students)
    gpa = students["prior_gpa"].to_numpy()[:, None]
    part_time = (students["study_mode"] == "part_time").to_numpy()[:, None]
    path = np.empty((n, PARTICLES, weeks))
    path[:, :, 0] = 0.8 * (gpa - 2.9) / 0.5 - 0.4 * part_time + rng.normal(0, 0.6, (n, PARTICLES))
    drift = rng.normal(-0.05, 0.15, (n, PARTICLES))
    for w in range(cutoff):
        if w > 0:
            path[:, :, w] = path[:, :, w - 1] + drift + rng.normal(0, 0.25, (n, PARTICLES))
        log_weights = log_likelihood(path[:, :, w], stats, w)
        if w > 0:  # still enrolled through week w
            log_weights += np.log1p(-hazard(path, w))
        keep = resample(rng, log_weights)
        path = np.take_along_axis(path, keep[:, :, None], axis=1)
        drift = np.take_along_axis(drift, keep, axis=1)
    survive = np.ones((n, PARTICLES))
    for w in range(cutoff, weeks):
        path[:, :, w] = path[:, :, w - 1] + drift + rng.normal(0, 0.25, (n, PARTICLES))
        survive *= 1 - hazard(path, w)
    return pd.DataFrame(
        {
            "student_id": students["student_id"].to_numpy(),
            "probability": 1 - survive.mean(axis=1),
            "dropped_out": chunk.dropped_week[alive] >= cutoff,
        }
    )
