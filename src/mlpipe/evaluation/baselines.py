"""The linear baselines, ridge and logistic regression, in arithmetic whose bits do not depend on
the machine (:mod:`mlpipe.evaluation.portable`): scikit-learn's ``Ridge`` and ``LogisticRegression`` solve
through BLAS, whose kernels and sums change with the host, so the committed baselines could not be
reproduced by a fresh clone elsewhere.

The problems solved are scikit-learn's: ridge with an unpenalised intercept (the closed form, as
``Ridge(solver="cholesky")``); logistic regression with an L2 penalty ``alpha / 2 * |w|^2`` on the
weights (not the intercept), by Newton's method: binary with one logit, more classes multinomial
with the first class as reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mlpipe.core.errors import PipelineError
from mlpipe.evaluation.portable import exp, gram, log, row_dot, solve

NEWTON_STEPS = 100
NEWTON_TOLERANCE = 1e-10  # on the largest change of a coefficient


def _with_intercept(x: np.ndarray) -> np.ndarray:
    return np.column_stack([np.asarray(x, dtype=np.float64), np.ones(len(x))])


@dataclass(frozen=True)
class Ridge:
    """A fitted ridge regression: ``predict(x) = x @ coef + intercept``."""

    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, alpha: float) -> Ridge:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        x_mean = np.add.reduce(x, axis=0) / len(x)
        y_mean = math.fsum(y) / len(y)
        centred = x - x_mean
        a = gram(centred) + alpha * np.eye(x.shape[1])
        coef = solve(a, np.add.reduce(centred * (y - y_mean)[:, None], axis=0))
        return cls(coef, y_mean - math.fsum(x_mean * coef))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return row_dot(x, self.coef) + self.intercept


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / np.add.reduce(shifted.T, axis=0)[:, None]


@dataclass(frozen=True)
class Logistic:
    """A fitted logistic regression over ``k`` classes: ``coef`` is ``(d + 1, k - 1)`` (the last
    row the intercepts), the logits of classes ``1..k-1`` against class 0."""

    coef: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, n_classes: int, alpha: float) -> Logistic:
        """Newton's method on the penalised log loss, halving a step that does not lower it.

        Raises:
            PipelineError: if it has not converged in ``NEWTON_STEPS`` steps.
        """
        xa = _with_intercept(x)
        labels = np.asarray(y, dtype=np.int64)
        onehot = np.eye(n_classes)[labels][:, 1:]
        d, m = xa.shape[1], n_classes - 1
        penalty = np.tile(np.r_[np.full(d - 1, alpha), 0.0], m)  # no penalty on the intercepts
        coef = np.zeros((d, m))
        loss = cls(coef).loss(xa, labels, penalty)
        for _ in range(NEWTON_STEPS):
            proba = cls(coef).probabilities(xa)[:, 1:]
            residual = proba - onehot
            grad = np.concatenate([np.add.reduce(xa * residual[:, [c]], axis=0) for c in range(m)])
            grad += penalty * coef.T.ravel()
            hessian = np.empty((d * m, d * m))
            for a in range(m):
                for b in range(a, m):
                    weight = proba[:, a] * ((a == b) - proba[:, b])
                    block = gram(xa, weight)
                    hessian[a * d : (a + 1) * d, b * d : (b + 1) * d] = block
                    hessian[b * d : (b + 1) * d, a * d : (a + 1) * d] = block.T
            hessian += np.diag(penalty) + 1e-12 * np.eye(d * m)  # the unpenalised intercepts
            step = solve(hessian, grad).reshape(m, d).T
            for _ in range(60):
                trial = coef - step
                trial_loss = cls(trial).loss(xa, labels, penalty)
                if trial_loss <= loss:
                    break
                step = step / 2
            else:
                return cls(coef)  # no step lowers the loss: at the optimum to rounding
            coef, loss = trial, trial_loss
            if np.max(np.abs(step)) < NEWTON_TOLERANCE * max(1.0, float(np.max(np.abs(coef)))):
                return cls(coef)
        raise PipelineError(f"linear baseline: logistic regression did not converge in {NEWTON_STEPS} steps")

    def logits(self, xa: np.ndarray) -> np.ndarray:
        rest = np.column_stack([row_dot(xa, self.coef[:, c]) for c in range(self.coef.shape[1])])
        return np.column_stack([np.zeros(len(xa)), rest])

    def probabilities(self, xa: np.ndarray) -> np.ndarray:
        return _softmax(self.logits(xa))

    def loss(self, xa: np.ndarray, labels: np.ndarray, penalty: np.ndarray) -> float:
        logits = self.logits(xa)
        top = logits.max(axis=1)
        log_norm = top + log(np.add.reduce(exp(logits - top[:, None]).T, axis=0))
        data = math.fsum(log_norm - logits[np.arange(len(labels)), labels])
        return data + 0.5 * math.fsum(penalty * self.coef.T.ravel() ** 2)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, k)`` class probabilities."""
        return self.probabilities(_with_intercept(x))
