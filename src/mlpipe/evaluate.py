"""Stage ``evaluate``: score the model and three baselines on the held-out test split.

Inputs: the ``train`` and ``test`` splits and the preprocessor from ``preprocess``; the model from
``train``; optionally the data's noise floor (``simulate``'s metrics).
Outputs: a metrics file (MAE, RMSE, R² for the model and for each baseline, and RMSE over the noise
floor), permutation feature importance, and plot data: ``predictions.csv`` for ``dvc plots`` and
the same plots as PNG images.
Params: ``base.seed``, ``evaluate.*``.

The baselines are fitted here, on the training split, with the same preprocessing as the model: the
mean predictor, a ridge regression and scikit-learn's histogram gradient boosting.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe import features, io
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


def fit_baselines(
    x_train: np.ndarray, y_train: np.ndarray, params: EvaluateParams, seed: int
) -> dict[str, Predict]:
    """Fit the mean, linear and gradient-boosting baselines; return their predict functions."""
    from sklearn.dummy import DummyRegressor
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge

    estimators: dict[str, Any] = {
        "mean": DummyRegressor(strategy="mean"),
        "linear": Ridge(alpha=params.linear_alpha),
        "hgb": HistGradientBoostingRegressor(
            max_iter=params.hgb.max_iter,
            learning_rate=params.hgb.learning_rate,
            max_leaf_nodes=params.hgb.max_leaf_nodes,
            early_stopping=False,
            random_state=seed,
        ),
    }
    return {name: est.fit(x_train, y_train).predict for name, est in estimators.items()}


class RawModel:
    """Raw records in, predictions out: the preprocessor and the network as one estimator."""

    def __init__(self, prep: features.Preprocessor, predict: Predict) -> None:
        self.prep = prep
        self._predict = predict

    def fit(self, *_: Any) -> RawModel:  # scikit-learn's API; the model is already trained
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self._predict(features.transform(frame, self.prep))


def permutation_importance(
    model: RawModel, frame: pd.DataFrame, actual: np.ndarray, repeats: int, seed: int
) -> dict[str, dict[str, float]]:
    """RMSE increase when each raw input column is shuffled (a categorical counts as one column).

    Returns:
        Column -> mean and standard deviation of the RMSE increase over ``repeats`` shuffles.
    """
    from sklearn.inspection import permutation_importance as sk_permutation_importance

    columns = model.prep.input_columns
    result = sk_permutation_importance(
        model,
        frame[columns],
        actual,
        scoring=lambda est, x, y: -regression_metrics(y, est.predict(x))["rmse"],
        n_repeats=repeats,
        random_state=seed,
        n_jobs=1,
    )
    return {
        column: {"rmse_increase": float(mean), "std": float(std)}
        for column, mean, std in zip(columns, result.importances_mean, result.importances_std, strict=True)
    }


def write_plots(folder: Path, actual: np.ndarray, predicted: np.ndarray) -> None:
    """Plot data for ``dvc plots`` and the same two plots as PNG images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    residual = predicted - actual
    pd.DataFrame({"actual": actual, "predicted": predicted, "residual": residual}).to_csv(
        folder / "predictions.csv", index=False, float_format="%.4f"
    )
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    for name, x, y, xlabel, ylabel, line in (
        (
            "predicted_vs_actual",
            actual,
            predicted,
            "actual (h)",
            "predicted (h)",
            ([low, high], [low, high]),
        ),
        (
            "residuals",
            predicted,
            residual,
            "predicted (h)",
            "predicted - actual (h)",
            ([low, high], [0, 0]),
        ),
    ):
        fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
        ax.scatter(x, y, s=6, alpha=0.4)
        ax.plot(*line, color="black", linewidth=1)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=name.replace("_", " "))
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png", metadata={"Software": None})
        plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlpipe.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--splits", required=True, help="folder with train/test Parquet files")
    parser.add_argument("--preprocessor", required=True, help="fitted preprocessor JSON")
    parser.add_argument("--model", required=True, help="model folder from train")
    parser.add_argument("--noise-floor", help="metrics JSON with noise_floor_rmse (demo data only)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--importance", required=True, help="feature importance JSON to write")
    parser.add_argument("--plots", required=True, help="folder for plot data and PNG images")
    args = parser.parse_args(argv)

    all_params = load_params(args.params)
    params, seed = all_params.evaluate, all_params.base.seed
    prep = features.Preprocessor.from_dict(io.read_json(args.preprocessor))
    train_frame = io.read_parquet(Path(args.splits, "train.parquet"))
    test_frame = io.read_parquet(Path(args.splits, "test.parquet"))
    (x_train, y_train), (x_test, y_test) = (features.matrices(f, prep) for f in (train_frame, test_frame))

    from mlpipe.model import load_model, predict

    network = load_model(args.model)
    predicted = predict(network, x_test)
    metrics: dict[str, Any] = {
        "test_rows": len(y_test),
        "model": regression_metrics(y_test, predicted),
        "baselines": {
            name: regression_metrics(y_test, baseline(x_test))
            for name, baseline in fit_baselines(x_train, y_train, params, seed).items()
        },
    }
    for name in ("linear", "hgb"):
        metrics[f"model_rmse_over_{name}"] = metrics["model"]["rmse"] / metrics["baselines"][name]["rmse"]
    if args.noise_floor:
        floor = float(io.read_json(args.noise_floor)["noise_floor_rmse"])
        metrics["noise_floor_rmse"] = floor
        for scores in (metrics["model"], *metrics["baselines"].values()):
            scores["rmse_over_noise_floor"] = scores["rmse"] / floor

    importance = permutation_importance(
        RawModel(prep, lambda x: predict(network, x)),
        test_frame,
        y_test,
        params.permutation_repeats,
        seed,
    )
    with io.atomic_path(args.plots, directory=True) as tmp:
        write_plots(tmp, y_test.astype(np.float64), predicted.astype(np.float64))
    io.write_json(args.importance, importance)
    io.write_json(args.metrics, metrics)
    log.info(
        "test RMSE %.4f (linear %.4f, hgb %.4f)%s",
        metrics["model"]["rmse"],
        metrics["baselines"]["linear"]["rmse"],
        metrics["baselines"]["hgb"]["rmse"],
        f"; {metrics['model']['rmse_over_noise_floor']:.3f} x noise floor" if args.noise_floor else "",
    )


if __name__ == "__main__":
    raise SystemExit(run(main))
