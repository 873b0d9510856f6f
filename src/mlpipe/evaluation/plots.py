"""The evaluate stage's plots: the data as CSV for ``dvc plots`` (templates in ``dvc.yaml``) and the
same plots as PNG images, for regression and classification.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.core import decisions


def _figure(folder: Path, name: str, draw: Callable[[Any], None]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    draw(ax)
    ax.set_title(name.replace("_", " "))
    fig.tight_layout()
    fig.savefig(folder / f"{name}.png", metadata={"Software": None})
    plt.close(fig)


def regression(folder: Path, actual: np.ndarray, predicted: np.ndarray) -> None:
    """Regression plot data for ``dvc plots`` and the same two plots as PNG images."""
    residual = predicted - actual
    pd.DataFrame({"actual": actual, "predicted": predicted, "residual": residual}).to_csv(
        folder / "predictions.csv", index=False, float_format="%.4f"
    )
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))

    def scatter(x: np.ndarray, y: np.ndarray, line: tuple, xlabel: str, ylabel: str) -> Callable[[Any], None]:
        def draw(ax: Any) -> None:
            ax.scatter(x, y, s=6, alpha=0.4)
            ax.plot(*line, color="black", linewidth=1)
            ax.set(xlabel=xlabel, ylabel=ylabel)

        return draw

    _figure(
        folder,
        "predicted_vs_actual",
        scatter(actual, predicted, ([low, high], [low, high]), "actual", "predicted"),
    )
    _figure(
        folder,
        "residuals",
        scatter(predicted, residual, ([low, high], [0, 0]), "predicted", "predicted - actual"),
    )


def classification(
    folder: Path, actual: np.ndarray, output: np.ndarray, classes: list[Any], threshold: float
) -> None:
    """Confusion matrix, ROC, precision-recall and calibration: CSV for ``dvc plots``, and PNG.

    Curves are for the positive class (binary) or micro-averaged over the classes (multiclass).
    """
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

    names = [str(c) for c in classes]
    predicted = decisions.class_indices(output, threshold)
    proba = decisions.class_probabilities(output)
    pd.DataFrame({"actual": [names[i] for i in actual], "predicted": [names[i] for i in predicted]}).to_csv(
        folder / "predictions.csv", index=False
    )
    if len(classes) == 2:
        truth, scores = actual == 1, proba[:, 1]
    else:
        truth, scores = np.eye(len(classes))[actual].ravel() == 1, proba.ravel()
    fpr, tpr, _ = roc_curve(truth, scores)
    precision, recall, _ = precision_recall_curve(truth, scores)
    observed, expected = calibration_curve(truth, scores, n_bins=10, strategy="quantile")
    tables = {
        "roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}),
        "precision_recall": pd.DataFrame({"recall": recall, "precision": precision}),
        "calibration": pd.DataFrame({"predicted": expected, "observed": observed}),
    }
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv", index=False, float_format="%.4f")
    matrix = confusion_matrix(actual, predicted, labels=list(range(len(classes))))

    def confusion(ax: Any) -> None:
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center")
        ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names)
        ax.set(xlabel="predicted", ylabel="actual")

    def curve(x: str, y: str, diagonal: bool) -> Callable[[Any], None]:
        def draw(ax: Any) -> None:
            table = next(t for t in tables.values() if x in t and y in t)
            ax.plot(table[x], table[y])
            if diagonal:
                ax.plot([0, 1], [0, 1], color="black", linewidth=1, linestyle=":")
            ax.set(xlabel=x, ylabel=y, xlim=(0, 1), ylim=(0, 1.02))

        return draw

    _figure(folder, "confusion_matrix", confusion)
    _figure(folder, "roc", curve("fpr", "tpr", True))
    _figure(folder, "precision_recall", curve("recall", "precision", False))
    _figure(folder, "calibration", curve("predicted", "observed", True))
