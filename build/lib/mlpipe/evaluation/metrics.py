"""The metrics of a model's output against the truth, for each task: what evaluate reports for the
model and its baselines, and what live monitoring compares with them. Pure functions of arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlpipe.core import decisions
from mlpipe.core.errors import PipelineError
from mlpipe.evaluation import portable


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² of ``predicted`` against ``actual`` (same units as the target).

    Raises:
        PipelineError: if the arrays differ in length or are empty (e.g. an empty test split).
    """
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if actual.shape != predicted.shape or actual.size == 0:
        raise PipelineError(
            f"need two non-empty arrays of one shape, got {actual.shape} and {predicted.shape}"
        )
    error = predicted - actual
    total = float(np.sum((actual - actual.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": 1.0 - float(np.sum(error**2)) / total if total > 0 else float("nan"),
    }


def classification_metrics(
    actual: np.ndarray, output: np.ndarray, classes: list[Any], threshold: float
) -> dict[str, Any]:
    """Accuracy, weighted and per-class precision/recall/F1, ROC-AUC, PR-AUC, log loss and Brier.

    Args:
        actual: Class indices into ``classes``.
        output: The model's output: positive-class probabilities (binary) or ``(n, k)``.
        classes: The class labels, in output order.
        threshold: The binary decision threshold.

    Raises:
        PipelineError: if the arrays differ in length or are empty (e.g. an empty test split).
    """
    from sklearn import metrics as skm

    actual = np.asarray(actual, dtype=np.int64)
    proba = decisions.class_probabilities(output)
    if actual.size == 0 or proba.shape != (len(actual), len(classes)):
        raise PipelineError(
            f"need {len(classes)} probabilities for each of {actual.size} (>0) rows, got {proba.shape}"
        )
    labels = list(range(len(classes)))
    predicted = decisions.class_indices(output, threshold)
    onehot = np.eye(len(classes))[actual]
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        actual, predicted, labels=labels, zero_division=0
    )
    weighted = skm.precision_recall_fscore_support(
        actual, predicted, labels=labels, average="weighted", zero_division=0
    )
    present = len(np.unique(actual)) == len(classes)
    if len(classes) == 2:
        roc_auc = skm.roc_auc_score(actual, proba[:, 1]) if present else float("nan")
        pr_auc = skm.average_precision_score(actual, proba[:, 1])
    else:
        roc_auc = (
            skm.roc_auc_score(actual, proba, multi_class="ovr", average="weighted", labels=labels)
            if present
            else float("nan")
        )
        pr_auc = skm.average_precision_score(onehot, proba, average="weighted")
    return {
        "accuracy": float(skm.accuracy_score(actual, predicted)),
        "precision_weighted": float(weighted[0]),
        "recall_weighted": float(weighted[1]),
        "f1_weighted": float(weighted[2]),
        "roc_auc": float(roc_auc),
        "pr_auc": float(pr_auc),
        "log_loss": log_loss(actual, proba),
        "brier": float(np.mean(np.sum((proba - onehot) ** 2, axis=1)) / (2 if len(classes) == 2 else 1)),
        "per_class": {
            str(c): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        },
    }


def log_loss(actual: np.ndarray, proba: np.ndarray) -> float:
    """The mean negative log-likelihood of the true classes, probabilities clipped to [1e-15, 1]
    and renormalised per row (as scikit-learn's), in host-independent arithmetic
    (:mod:`mlpipe.evaluation.portable`): it is committed in the metrics."""
    clipped = np.clip(np.asarray(proba, dtype=np.float64), 1e-15, 1)
    clipped = clipped / np.add.reduce(clipped.T, axis=0)[:, None]
    return -math.fsum(portable.log(clipped[np.arange(len(actual)), actual])) / len(actual)


def score(
    task: str, actual: np.ndarray, output: np.ndarray, classes: Sequence[Any], threshold: float
) -> dict:
    """The task's metrics of one model's output (``classes`` is empty for regression)."""
    if task == "regression":
        return regression_metrics(actual, output)
    return classification_metrics(actual, output, list(classes), threshold)


def importance_metric(task: str) -> str:
    """The loss whose increase measures a column's importance: RMSE, or log loss for classification."""
    return "rmse" if task == "regression" else "log_loss"
