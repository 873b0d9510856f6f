"""Derived features' formulas: column names, numbers, ``+ - * /`` and brackets, parsed once and
folded over whatever supports arithmetic: numpy arrays when preprocess transforms, symbolic tensors
when the bundle's ONNX graph and SavedModel are built, so all three compute the same tree.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mlpipe.core.errors import PipelineError

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


@functools.lru_cache(maxsize=256)
def parse(name: str, text: str) -> ast.Expression:
    """Parse a derived feature's formula: column names, numbers, ``+ - * /`` and brackets only.

    Cached: every transform evaluates the same few formulas. Callers must not change the tree.

    Raises:
        PipelineError: naming the feature, if the formula uses anything else.
    """
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise PipelineError(f"preprocess.derived.{name}: cannot parse {text!r}") from None
    for node in ast.walk(tree):
        allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Load, *_BINARY, *_UNARY)
        is_number = isinstance(node, ast.Constant) and type(node.value) in (int, float)
        if not (isinstance(node, allowed) or is_number):
            raise PipelineError(
                f"preprocess.derived.{name}: {ast.unparse(node) or type(node).__name__!r} is not"
                " allowed (use column names, numbers, + - * / and brackets)"
            )
    return tree


def columns(name: str, text: str) -> list[str]:
    """The column names a derived feature's formula reads, in first-use order."""
    names = [n.id for n in ast.walk(parse(name, text)) if isinstance(n, ast.Name)]
    return list(dict.fromkeys(names))


def fold(name: str, text: str, columns: Mapping[str, Any]) -> Any:
    """Apply a derived feature's formula to anything with arithmetic operators.

    The one formula code path: numpy arrays here, and symbolic tensors when the packaged ONNX graph
    and the TensorFlow export are built, so the three compute the same expression tree.

    Args:
        name: The derived feature (for error messages).
        text: Its formula.
        columns: Column name -> value supporting ``+ - * /`` and unary minus with floats.
    """
    return _walk(parse(name, text), columns)


def _walk(node: ast.AST, columns: Mapping[str, Any]) -> Any:
    # A module-level function, not a closure: a recursive closure is a reference cycle that would
    # keep every batch's columns alive until the garbage collector happens to run.
    if isinstance(node, ast.Expression):
        return _walk(node.body, columns)
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_walk(node.left, columns), _walk(node.right, columns))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_walk(node.operand, columns))
    if isinstance(node, ast.Name):
        return columns[node.id]
    return float(node.value)  # type: ignore[attr-defined]


def evaluate(name: str, text: str, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Compute a derived feature from float64 column arrays."""
    with np.errstate(divide="ignore", invalid="ignore"):
        result = fold(name, text, columns)
    return np.broadcast_to(np.asarray(result, dtype=np.float64), (len(next(iter(columns.values()))),))
