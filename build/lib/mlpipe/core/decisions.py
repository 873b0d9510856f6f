"""The rules shared by evaluation, the gate, the registry and serving for judging a model's output:
which class an output means, and which way each metric is better. Written once, here.
"""

from __future__ import annotations

import numpy as np

from mlpipe.core.errors import PipelineError

# Every metric evaluate reports, by its name's last part: does a lower value mean a better model?
LOWER_IS_BETTER = {
    "mae": True,
    "rmse": True,
    "rmse_over_noise_floor": True,
    "log_loss": True,
    "brier": True,
    "r2": False,
    "accuracy": False,
    "precision": False,
    "recall": False,
    "f1": False,
    "f1_weighted": False,
    "precision_weighted": False,
    "recall_weighted": False,
    "roc_auc": False,
    "pr_auc": False,
}


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of ``metric`` (``rmse``, or a dotted key such as ``model.rmse``) is better.

    Raises:
        PipelineError: for a metric of unknown direction, naming it.
    """
    name = metric.rsplit(".", 1)[-1]
    if name not in LOWER_IS_BETTER:
        raise PipelineError(
            f"metric {metric!r}: unknown direction (known: {', '.join(sorted(LOWER_IS_BETTER))})"
        )
    return LOWER_IS_BETTER[name]


def class_indices(output: np.ndarray, threshold: float) -> np.ndarray:
    """The class each output row means: for one column (binary: the positive class's probability)
    the positive class (index 1) at ``threshold`` or above; for ``(n, k)`` probabilities the most
    probable class."""
    output = np.asarray(output)
    return (output >= threshold).astype(np.int64) if output.ndim == 1 else output.argmax(axis=1)


def predicted_classes(proba: np.ndarray, threshold: float | None) -> np.ndarray:
    """The class of each row of ``(n, k)`` probabilities under the one rule: a binary model's
    positive class (index 1) at ``threshold`` or above, else the most probable class.

    Raises:
        PipelineError: for two classes without a threshold.
    """
    proba = np.asarray(proba)
    if proba.shape[1] != 2:
        return proba.argmax(axis=1)
    if threshold is None:
        raise PipelineError("a binary model's classes need its decision threshold")
    return class_indices(proba[:, 1], threshold)


def class_probabilities(output: np.ndarray) -> np.ndarray:
    """``(n, k)`` probabilities from a model output: a binary positive-class column or ``(n, k)``."""
    output = np.asarray(output, dtype=np.float64)
    return np.column_stack([1 - output, output]) if output.ndim == 1 else output
