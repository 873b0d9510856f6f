"""Stage ``evaluate``: score the model and three baselines on the held-out test split.

Inputs: the ``train`` and ``test`` feature matrices, the raw ``test`` records and the preprocessor
from ``preprocess``; the model from ``train``; optionally the data's noise floor (``simulate``'s
metrics, regression on demo data).
Outputs: a metrics file, permutation feature importance, and plot data for ``dvc plots`` with the
same plots as PNG images.
Params: ``base.seed``, ``evaluate.*``; the task comes from the preprocessor.

Regression: MAE, RMSE, R² (and RMSE over the noise floor) for the model and for the mean predictor,
a ridge regression and histogram gradient boosting; plots of predicted vs actual and residuals.
Classification: accuracy, precision, recall and F1 (per class and weighted), ROC-AUC, PR-AUC, log
loss and Brier score for the model and for the majority class (class priors), a logistic
regression and histogram gradient boosting; a confusion matrix, ROC, precision-recall and
calibration curves. Baselines are fitted here, on the training split, with the model's features.

Bounded at any size: the model and the baselines are scored on the whole test split, streamed
from its matrix in row slices; the baselines are fitted on a seeded sample of the training split
(``evaluate.baseline_rows``), permutation importance shuffles a seeded sample of test records
(``evaluate.importance_rows``) and the plots draw a seeded sample (``evaluate.plot_rows``). The
metrics file says how many rows each figure used (``rows``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe import decisions, features, io
from mlpipe.params import EvaluateParams, load_params
from mlpipe.stage import run

log = logging.getLogger("mlpipe.evaluate")

Predict = Callable[[np.ndarray], np.ndarray]


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² of ``predicted`` against ``actual`` (same units as the target).

    Raises:
        ValueError: if the arrays differ in length or are empty.
    """
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if actual.shape != predicted.shape or actual.size == 0:
        raise ValueError(f"need two non-empty arrays of one shape, got {actual.shape} and {predicted.shape}")
    error = predicted - actual
    total = float(np.sum((actual - actual.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": 1.0 - float(np.sum(error**2)) / total if total > 0 else float("nan"),
    }


def class_probabilities(output: np.ndarray) -> np.ndarray:
    """``(n, k)`` probabilities from a model output: a binary positive-class column or ``(n, k)``."""
    output = np.asarray(output, dtype=np.float64)
    return np.column_stack([1 - output, output]) if output.ndim == 1 else output


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
        ValueError: if the arrays differ in length or are empty.
    """
    from sklearn import metrics as skm

    actual = np.asarray(actual, dtype=np.int64)
    proba = class_probabilities(output)
    if actual.size == 0 or proba.shape != (len(actual), len(classes)):
        raise ValueError(
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
        "log_loss": float(skm.log_loss(actual, np.clip(proba, 1e-15, 1), labels=labels)),
        "brier": float(np.mean(np.sum((proba - onehot) ** 2, axis=1)) / (2 if len(classes) == 2 else 1)),
        "per_class": {
            str(c): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        },
    }


def fit_baselines(
    x_train: np.ndarray, y_train: np.ndarray, params: EvaluateParams, seed: int, task: str = "regression"
) -> dict[str, Predict]:
    """Fit the three baselines on the training split; return functions giving the model's output format.

    Regression: the mean, ridge regression, gradient boosting. Classification: the majority class
    (class priors as probabilities), logistic regression, gradient boosting.
    """
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    boosting = {
        "max_iter": params.hgb.max_iter,
        "learning_rate": params.hgb.learning_rate,
        "max_leaf_nodes": params.hgb.max_leaf_nodes,
        "early_stopping": False,
        "random_state": seed,
    }
    if task == "regression":
        estimators: dict[str, Any] = {
            "mean": DummyRegressor(strategy="mean"),
            "linear": Ridge(alpha=params.linear_alpha),
            "hgb": HistGradientBoostingRegressor(**boosting),
        }
        return {name: est.fit(x_train, y_train).predict for name, est in estimators.items()}
    estimators = {
        "majority": DummyClassifier(strategy="prior"),
        "linear": LogisticRegression(C=1 / params.linear_alpha, max_iter=2000),
        "hgb": HistGradientBoostingClassifier(**boosting),
    }

    def output_of(estimator: Any) -> Predict:
        if task == "binary":
            return lambda x: estimator.predict_proba(x)[:, 1]
        return estimator.predict_proba

    return {name: output_of(est.fit(x_train, y_train)) for name, est in estimators.items()}


def sample(n: int, size: int, seed: int, salt: int) -> np.ndarray:
    """A seeded sample of ``size`` row positions out of ``n``, sorted (all of them if ``n <= size``)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 40, salt]).choice(n, size=size, replace=False))


def in_batches(predict: Predict, x: np.ndarray, batch_rows: int | None = None) -> np.ndarray:
    """``predict`` over ``x`` in batches (a :class:`mlpipe.io.Matrix` is read a batch at a time)."""
    step = batch_rows or io.BATCH_ROWS
    return np.concatenate([predict(np.asarray(x[i : i + step])) for i in range(0, len(x), step)])


def score(
    task: str, actual: np.ndarray, output: np.ndarray, prep: features.Preprocessor, threshold: float
) -> dict:
    """The task's metrics of one model's output."""
    if task == "regression":
        return regression_metrics(actual, output)
    return classification_metrics(actual, output, list(prep.classes or ()), threshold)


