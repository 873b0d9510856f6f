"""Judging an early-warning model by cutoff week: ROC-AUC, PR-AUC, log loss, Brier score and the
recall among the riskiest 10% (whom a counsellor who calls a tenth of the cohort reaches), for
any probabilities, and the two baselines fitted on the point-in-time aggregates of
:mod:`mlpipe.features.history`: logistic regression and gradient boosting."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Baselines:
    """The baselines' settings (an early-warning params file's ``evaluate`` section)."""

    linear_alpha: float = 1.0  # logistic regression: C = 1 / linear_alpha
    max_iter: int = 200
    learning_rate: float = 0.05
    max_leaf_nodes: int = 31


def fit_baselines(train: History, seed: int, settings: Baselines = Baselines()) -> dict[str, object]:
    """Logistic regression (standardised inputs, host-independent arithmetic) and gradient
    boosting, fitted on one cutoff's training rows; each maps a :class:`History` to probabilities."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = features(train)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    logistic = Logistic.fit((x - mean) / scale, train.label, 2, settings.linear_alpha)
    boosting = HistGradientBoostingClassifier(
        max_iter=settings.max_iter,
        learning_rate=settings.learning_rate,
        max_leaf_nodes=settings.max_leaf_nodes,
        random_state=seed,
    )
    boosting.fit(x, train.label)
    return {
        "logistic": lambda h: logistic.predict_proba((features(h) - mean) / scale)[:, 1],
        "hgb": lambda h: boosting.predict_proba(features(h))[:, 1],
    }


def oracle_of(oracle: pd.DataFrame, test: History, column: str) -> np.ndarray:
    """The oracle's ``column`` for ``test``'s students at its cutoff.

    Raises:
        PipelineError: if the oracle lacks a test student.
    """
    known = oracle[oracle["cutoff"] == test.cutoff].set_index("student_id")[column]
    truth = known.reindex(test.ids)
    if truth.isna().any():
        missing = test.ids[truth.isna().to_numpy()][0]
        raise PipelineError(f"the oracle has no probability for cutoff {test.cutoff}'s student {missing}")
    return truth.to_numpy()


def by_cutoff(
    tests: dict[int, History],
    trains: dict[int, History],
    seed: int,
    model: Callable[[History], np.ndarray] | None = None,
    oracle: pd.DataFrame | None = None,
    settings: Baselines = Baselines(),
) -> dict[str, dict]:
    """``{"<week>": {"model": {...}, "baselines": {"logistic": {...}, "hgb": {...}}, "oracle": {...}}}``:
    each cutoff's test metrics of the model, of the baselines (fitted on that cutoff's training
    rows) and of the oracle (its ``probability`` for the same students, from ``oracle``'s rows of
    that ``cutoff``; with a ``latent`` column, that one too as ``latent_oracle``).

    Raises:
        PipelineError: if the oracle lacks a test student.
    """
    out: dict[str, dict] = {}
    for cutoff, test in sorted(tests.items()):
        fitted = fit_baselines(trains[cutoff], seed, settings)
        found: dict[str, dict] = {}
        if model is not None:
            found["model"] = cutoff_metrics(test.label, model(test))
        found["baselines"] = {
            name: cutoff_metrics(test.label, predict(test)) for name, predict in fitted.items()
        }
        if oracle is not None:
            found["oracle"] = cutoff_metrics(test.label, oracle_of(oracle, test, "probability"))
            if "latent" in oracle.columns:
                found["latent_oracle"] = cutoff_metrics(test.label, oracle_of(oracle, test, "latent"))
        out[str(cutoff)] = found
    return out


def beaten_at(result: dict[str, dict]) -> dict[str, list[str]]:
    """The cutoffs at which a baseline's ROC-AUC is above the model's: week -> those baselines."""
    return {
        week: sorted(n for n, b in found["baselines"].items() if b["roc_auc"] > found["model"]["roc_auc"])
        for week, found in result.items()
        if any(b["roc_auc"] > found["model"]["roc_auc"] for b in found["baselines"].values())
    }


def auc_by_week(result: dict[str, dict]) -> pd.DataFrame:
    """One row per cutoff week: the ROC-AUC of the model, each baseline and the oracles found."""
    rows = []
    for week, found in result.items():
        row = {"week": int(week)}
        if "model" in found:
            row["model"] = found["model"]["roc_auc"]
        row.update({name: b["roc_auc"] for name, b in found["baselines"].items()})
        for oracle in ("oracle", "latent_oracle"):
            if oracle in found:
                row[oracle] = found[oracle]["roc_auc"]
        rows.append(row)
    return pd.DataFrame(rows)
