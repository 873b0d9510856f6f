import numpy as np
import pytest

from mlpipe import evaluate
from mlpipe.core.errors import PipelineError
from mlpipe.evaluation import metrics, plots
from mlpipe.features import fitting, preprocessor


def test_regression_metrics_known_values():
    m = metrics.regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(4 / 3))
    assert m["r2"] == pytest.approx(1 - 4 / 2)
    with pytest.raises(PipelineError, match="one shape"):
        metrics.regression_metrics(np.array([1.0]), np.array([1.0, 2.0]))
    with pytest.raises(PipelineError, match="non-empty"):
        metrics.regression_metrics(np.array([]), np.array([]))


def test_baselines_rank_as_expected_on_a_nonlinear_target(params):
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(3000, 3))
    y = np.sin(2 * x[:, 0]) * x[:, 1] + 0.05 * rng.normal(size=3000)
    fitted = evaluate.fit_baselines(x[:2000], y[:2000], params.evaluate, seed=0)
    rmse = {k: metrics.regression_metrics(y[2000:], f(x[2000:]))["rmse"] for k, f in fitted.items()}
    assert rmse["hgb"] < 0.5 * rmse["linear"] and rmse["linear"] <= rmse["mean"] * 1.01


def test_permutation_importance_finds_the_column_that_matters(valid_frame, params):
    prep = fitting.fit(valid_frame, params.preprocess)
    base_time = prep.feature_names.index("estimated_base_time")
    model = evaluate.RawModel(prep, lambda x: x[:, base_time])  # uses one feature only
    y = preprocessor.transform(valid_frame, prep)[:, base_time]
    importance = evaluate.permutation_importance(model, valid_frame, y, repeats=2, seed=0)
    assert set(importance) == set(prep.input_columns)
    assert importance["estimated_base_time"]["rmse_increase"] > 1.0
    assert importance["age"]["rmse_increase"] == 0.0


def test_plots_are_written(tmp_path):
    actual = np.array([1.0, 2.0, 3.0])
    plots.regression(tmp_path, actual, actual + 0.5)
    assert (tmp_path / "predictions.csv").read_text().splitlines()[1] == "1.0000,1.5000,0.5000"
    for name in ("predicted_vs_actual.png", "residuals.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_classification_metrics_known_values():
    actual = np.array([0, 0, 1, 1])
    proba = np.array([0.1, 0.6, 0.4, 0.9])  # P(class 1); at 0.5: predicted 0, 1, 0, 1
    m = metrics.classification_metrics(actual, proba, ["no", "yes"], threshold=0.5)
    assert m["accuracy"] == 0.5
    assert m["roc_auc"] == 0.75
    assert m["brier"] == pytest.approx(np.mean((proba - actual) ** 2))
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.4, 0.9])))
    assert m["per_class"]["yes"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    low = metrics.classification_metrics(actual, proba, ["no", "yes"], threshold=0.3)
    assert low["per_class"]["yes"]["recall"] == 1.0  # a lower threshold flags every positive
    three = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    multi = metrics.classification_metrics(np.array([0, 1, 2]), three, ["a", "b", "c"], threshold=0.5)
    assert multi["accuracy"] == 1.0 and multi["roc_auc"] == 1.0
    with pytest.raises(PipelineError, match="probabilities"):
        metrics.classification_metrics(np.array([0, 1]), three, ["a", "b", "c"], threshold=0.5)


def test_classification_baselines_and_plots(params, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3))
    y = (x[:, 0] + 0.3 * rng.normal(size=600) > 0.5).astype(np.int32)
    fitted = evaluate.fit_baselines(x[:400], y[:400], params.evaluate, seed=0, task="binary")
    scores = {k: metrics.classification_metrics(y[400:], f(x[400:]), [0, 1], 0.5) for k, f in fitted.items()}
    assert set(scores) == {"majority", "linear", "hgb"}
    assert scores["majority"]["roc_auc"] == 0.5 and scores["linear"]["roc_auc"] > 0.9
    plots.classification(tmp_path, y[400:], fitted["linear"](x[400:]), ["no", "yes"], 0.5)
    assert (tmp_path / "predictions.csv").read_text().splitlines()[0] == "actual,predicted"
    for name in ("roc", "precision_recall", "calibration"):
        assert len((tmp_path / f"{name}.csv").read_text().splitlines()) > 3
    for name in ("confusion_matrix", "roc", "precision_recall", "calibration"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_scores_rank_the_model_against_each_baseline_and_the_noise_floor():
    actual = np.array([1.0, 2.0, 3.0, 4.0])
    baselines = {"mean": np.full(4, 2.5), "linear": actual + 1.0, "hgb": actual + 0.5}
    result = evaluate.scores("regression", actual, actual + 0.25, baselines, (), 0.5, noise_floor=0.5)
    assert result["model_rmse_over_linear"] == pytest.approx(0.25)
    assert result["model_rmse_over_hgb"] == pytest.approx(0.5)
    assert result["model"]["rmse_over_noise_floor"] == pytest.approx(0.5)
    assert result["baselines"]["linear"]["rmse_over_noise_floor"] == pytest.approx(2.0)
    assert "x noise floor" in evaluate.summary("regression", result)
    binary = evaluate.scores(
        "binary",
        np.array([0, 1]),
        np.array([0.2, 0.9]),
        {"majority": np.array([0.5, 0.5]), "linear": np.array([0.4, 0.6]), "hgb": np.array([0.3, 0.7])},
        ["no", "yes"],
        0.5,
        noise_floor=0.5,
    )
    assert "noise_floor_rmse" not in binary and binary["model_log_loss_over_linear"] < 1


def test_an_empty_test_split_is_a_one_line_error_not_a_traceback():
    with pytest.raises(PipelineError, match="non-empty"):
        evaluate.scores("regression", np.array([]), np.array([]), {}, (), 0.5)


def test_classification_metrics_take_float32_softmax_without_a_warning():
    """A model's float32 probabilities sum to 1 only to float32 precision; scoring them must not
    warn (sklearn's log_loss said "y_prob values do not sum to one" for each such evaluate)."""
    import warnings

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(400, 3)).astype(np.float32)
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.abs(proba.astype(np.float64).sum(axis=1) - 1).max() > 0  # not exactly 1 in float64
    actual = rng.integers(0, 3, 400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = metrics.score("multiclass", actual, proba, ["a", "b", "c"], 0.5)
    expected = -np.mean(np.log(proba.astype(np.float64)[np.arange(400), actual]))
    assert scores["log_loss"] == pytest.approx(expected, rel=1e-7)  # float32 inputs
