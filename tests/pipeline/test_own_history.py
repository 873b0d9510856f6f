"""A team's own two tables, with names that are not the demo's, through ``mlpipe init --activity``
and ``dvc repro``: the history section inferred from the data, the pipeline run, a bundle that
answers a history, and an ambiguous table refused with the flag that settles it."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from tests.pipeline.repo import ROOT, make_repo, sh

from mlpipe.demo import activity
from mlpipe.serving.predictor import Predictor

pytestmark = pytest.mark.pipeline


def own_tables(folder: Path) -> None:
    """An LMS export: ``learners`` (enrolled_on, withdrew_on, gpa, age, a text column) and
    ``events`` (seen_at with a time of day, time_on_task, clicks, grade with nulls)."""
    chunk = activity.make_chunk(activity.Cohort(500, 10, dt.date(2026, 1, 12), 3), 0, 1, 500)
    learners = chunk.students.rename(
        columns={"student_id": "learner", "start_date": "enrolled_on", "dropout_date": "withdrew_on"}
    )
    learners = learners.assign(campus=np.where(learners["learner"] % 2 == 0, "north", "south"))
    learners = learners.drop(columns=["study_mode"]).rename(columns={"prior_gpa": "gpa"})
    events = chunk.activity.rename(
        columns={"student_id": "learner", "date": "seen_at", "minutes": "time_on_task", "score": "grade"}
    ).drop(columns=["submissions"])
    events["seen_at"] = pd.to_datetime(events["seen_at"]) + pd.Timedelta(hours=14, minutes=5)
    folder.mkdir(parents=True)
    learners.to_parquet(folder / "learners.parquet", index=False)
    events.to_parquet(folder / "events.parquet", index=False)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("own-history"))
    template = repo / "pipelines" / "early_warning"
    template.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / "pipelines" / "early_warning" / name, template / name)
    own_tables(repo / "data" / "lms")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "the team's tables")
    return repo


def test_init_infers_the_history_section_and_dvc_repro_builds_a_model_that_answers(repo: Path):
    sh(
        repo,
        "mlpipe",
        "init",
        "lms",
        "--data",
        "data/lms/learners.parquet",
        "--activity",
        "data/lms/events.parquet",
    )
    folder = repo / "pipelines" / "lms"
    params_text = (folder / "params.yaml").read_text()
    params = yaml.safe_load(params_text)
    history = params["history"]
    assert (history["key"], history["timestamp"]) == ("learner", "seen_at")
    assert (history["start"], history["outcome"]) == ("enrolled_on", "withdrew_on")
    assert history["static"] == ["gpa", "part_time", "age"]
    assert history["channels"] == {"time_on_task": "sum", "clicks": "sum", "grade": "mean"}
    assert history["cutoffs"] == [2, 4, 6, 8] and history["weeks"] == 8
    assert "left out: campus" in params_text and "inferred:" in params_text
    assert "simulate" not in params and params["package"]["name"] == "lms"
    pipeline = yaml.safe_load((folder / "dvc.yaml").read_text())
    assert "simulate" not in pipeline["stages"] and "--oracle" not in pipeline["stages"]["evaluate"]["cmd"]
    assert "../../data/lms/events.parquet" in pipeline["stages"]["preprocess"]["deps"]
    params["train"].update(epochs=2)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(repo, "dvc", "repro", "pipelines/lms/dvc.yaml")
    found = json.loads((folder / "metrics" / "evaluate.json").read_text())["by_cutoff"]
    assert sorted(found, key=int) == ["2", "4", "6", "8"]
    assert all(set(f) == {"model", "baselines"} for f in found.values())  # no oracle on own data
    answer = Predictor(folder / "models" / "package").predict_records(
        [
            {
                "gpa": 3.1,
                "part_time": 0,
                "age": 22,
                "history": [{"time_on_task": 120, "clicks": 30, "grade": None}],
            }
        ]
    )
    assert 0 < answer.values[0] < 1


def test_an_ambiguous_table_is_refused_naming_the_flag_and_nothing_is_written(repo: Path):
    learners = pd.read_parquet(repo / "data" / "lms" / "learners.parquet")
    learners["graduated_on"] = learners["enrolled_on"] + pd.Timedelta(days=200)  # a second date with...
    learners.loc[::3, "graduated_on"] = pd.NaT  # ...nulls: which is the dropout date?
    learners.to_parquet(repo / "data" / "lms" / "two_dates.parquet", index=False)
    failed = sh(
        repo,
        *("mlpipe", "init", "twodates", "--data", "data/lms/two_dates.parquet"),
        *("--activity", "data/lms/events.parquet"),
        check=False,
    )
    assert failed.returncode == 1
    assert "cannot tell the dropout date" in failed.stderr and "--target" in failed.stderr
    assert not (repo / "pipelines" / "twodates").exists()
    sh(
        repo,
        *("mlpipe", "init", "twodates", "--data", "data/lms/two_dates.parquet"),
        *("--activity", "data/lms/events.parquet", "--target", "withdrew_on"),
    )
    settled = yaml.safe_load((repo / "pipelines" / "twodates" / "params.yaml").read_text())["history"]
    assert settled["outcome"] == "withdrew_on" and settled["start"] == "enrolled_on"
