"""Live performance from running sums: each labelled prediction adds its losses, so a window's
metrics, and the confidence interval of champion vs challenger, come from sums whose size does
not grow with the log.

Per-row losses: ``abs_error`` and ``squared_error`` (regression); ``log_loss``, ``error`` (1 for a
wrong label) and ``brier`` (classification). A metric is a mean of one of them (``rmse`` the root
of one), so its live value and the difference of two arms' values follow from sums and sums of
squares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlpipe.core import decisions
from mlpipe.core.errors import PipelineError

LOSSES = {
    "regression": ("abs_error", "squared_error"),
    "classification": ("log_loss", "error", "brier"),
}
# metric -> the per-row loss it is the mean of (rmse: the root of the mean)
METRIC_LOSS = {
    "mae": "abs_error",
    "rmse": "squared_error",
    "mse": "squared_error",
    "log_loss": "log_loss",
    "accuracy": "error",
    "brier": "brier",
}
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def kind(task: str) -> str:
    return "regression" if task == "regression" else "classification"


def losses(
    task: str, output: Any, actual: Any, classes: list[str] | None = None, threshold: float | None = None
) -> dict[str, np.ndarray]:
    """Per-row losses of predictions against outcomes.

    Args:
        task: The bundle's task.
        output: Regression: the predicted numbers. Classification: ``(n, k)`` probabilities in the
            order of ``classes``.
        actual: Regression: the outcomes. Classification: the true class indices.
        classes: Classification: the class names.
        threshold: Binary: the bundle's decision threshold on the positive class, the rule
            evaluate and serving use (:func:`mlpipe.core.decisions.predicted_classes`).
    """
    if kind(task) == "regression":
        error = np.asarray(output, np.float64) - np.asarray(actual, np.float64)
        return {"abs_error": np.abs(error), "squared_error": error**2}
    proba = np.asarray(output, np.float64)
    truth = np.asarray(actual, np.int64)
    rows = np.arange(len(truth))
    onehot = np.eye(proba.shape[1])[truth]
    clipped = np.clip(proba, 1e-15, 1)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    return {
        "log_loss": -np.log(clipped[rows, truth]),
        "error": (decisions.predicted_classes(proba, threshold) != truth).astype(np.float64),
        "brier": ((proba - onehot) ** 2).sum(axis=1) / (2 if proba.shape[1] == 2 else 1),
    }


@dataclass
class Sums:
    """One arm and version's predictions: how many, how many labelled, and their losses' sums."""

    predictions: int = 0
    labelled: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    squares: dict[str, float] = field(default_factory=dict)

    def add(self, predictions: int, row_losses: dict[str, np.ndarray]) -> None:
        """Count ``predictions`` more, of which the rows of ``row_losses`` are labelled."""
        self.predictions += predictions
        self.labelled += len(next(iter(row_losses.values()), ()))
        for name, values in row_losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(values.sum())
            self.squares[name] = self.squares.get(name, 0.0) + float((values**2).sum())

    def merge(self, other: Sums) -> None:
        self.predictions += other.predictions
        self.labelled += other.labelled
        for name in other.sums:
            self.sums[name] = self.sums.get(name, 0.0) + other.sums[name]
            self.squares[name] = self.squares.get(name, 0.0) + other.squares[name]

    def mean(self, loss: str) -> float:
        return self.sums.get(loss, 0.0) / self.labelled if self.labelled else math.nan

    def variance(self, loss: str) -> float:
        """The sample variance of one loss over the labelled rows."""
        n = self.labelled
        if n < 2:
            return math.nan
        mean = self.sums[loss] / n
        return max(self.squares[loss] / n - mean * mean, 0.0) * n / (n - 1)

    def metrics(self, task: str) -> dict[str, float]:
        """The live metrics: MAE, RMSE (regression) or log loss, accuracy, Brier (classification)."""
        if kind(task) == "regression":
            return {"mae": self.mean("abs_error"), "rmse": math.sqrt(self.mean("squared_error"))}
        return {
            "log_loss": self.mean("log_loss"),
            "accuracy": 1 - self.mean("error"),
            "brier": self.mean("brier"),
        }


def metric_loss(metric: str) -> str:
    """The loss a metric averages.

    Raises:
        PipelineError: for a metric that is not a mean of per-row losses (e.g. ``roc_auc``).
    """
    if metric not in METRIC_LOSS:
        raise PipelineError(
            f"monitor.metric {metric!r} cannot be measured live (known: {', '.join(sorted(METRIC_LOSS))})"
        )
    return METRIC_LOSS[metric]


def compare(champion: Sums, challenger: Sums, metric: str, min_labelled: int) -> dict[str, Any]:
    """Challenger vs champion on one window: the difference of the metric's loss means (challenger
    minus champion), its 95% confidence interval (Welch's normal approximation: the arms serve
    different routing keys, so the samples are independent) and the verdict: ``promote`` when the
    whole interval favours the challenger, ``not enough data`` when an arm has fewer than
    ``min_labelled`` labelled predictions, else ``keep``."""
    loss = metric_loss(metric)  # every loss is better lower (accuracy's is the error rate)
    result: dict[str, Any] = {
        "metric": metric,
        "loss": loss,
        "champion_labelled": champion.labelled,
        "challenger_labelled": challenger.labelled,
    }
    if min(champion.labelled, challenger.labelled) < max(min_labelled, 2):
        return {**result, "verdict": "not enough data"}
    difference = challenger.mean(loss) - champion.mean(loss)
    spread = Z95 * math.sqrt(
        champion.variance(loss) / champion.labelled + challenger.variance(loss) / challenger.labelled
    )
    low, high = difference - spread, difference + spread
    return {
        **result,
        "difference": difference,
        "ci95_low": low,
        "ci95_high": high,
        "verdict": "promote" if high < 0 else "keep",
    }
