"""What a prediction holds: the model's output for a batch, with the labels and answers it means."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpipe.core import decisions


@dataclass(frozen=True)
class Prediction:
    """A batch's predictions and the model that made them.

    ``values`` is the model's output: the predicted number (regression), the probability of the
    last class (binary), or one probability per class (multiclass, ``(n, k)``).
    """

    values: np.ndarray
    model: str
    version: str
    classes: list[Any] | None = None
    threshold: float | None = None

    @property
    def labels(self) -> list[Any]:
        """The predicted class of each row (classification only): binary at the threshold, else argmax."""
        if self.classes is None:
            raise ValueError("a regression model predicts numbers, not labels")
        if self.values.ndim == 1 and self.threshold is None:
            raise ValueError("a binary prediction needs the bundle's threshold")
        picks = decisions.class_indices(self.values, self.threshold if self.threshold is not None else 0.0)
        return [self.classes[i] for i in picks.tolist()]

    def probabilities(self) -> np.ndarray:
        """``(n, k)`` class probabilities (classification only)."""
        return np.column_stack([1 - self.values, self.values]) if self.values.ndim == 1 else self.values

    def answers(self) -> list[dict[str, Any]]:
        """One JSON-ready answer per row: ``{"prediction": x}``, or ``{"label": ..., "probabilities":
        {class: p}}`` for classification."""
        if self.classes is None:
            return [{"prediction": v} for v in self.values.tolist()]
        names = [str(c) for c in self.classes]
        return [
            {"label": label, "probabilities": dict(zip(names, row, strict=True))}
            for label, row in zip(self.labels, self.probabilities().tolist(), strict=True)
        ]
