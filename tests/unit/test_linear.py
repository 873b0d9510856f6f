"""The host-independent linear baselines: scikit-learn's answers, and the same bits on another host."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tests.pipeline.repo import OTHER_HOST, one_core

from mlpipe.core.errors import PipelineError
from mlpipe.evaluation import baselines, metrics, portable


def data(n: int = 3000, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, portable.row_dot(x, rng.normal(size=d)) + rng.normal(size=n)  # no BLAS: the same y everywhere


def test_ridge_is_scikit_learns_ridge():
    from sklearn.linear_model import Ridge

    x, y = data()
    ours = baselines.Ridge.fit(x, y, alpha=3.0)
    theirs = Ridge(alpha=3.0).fit(x.astype(np.float64), y)
    np.testing.assert_allclose(ours.coef, theirs.coef_, rtol=0, atol=1e-11)
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x.astype(np.float64)), rtol=0, atol=1e-10)


def test_binary_logistic_is_scikit_learns_at_its_optimum():
    from sklearn.linear_model import LogisticRegression

    x, y = data()
    labels = (y > 0.3).astype(np.int64)
    ours = baselines.Logistic.fit(x, labels, 2, alpha=2.0)
    theirs = LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(x.astype(np.float64), labels)
    np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x.astype(np.float64)), atol=1e-7)


def test_multinomial_logistic_reaches_the_penalised_optimum():
    x, y = data()
    labels = np.digitize(y, [-1.0, 1.0])
    model = baselines.Logistic.fit(x, labels, 3, alpha=1.0)
    proba = model.predict_proba(x)
    assert proba.shape == (len(x), 3) and np.allclose(proba.sum(axis=1), 1)
    # the gradient of the penalised log loss vanishes (weights penalised, intercepts not)
    xa = np.column_stack([x.astype(np.float64), np.ones(len(x))])
    gradient = (
        xa.T @ (proba[:, 1:] - np.eye(3)[labels][:, 1:]) + np.r_[np.ones(x.shape[1]), 0][:, None] * model.coef
    )
    assert np.max(np.abs(gradient)) < 1e-6
    assert (proba.argmax(axis=1) == labels).mean() > 0.6


def test_log_loss_is_scikit_learns():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(1)
    proba = rng.dirichlet([1, 1, 1], size=500)
    actual = rng.integers(0, 3, size=500)
    assert metrics.log_loss(actual, proba) == pytest.approx(
        log_loss(actual, proba, labels=[0, 1, 2]), rel=1e-12
    )


def test_a_singular_system_is_refused_with_the_remedy():
    with pytest.raises(PipelineError, match="singular; raise linear_alpha"):
        portable.solve(np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([1.0, 2.0]))


FIT = """
import json, sys
import numpy as np
from tests.unit.test_linear import data
from mlpipe.evaluation import baselines
from mlpipe.evaluation import metrics
x, y = data()
ridge = baselines.Ridge.fit(x, y, 3.0)
binary = baselines.Logistic.fit(x, (y > 0.3).astype(np.int64), 2, 2.0)
multi = baselines.Logistic.fit(x, np.digitize(y, [-1.0, 1.0]), 3, 1.0)
loss = metrics.log_loss(np.digitize(y, [-1.0, 1.0]), multi.predict_proba(x))
coefs = [m.coef.tobytes().hex() for m in (ridge, binary, multi)]
print(json.dumps([*coefs, loss.hex()]))
"""


def test_the_same_bits_on_another_host():
    def fit(host: dict[str, str] | None) -> list[str]:
        env = {**os.environ, **(host or {})}
        run = subprocess.run(
            [sys.executable, "-c", FIT],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=one_core if host else None,
        )
        return json.loads(run.stdout)

    assert fit(None) == fit(OTHER_HOST)
