"""Early-warning metrics by cutoff, and the baselines on point-in-time aggregates against the oracle."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from mlpipe.core.errors import PipelineError
from mlpipe.demo import activity
from mlpipe.evaluation import early_warning
from mlpipe.features import history

CHANNELS = {"minutes": "sum", "clicks": "sum", "submissions": "sum", "score": "mean"}


def test_recall_among_the_riskiest_tenth():
    label = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    probability = np.linspace(1, 0, 20)  # the first two rows are the riskiest 10%
    assert early_warning.recall_at(label, probability) == pytest.approx(1 / 3)
    assert np.isnan(early_warning.recall_at(np.zeros(5), np.ones(5)))


def test_the_metrics_are_scikit_learns():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 300)
    probability = np.clip(label * 0.3 + rng.random(300) * 0.7, 0.01, 0.99)
    found = early_warning.cutoff_metrics(label, probability)
    assert found["roc_auc"] == pytest.approx(skm.roc_auc_score(label, probability))
    assert found["pr_auc"] == pytest.approx(skm.average_precision_score(label, probability))
    assert found["log_loss"] == pytest.approx(skm.log_loss(label, probability))
    assert found["brier"] == pytest.approx(skm.brier_score_loss(label, probability))
    with pytest.raises(PipelineError):
        early_warning.cutoff_metrics(label, probability[:-1])


def split(chunk: activity.Chunk, cutoff: int) -> tuple[history.History, history.History]:
    test = chunk.students["student_id"] % 4 == 0
    return tuple(
        history.as_of(
            chunk.students[keep],
            chunk.activity[chunk.activity["student_id"].isin(chunk.students.loc[keep, "student_id"])],
            cutoff,
            12,
            CHANNELS,
            ["prior_gpa", "age"],
        )
        for keep in (~test, test)
    )


def test_baselines_learn_from_the_past_and_the_oracle_bounds_them():
    chunk = activity.make_chunk(activity.Cohort(3000, 12, dt.date(2026, 9, 7), 5), 0, 1, 3000)
    oracle = pd.concat([activity.oracle(chunk, k, 5).assign(cutoff=k) for k in (3, 6)])
    trains, tests = zip(*(split(chunk, k) for k in (3, 6)), strict=True)
    found = early_warning.by_cutoff(
        dict(zip((3, 6), tests, strict=True)), dict(zip((3, 6), trains, strict=True)), 5, oracle=oracle
    )
    for week in ("3", "6"):
        for name in ("logistic", "hgb"):
            auc = found[week]["baselines"][name]["roc_auc"]
            assert 0.65 < auc < found[week]["oracle"]["roc_auc"]
    with pytest.raises(PipelineError, match="the oracle has no probability for cutoff 3"):
        early_warning.by_cutoff({3: tests[0]}, {3: trains[0]}, 5, oracle=oracle[oracle["cutoff"] == 6])
