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
calibration curves. Baselines are fitted here, on the training split, with the model's preprocessor.

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

from mlpipe.core import files
from mlpipe.core.params import EvaluateParams, load_params
from mlpipe.core.stage import run
from mlpipe.evaluation import baselines, metrics, plots
from mlpipe.features import preprocessor

log = logging.getLogger("mlpipe.evaluate")

Predict = Callable[[np.ndarray], np.ndarray]


def fit_baselines(
    x_train: np.ndarray,
    y_train: np.ndarray,
    params: EvaluateParams,
    seed: int,
    task: str = "regression",
    n_classes: int | None = None,
) -> dict[str, Predict]:
    """Fit the three baselines on the training split; return functions giving the model's output format.

    Regression: the mean, ridge regression, gradient boosting. Classification: the majority class
    (class priors as probabilities), logistic regression, gradient boosting. The linear ones are
    :mod:`mlpipe.evaluation.baselines`'s, whose bits are the same on every host.
    """
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    boosting = {
        "max_iter": params.hgb.max_iter,
        "learning_rate": params.hgb.learning_rate,
        "max_leaf_nodes": params.hgb.max_leaf_nodes,
        "early_stopping": False,
        "random_state": seed,
    }
    if task == "regression":
        ridge = baselines.Ridge.fit(x_train, y_train, params.linear_alpha)
        return {
            "mean": DummyRegressor(strategy="mean").fit(x_train, y_train).predict,
            "linear": ridge.predict,
            "hgb": HistGradientBoostingRegressor(**boosting).fit(x_train, y_train).predict,
        }
    n_classes = n_classes or int(np.max(y_train)) + 1
    estimators = {
        "majority": DummyClassifier(strategy="prior").fit(x_train, y_train),
        "linear": baselines.Logistic.fit(x_train, y_train, n_classes, params.linear_alpha),
        "hgb": HistGradientBoostingClassifier(**boosting).fit(x_train, y_train),
    }

    def output_of(estimator: Any) -> Predict:
        if task == "binary":
            return lambda x: estimator.predict_proba(x)[:, 1]
        return estimator.predict_proba

    return {name: output_of(est) for name, est in estimators.items()}


def sample(n: int, size: int, seed: int, salt: int) -> np.ndarray:
    """A seeded sample of ``size`` row positions out of ``n``, sorted (all of them if ``n <= size``)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 40, salt]).choice(n, size=size, replace=False))


def in_batches(predict: Predict, x: np.ndarray, batch_rows: int | None = None) -> np.ndarray:
    """``predict`` over ``x`` in batches (a :class:`mlpipe.core.files.Matrix` is read a batch at a time)."""
    step = batch_rows or files.BATCH_ROWS
    return np.concatenate([predict(np.asarray(x[i : i + step])) for i in range(0, len(x), step)])


class RawModel:
    """Raw records in, model output out: the preprocessor and the network as one estimator."""

    def __init__(self, prep: preprocessor.Preprocessor, predict: Predict) -> None:
        self.prep = prep
        self._predict = predict

    def fit(self, *_: Any) -> RawModel:  # scikit-learn's API; the model is already trained
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self._predict(preprocessor.transform(frame, self.prep))


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
    metric = metrics.importance_metric(task)
    columns = model.prep.input_columns
    classes = model.prep.classes or ()
    result = sk_permutation_importance(
        model,
        frame[columns],
        actual,
        scoring=lambda est, x, y: -metrics.score(task, y, est.predict(x), classes, threshold)[metric],
        n_repeats=repeats,
        random_state=seed,
        n_jobs=1,
    )
    return {
        column: {f"{metric}_increase": float(mean), "std": float(std)}
        for column, mean, std in zip(columns, result.importances_mean, result.importances_std, strict=True)
    }


def scores(
    task: str,
    actual: np.ndarray,
    output: np.ndarray,
    baselines: dict[str, np.ndarray],
    classes: Sequence[Any],
    threshold: float,
    noise_floor: float | None = None,
) -> dict[str, Any]:
    """The metrics file's scores: the model's and each baseline's, the model's loss over the linear and
    boosting baselines', and (regression on demo data) each RMSE over the noise floor."""
    result: dict[str, Any] = {
        "model": metrics.score(task, actual, output, classes, threshold),
        "baselines": {
            name: metrics.score(task, actual, values, classes, threshold)
            for name, values in baselines.items()
        },
    }
    loss = metrics.importance_metric(task)
    for name in ("linear", "hgb"):
        result[f"model_{loss}_over_{name}"] = result["model"][loss] / result["baselines"][name][loss]
    if noise_floor is not None and task == "regression":
        result["noise_floor_rmse"] = noise_floor
        for entry in (result["model"], *result["baselines"].values()):
            entry["rmse_over_noise_floor"] = entry["rmse"] / noise_floor
    return result


