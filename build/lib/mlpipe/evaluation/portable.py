"""Arithmetic whose bits are the same on every x86-64 host: no BLAS or LAPACK call anywhere.

OpenBLAS picks its kernels by CPU model (``OPENBLAS_CORETYPE``: Haswell, SkylakeX, Zen, ...) and
splits sums by thread count, and numpy's vectorised ``exp``/``log`` have AVX-512 variants that
round differently from the others; so ``x @ w``, ``np.linalg.solve`` or ``np.log`` can give other
last bits on another machine. Here every sum is an element-wise accumulation in a fixed order
(``np.add.reduce`` over the leading axis adds whole rows one after another), numpy's pairwise
sum along a contiguous row (its order fixed by the length, not the instruction set), a
column-by-column loop, or ``math.fsum`` (exactly rounded); systems are solved by a Cholesky
factorisation written out below; exponentials and logarithms go through Python's ``math`` (the C
library). Each step is an IEEE operation whose result is fixed, whichever instruction set numpy
dispatches to. Used where a result is committed: the linear baselines (:mod:`mlpipe.evaluation.baselines`) and
the log loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mlpipe.core.errors import PipelineError


def row_dot(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` for a vector ``w``: the columns added one after another."""
    out = np.zeros(len(x), dtype=np.float64)
    for j in range(x.shape[1]):
        out += x[:, j].astype(np.float64) * w[j]
    return out


def gram(x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``x.T @ diag(weights) @ x``: each entry one ``np.add.reduce`` along a row of ``x.T`` (numpy's
    pairwise sum, whose order is fixed by its length)."""
    columns = np.ascontiguousarray(np.asarray(x, dtype=np.float64).T)
    weighted = columns if weights is None else columns * np.asarray(weights, dtype=np.float64)
    out = np.empty((len(columns), len(columns)), dtype=np.float64)
    for j in range(len(columns)):
        out[j, j:] = np.add.reduce(weighted[j] * columns[j:], axis=1)
        out[j:, j] = out[j, j:]
    return out


def solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a^-1 b`` for a symmetric positive definite ``a``: Cholesky, then two triangular solves.

    Raises:
        PipelineError: if ``a`` is not positive definite (e.g. a constant feature and no penalty).
    """
    n = len(a)
    lower = np.zeros_like(a, dtype=np.float64)
    for j in range(n):
        pivot = a[j, j] - math.fsum(lower[j, :j] * lower[j, :j])
        if not pivot > 0:
            raise PipelineError("linear baseline: the features' Gram matrix is singular; raise linear_alpha")
        lower[j, j] = math.sqrt(pivot)
        below = a[j + 1 :, j].astype(np.float64)
        for k in range(j):
            below = below - lower[j + 1 :, k] * lower[j, k]
        lower[j + 1 :, j] = below / lower[j, j]
    y = np.zeros(n, dtype=np.float64)
    for i in range(n):
        y[i] = (b[i] - math.fsum(lower[i, :i] * y[:i])) / lower[i, i]
    x = np.zeros(n, dtype=np.float64)
    for i in reversed(range(n)):
        x[i] = (y[i] - math.fsum(lower[i + 1 :, i] * x[i + 1 :])) / lower[i, i]
    return x


def exp(values: np.ndarray) -> np.ndarray:
    """Element-wise ``e ** values`` through the C library, the same on every x86-64 host."""
    return _elementwise(math.exp, values)


def log(values: np.ndarray) -> np.ndarray:
    """Element-wise natural logarithm through the C library (see :func:`exp`)."""
    return _elementwise(math.log, values)


def _elementwise(function: Callable[[float], float], values: np.ndarray) -> np.ndarray:
    flat = np.asarray(values, dtype=np.float64)
    return np.fromiter(map(function, flat.ravel().tolist()), np.float64, flat.size).reshape(flat.shape)
