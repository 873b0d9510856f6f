"""Judging an early-warning model by cutoff week: ROC-AUC, PR-AUC, log loss, Brier score and the
recall among the riskiest 10% (whom a counsellor who calls a tenth of the cohort reaches), for
any probabilities, and the two baselines fitted on the point-in-time aggregates of
:mod:`mlpipe.features.history`: logistic regression and gradient boosting."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mlpipe.core.errors import PipelineError
from mlpipe.evaluation import metrics
from mlpipe.evaluation.baselines import Logistic
from mlpipe.features.history import History

CALLED = 0.10  # the share of the cohort a counsellor calls, riskiest first


def recall_at(label: np.ndarray, probability: np.ndarray, share: float = CALLED) -> float:
    """The share of those who drop out that are among the ``share`` of students ranked riskiest
    (ties broken by order, the stable way)."""
    positives = int(label.sum())
    if positives == 0:
        return math.nan
    called = np.argsort(-probability, kind="stable")[: max(1, math.ceil(share * len(label)))]
    return float(label[called].sum() / positives)


def cutoff_metrics(label: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """The early-warning metrics of probabilities of dropping out against what happened.

    Raises:
        PipelineError: for arrays of different lengths or none.
    """
    label = np.asarray(label, np.int64)
    probability = np.asarray(probability, np.float64)
    found = metrics.classification_metrics(label, probability, [0, 1], 0.5)
    chosen = {k: found[k] for k in ("roc_auc", "pr_auc", "log_loss", "brier")}
    return {**chosen, "recall_at_10pct": recall_at(label, probability), "rows": len(label)}


def features(history: History) -> np.ndarray:
    """The baselines' inputs: the aggregates and the numeric static columns, as float64."""
    numeric = history.static.select_dtypes("number")
    return np.column_stack([history.aggregates.to_numpy(np.float64), numeric.to_numpy(np.float64)])


def fit_baselines(train: History, seed: int, alpha: float = 1.0) -> dict[str, object]:
    """Logistic regression (standardised inputs, host-independent arithmetic) and gradient
    boosting, fitted on one cutoff's training rows; each maps a :class:`History` to probabilities."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = features(train)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    logistic = Logistic.fit((x - mean) / scale, train.label, 2, alpha)
    boosting = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=seed)
    boosting.fit(x, train.label)
    return {
        "logistic": lambda h: logistic.predict_proba((features(h) - mean) / scale)[:, 1],
        "hgb": lambda h: boosting.predict_proba(features(h))[:, 1],
    }


def by_cutoff(
    tests: dict[int, History], trains: dict[int, History], oracle: pd.DataFrame, seed: int
) -> dict[str, dict]:
    """``{"<week>": {"baselines": {...}, "oracle": {...}}}``: each cutoff's test metrics of the
    baselines (fitted on that cutoff's training rows) and of the oracle (its ``probability`` for
    the same students, from ``oracle``'s rows of that ``cutoff``).

    Raises:
        PipelineError: if the oracle lacks a test student.
    """
    out: dict[str, dict] = {}
    for cutoff, test in sorted(tests.items()):
        fitted = fit_baselines(trains[cutoff], seed)
        known = oracle[oracle["cutoff"] == cutoff].set_index("student_id")["probability"]
        truth = known.reindex(test.ids)
        if truth.isna().any():
            missing = test.ids[truth.isna().to_numpy()][0]
            raise PipelineError(f"the oracle has no probability for cutoff {cutoff}'s student {missing}")
        out[str(cutoff)] = {
            "baselines": {
                name: cutoff_metrics(test.label, predict(test)) for name, predict in fitted.items()
            },
            "oracle": cutoff_metrics(test.label, truth.to_numpy()),
        }
    return out