def summary(task: str, result: dict[str, Any]) -> str:
    """One log line: the model's loss against the linear and boosting baselines'."""
    loss = metrics.importance_metric(task)
    line = f"test {loss} {result['model'][loss]:.4f} (linear {result['baselines']['linear'][loss]:.4f}, "
    line += f"hgb {result['baselines']['hgb'][loss]:.4f})"
    if "noise_floor_rmse" in result:
        line += f"; {result['model']['rmse_over_noise_floor']:.3f} x noise floor"
    return line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlpipe.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--splits", required=True, help="preprocess's folder of splits")
    parser.add_argument("--preprocessor", required=True, help="fitted preprocessor JSON")
    parser.add_argument("--model", required=True, help="model folder from train")
    parser.add_argument("--noise-floor", help="metrics JSON with noise_floor_rmse (demo regression only)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--importance", required=True, help="feature importance JSON to write")
    parser.add_argument("--plots", required=True, help="folder for plot data and PNG images")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)

    all_params = load_params(args.params)
    params, seed = all_params.evaluate, all_params.base.seed
    prep = preprocessor.Preprocessor.from_dict(files.read_json(args.preprocessor))
    task, classes = prep.task, list(prep.classes or ())
    x_train, y_train = files.load_split(args.splits, "train")
    x_test, y_test_map = files.load_split(args.splits, "test")
    y_test = np.asarray(y_test_map)

    from mlpipe.training.model import load_model, predict

    network = load_model(args.model)
    output = predict(network, x_test)  # in batches, read from the file as it goes
    fit_rows = sample(len(x_train), params.baseline_rows, seed, 1)
    x_fit, y_fit = np.asarray(x_train[fit_rows]), np.asarray(y_train[fit_rows])
    fitted = fit_baselines(x_fit, y_fit, params, seed, task, len(classes) or None)
    floor = float(files.read_json(args.noise_floor)["noise_floor_rmse"]) if args.noise_floor else None
    result = scores(
        task,
        y_test,
        output,
        {name: in_batches(b, x_test) for name, b in fitted.items()},
        classes,
        params.threshold,
        floor,
    )
    rows = {"model": len(y_test), "baselines_fit": len(fit_rows), "baselines_scored": len(y_test)}
    rows["importance"] = min(len(y_test), params.importance_rows)
    rows["plots"] = min(len(y_test), params.plot_rows)
    result = {"test_rows": len(y_test), "rows": rows, **result}

    shuffled = sample(len(y_test), params.importance_rows, seed, 2)
    importance = permutation_importance(
        RawModel(prep, lambda x: predict(network, x)),
        files.take_parquet(Path(args.splits, "test.parquet"), shuffled, prep.input_columns),
        y_test[shuffled],
        params.permutation_repeats,
        seed,
        params.threshold,
    )
    drawn = sample(len(y_test), params.plot_rows, seed, 3)
    with files.atomic_path(args.plots, directory=True) as tmp:
        if task == "regression":
            plots.regression(tmp, y_test[drawn].astype(np.float64), output[drawn].astype(np.float64))
        else:
            plots.classification(tmp, y_test[drawn], output[drawn], classes, params.threshold)
    files.write_json(args.importance, importance)
    files.write_json(args.metrics, result)
    log.info("%s", summary(task, result))


if __name__ == "__main__":
    raise SystemExit(run(main))
