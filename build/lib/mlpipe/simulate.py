"""Stage ``simulate``: the built-in demo data source, a SQLite stand-in for the production database.

Inputs: none. Outputs: a SQLite database with tables ``students``, ``topics``,
``study_sessions`` and ``student_outcomes``, and a metrics file with the data's size, its noise
floor, and the dropout labels' rate and noise. With ``simulate.later_terms``, later terms of
shifted sessions follow the first (the monitoring demo; :mod:`mlpipe.demo.synthetic`).
Params: ``base.seed``, ``simulate.*``.

The data's generative model (the target's formula, its noise floor, the dropout labels) is in
:mod:`mlpipe.demo.synthetic`. Rows are generated and written in fixed-size chunks, each with its own
seed derived from ``(seed, chunk index)``, so the output depends only on the params and ten
million sessions fit in a few hundred MB of memory.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
from collections.abc import Sequence

import numpy as np

from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import SimulateParams, load_params
from mlpipe.core.stage import run
from mlpipe.demo.synthetic import Engagement, NoiseStats, make_sessions, make_students, make_topics

log = logging.getLogger("mlpipe.simulate")

CHUNK_ROWS = 200_000
DDL = """
CREATE TABLE students (
    student_id INTEGER PRIMARY KEY,
    age INTEGER NOT NULL,
    education_level TEXT NOT NULL,
    learning_style TEXT NOT NULL,
    avg_focus_duration REAL NOT NULL
);
CREATE TABLE topics (
    topic_id INTEGER PRIMARY KEY,
    subject TEXT NOT NULL,
    difficulty_level INTEGER NOT NULL,
    estimated_base_time REAL NOT NULL,
    prerequisites_count INTEGER NOT NULL,
    content_type TEXT NOT NULL
);
CREATE TABLE study_sessions (
    session_id INTEGER PRIMARY KEY,
    student_id INTEGER NOT NULL REFERENCES students (student_id),
    topic_id INTEGER NOT NULL REFERENCES topics (topic_id),
    session_date TEXT NOT NULL,
    time_of_day TEXT NOT NULL,
    study_method TEXT NOT NULL,
    environment TEXT NOT NULL,
    energy_level INTEGER NOT NULL,
    distraction_level INTEGER NOT NULL,
    breaks_taken INTEGER NOT NULL,
    actual_duration REAL NOT NULL
);
CREATE TABLE student_outcomes (
    student_id INTEGER PRIMARY KEY REFERENCES students (student_id),
    dropped_out INTEGER NOT NULL
);
"""


def simulate(database: str, params: SimulateParams, seed: int) -> dict[str, float]:
    """Write the three tables to a new SQLite file at ``database`` and return the metrics."""
    students = make_students(params.n_students, seed)
    topics = make_topics(params.n_topics, seed)
    students_by_id, topics_by_id = students.set_index("student_id"), topics.set_index("topic_id")
    # Some students study far more than others: sessions per student follow a gamma weight.
    activity = np.random.default_rng([seed, 3]).gamma(2.0, 1.0, size=len(students))
    activity /= activity.sum()
    stats = NoiseStats()
    engagement = Engagement(students["student_id"].to_numpy())
    with sqlite3.connect(database) as con:
        con.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + DDL)
        students.to_sql("students", con, if_exists="append", index=False, chunksize=CHUNK_ROWS)
        topics.to_sql("topics", con, if_exists="append", index=False, chunksize=CHUNK_ROWS)
        for chunk, start in enumerate(range(0, params.n_sessions, CHUNK_ROWS)):
            stop = min(start + CHUNK_ROWS, params.n_sessions)
            sessions, signal = make_sessions(
                start, stop, chunk, students_by_id, topics_by_id, activity, params, seed
            )
            sessions.to_sql("study_sessions", con, if_exists="append", index=False)
            stats.add(sessions["actual_duration"].to_numpy(), signal)
            engagement.add(sessions)
            log.info("wrote sessions %d-%d of %d", start + 1, stop, params.n_sessions)
        for term in range(1, params.later_terms + 1):  # the dropout labels stay the first term's
            first = params.n_sessions + (term - 1) * params.term_sessions
            for chunk, start in enumerate(range(first, first + params.term_sessions, CHUNK_ROWS)):
                stop = min(start + CHUNK_ROWS, first + params.term_sessions)
                sessions, _ = make_sessions(
                    start, stop, chunk, students_by_id, topics_by_id, activity, params, seed, term
                )
                sessions.to_sql("study_sessions", con, if_exists="append", index=False)
            log.info("wrote later term %d: sessions %d-%d", term, first + 1, first + params.term_sessions)
        outcomes, dropout = engagement.outcomes(params.dropout_label_noise, seed)
        outcomes.to_sql("student_outcomes", con, if_exists="append", index=False, chunksize=CHUNK_ROWS)
    con.close()
    later = {"later_terms": params.later_terms, "later_sessions": params.later_terms * params.term_sessions}
    return {
        **(later if params.later_terms else {}),
        "n_sessions": params.n_sessions,
        "n_students": params.n_students,
        "n_topics": params.n_topics,
        "noise_sd": params.noise_sd,
        **stats.summary(),
        "dropout_label_noise": params.dropout_label_noise,
        **dropout,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlpipe.simulate", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--out", required=True, help="SQLite database to write")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    if params.simulate is None:
        raise PipelineError(f"{args.params} has no simulate section")
    with files.atomic_path(args.out) as tmp:
        metrics = simulate(str(tmp), params.simulate, params.base.seed)
    files.write_json(args.metrics, metrics)
    log.info(
        "noise floor RMSE %.4f h over %d sessions",
        metrics["noise_floor_rmse"],
        metrics["n_sessions"],
    )


if __name__ == "__main__":
    raise SystemExit(run(main))
