import numpy as np
import pytest

from mlpipe import evaluate, features


def test_regression_metrics_known_values():
    m = evaluate.regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(4 / 3))
    assert m["r2"] == pytest.approx(1 - 4 / 2)
    with pytest.raises(ValueError, match="one shape"):
        evaluate.regression_metrics(np.array([1.0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="non-empty"):
        evaluate.regression_metrics(np.array([]), np.array([]))


def test_baselines_rank_as_expected_on_a_nonlinear_target(params):
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(3000, 3))
    y = np.sin(2 * x[:, 0]) * x[:, 1] + 0.05 * rng.normal(size=3000)
    fitted = evaluate.fit_baselines(x[:2000], y[:2000], params.evaluate, seed=0)
    rmse = {k: evaluate.regression_metrics(y[2000:], f(x[2000:]))["rmse"] for k, f in fitted.items()}
    assert rmse["hgb"] < 0.5 * rmse["linear"] and rmse["linear"] <= rmse["mean"] * 1.01


def test_permutation_importance_finds_the_column_that_matters(valid_frame, params):
    prep = features.fit(valid_frame, params.preprocess)
    base_time = prep.feature_names.index("estimated_base_time")
    model = evaluate.RawModel(prep, lambda x: x[:, base_time])  # uses one feature only
    y = features.transform(valid_frame, prep)[:, base_time]
    importance = evaluate.permutation_importance(model, valid_frame, y, repeats=2, seed=0)
    assert set(importance) == set(prep.input_columns)
    assert importance["estimated_base_time"]["rmse_increase"] > 1.0
    assert importance["age"]["rmse_increase"] == 0.0


def test_plots_are_written(tmp_path):
    actual = np.array([1.0, 2.0, 3.0])
    evaluate.write_plots(tmp_path, actual, actual + 0.5)
    assert (tmp_path / "predictions.csv").read_text().splitlines()[1] == "1.0000,1.5000,0.5000"
    for name in ("predicted_vs_actual.png", "residuals.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