class RawModel:
    """Raw records in, model output out: the preprocessor and the network as one estimator."""

    def __init__(self, prep: features.Preprocessor, predict: Predict) -> None:
        self.prep = prep
        self._predict = predict

    def fit(self, *_: Any) -> RawModel:  # scikit-learn's API; the model is already trained
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self._predict(features.transform(frame, self.prep))


def importance_metric(task: str) -> str:
    """The loss whose increase measures a column's importance: RMSE, or log loss for classification."""
    return "rmse" if task == "regression" else "log_loss"


def permutation_importance(
    model: RawModel, frame: pd.DataFrame, actual: np.ndarray, repeats: int, seed: int, threshold: float = 0.5
) -> dict[str, dict[str, float]]:
    """Loss increase when each raw input column is shuffled (a categorical counts as one column).

    Returns:
        Column -> mean and standard deviation of the increase in RMSE (regression) or log loss
        (classification) over ``repeats`` shuffles.
    """
    from sklearn.inspection import permutation_importance as sk_permutation_importance

    task = model.prep.task
    metric = importance_metric(task)
    columns = model.prep.input_columns
    result = sk_permutation_importance(
        model,
        frame[columns],
        actual,
        scoring=lambda est, x, y: -score(task, y, est.predict(x), model.prep, threshold)[metric],
        n_repeats=repeats,
        random_state=seed,
        n_jobs=1,
    )
    return {
        column: {f"{metric}_increase": float(mean), "std": float(std)}
        for column, mean, std in zip(columns, result.importances_mean, result.importances_std, strict=True)
    }


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


def write_plots(folder: Path, actual: np.ndarray, predicted: np.ndarray) -> None:
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


def write_classification_plots(
    folder: Path, actual: np.ndarray, output: np.ndarray, classes: list[Any], threshold: float
) -> None:
    """Confusion matrix, ROC, precision-recall and calibration: CSV for ``dvc plots``, and PNG.

    Curves are for the positive class (binary) or micro-averaged over the classes (multiclass).
    """
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

    names = [str(c) for c in classes]
    predicted = decisions.class_indices(output, threshold)
    proba = class_probabilities(output)
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlpipe.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--splits", required=True, help="preprocess's folder of splits")
    parser.add_argument("--preprocessor", required=True, help="fitted preprocessor JSON")
    parser.add_argument("--model", required=True, help="model folder from train")
    parser.add_argument("--noise-floor", help="metrics JSON with noise_floor_rmse (demo regression only)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--importance", required=True, help="feature importance JSON to write")
    parser.add_argument("--plots", required=True, help="folder for plot data and PNG images")
    args = parser.parse_args(argv)

    all_params = load_params(args.params)
    params, seed = all_params.evaluate, all_params.base.seed
    prep = features.Preprocessor.from_dict(io.read_json(args.preprocessor))
    task = prep.task
    x_train, y_train = io.load_split(args.splits, "train")
    x_test, y_test_map = io.load_split(args.splits, "test")
    y_test = np.asarray(y_test_map)

    from mlpipe.model import load_model, predict

    network = load_model(args.model)
    output = predict(network, x_test)  # in batches, read from the file as it goes
    fit_rows = sample(len(x_train), params.baseline_rows, seed, 1)
    x_fit, y_fit = np.asarray(x_train[fit_rows]), np.asarray(y_train[fit_rows])
    baselines = fit_baselines(x_fit, y_fit, params, seed, task)
    metrics: dict[str, Any] = {
        "test_rows": len(y_test),
        "rows": {
            "model": len(y_test),
            "baselines_fit": len(fit_rows),
            "baselines_scored": len(y_test),
            "importance": min(len(y_test), params.importance_rows),
            "plots": min(len(y_test), params.plot_rows),
        },
        "model": score(task, y_test, output, prep, params.threshold),
        "baselines": {
            name: score(task, y_test, in_batches(b, x_test), prep, params.threshold)
            for name, b in baselines.items()
        },
    }
    loss = importance_metric(task)
    for name in ("linear", "hgb"):
        metrics[f"model_{loss}_over_{name}"] = metrics["model"][loss] / metrics["baselines"][name][loss]
    if args.noise_floor and task == "regression":
        floor = float(io.read_json(args.noise_floor)["noise_floor_rmse"])
        metrics["noise_floor_rmse"] = floor
        for scores in (metrics["model"], *metrics["baselines"].values()):
            scores["rmse_over_noise_floor"] = scores["rmse"] / floor

    shuffled = sample(len(y_test), params.importance_rows, seed, 2)
    importance = permutation_importance(
        RawModel(prep, lambda x: predict(network, x)),
        io.take_parquet(Path(args.splits, "test.parquet"), shuffled, prep.input_columns),
        y_test[shuffled],
        params.permutation_repeats,
        seed,
        params.threshold,
    )
    drawn = sample(len(y_test), params.plot_rows, seed, 3)
    with io.atomic_path(args.plots, directory=True) as tmp:
        if task == "regression":
            write_plots(tmp, y_test[drawn].astype(np.float64), output[drawn].astype(np.float64))
        else:
            write_classification_plots(
                tmp, y_test[drawn], output[drawn], list(prep.classes or ()), params.threshold
            )
    io.write_json(args.importance, importance)
    io.write_json(args.metrics, metrics)
    log.info(
        "test %s %.4f (linear %.4f, hgb %.4f)%s",
        loss,
        metrics["model"][loss],
        metrics["baselines"]["linear"][loss],
        metrics["baselines"]["hgb"][loss],
        f"; {metrics['model']['rmse_over_noise_floor']:.3f} x noise floor"
        if "noise_floor_rmse" in metrics
        else "",
    )


if __name__ == "__main__":
    raise SystemExit(run(main))
