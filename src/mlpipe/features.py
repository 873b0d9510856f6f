"""The fitted preprocessing: raw records in, a float32 feature matrix out.

One code path from training to serving (house style, point 8): ``preprocess`` fits a
:class:`Preprocessor` on the training split and saves it as plain JSON (no pickle, nothing that runs
on load). :func:`plan_of` turns it into the feature plan (:mod:`mlpipe.plan`), which numpy
(:func:`transform`, here: ``train`` and ``evaluate``), ONNX and TensorFlow (the bundle) compile with
the same walk. Which columns are numeric, categorical, cyclical or derived comes from params.

Feature order: scaled numeric columns, scaled derived columns, the sin/cos pair of each cyclical
column, then one indicator per category level of each categorical column.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlpipe import plan
from mlpipe.errors import PipelineError
from mlpipe.params import PreprocessParams

FORMAT_VERSION = 1

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
def parse_expression(name: str, text: str) -> ast.Expression:
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


def expression_columns(name: str, text: str) -> list[str]:
    """The column names a derived feature's formula reads, in first-use order."""
    names = [n.id for n in ast.walk(parse_expression(name, text)) if isinstance(n, ast.Name)]
    return list(dict.fromkeys(names))


def fold_expression(name: str, text: str, columns: Mapping[str, Any]) -> Any:
    """Apply a derived feature's formula to anything with arithmetic operators.

    The one formula code path: numpy arrays here, and symbolic tensors when the packaged ONNX graph
    and the TensorFlow export are built, so the three compute the same expression tree.

    Args:
        name: The derived feature (for error messages).
        text: Its formula.
        columns: Column name -> value supporting ``+ - * /`` and unary minus with floats.
    """

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](walk(node.operand))
        if isinstance(node, ast.Name):
            return columns[node.id]
        return float(node.value)  # type: ignore[attr-defined]

    return walk(parse_expression(name, text))


def evaluate_expression(name: str, text: str, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Compute a derived feature from float64 column arrays."""
    with np.errstate(divide="ignore", invalid="ignore"):
        result = fold_expression(name, text, columns)
    return np.broadcast_to(np.asarray(result, dtype=np.float64), (len(next(iter(columns.values()))),))


@dataclass(frozen=True)
class Preprocessor:
    """Everything needed to turn raw records into model inputs, learned on the training split.

    Attributes:
        target: The target column.
        numeric: Numeric input columns, scaled.
        derived: Derived feature name -> formula over raw columns, then scaled.
        mean: Training-split mean of each numeric and derived feature.
        scale: Training-split standard deviation (1 where it is 0) of the same.
        cyclical: Column -> (period, level -> position) for sin/cos encoding.
        categories: Column -> levels seen in training, in indicator order.
        unknown_category: ``"ignore"`` (all indicators 0) or ``"error"``.
        task: ``"regression"``, ``"binary"`` or ``"multiclass"``.
        classes: Classification: the target's classes, in output order (binary: negative, positive).
        fill: Raw column -> the value a missing entry takes (training median, mean or most frequent).
    """

    target: str
    numeric: list[str]
    derived: dict[str, str]
    mean: dict[str, float]
    scale: dict[str, float]
    cyclical: dict[str, dict[str, Any]]
    categories: dict[str, list[str]]
    unknown_category: str
    task: str = "regression"
    classes: list[Any] | None = None
    fill: dict[str, Any] = field(default_factory=dict)
    version: int = field(default=FORMAT_VERSION)

    @property
    def input_columns(self) -> list[str]:
        """The raw columns :func:`transform` reads."""
        return list(
            dict.fromkeys([*numeric_sources(self.numeric, self.derived), *self.cyclical, *self.categories])
        )

    @property
    def string_inputs(self) -> list[str]:
        """The input columns read as strings (categorical and cyclical); the rest are numeric."""
        return [c for c in self.input_columns if c in self.categories or c in self.cyclical]

    @property
    def feature_names(self) -> list[str]:
        """Names of the output columns, in order."""
        names = [*self.numeric, *self.derived]
        for column in self.cyclical:
            names += [f"{column}_sin", f"{column}_cos"]
        for column, levels in self.categories.items():
            names += [f"{column}={level}" for level in levels]
        return names

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form; :meth:`from_dict` reverses it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            PipelineError: if the data is not a preprocessor of this format version.
        """
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise PipelineError(f"not a version-{FORMAT_VERSION} preprocessor file")
        try:
            return cls(**data)
        except TypeError as exc:
            raise PipelineError(f"malformed preprocessor file: {exc}") from None


def numeric_sources(numeric: list[str], derived: dict[str, str]) -> list[str]:
    """The raw columns read as numbers: the numeric columns, then those the derived formulas read."""
    return list(dict.fromkeys([*numeric, *(c for n, t in derived.items() for c in expression_columns(n, t))]))


def check_roles(columns: list[str], params: PreprocessParams) -> None:
    """Check that every column a role names exists in the table and derived formulas are valid.

    Raises:
        PipelineError: naming the params key and the missing column.
    """
    present = set(columns)
    roles = {
        "target": [params.target],
        "group": [params.group],
        "ids": params.ids,
        "numeric": params.numeric,
        "categorical": params.categorical,
        "cyclical": list(params.cyclical),
    }
    for role, names in roles.items():
        for name in names:
            if name not in present:
                raise PipelineError(
                    f"preprocess.{role}: column {name!r} is not in the data (columns: {', '.join(columns)})"
                )
    for name, text in params.derived.items():
        if name in present:
            raise PipelineError(f"preprocess.derived.{name}: a column of that name already exists")
        if not expression_columns(name, text):
            raise PipelineError(
                f"preprocess.derived.{name}: {text!r} reads no column (a constant is no feature)"
            )
        for column in expression_columns(name, text):
            if column not in present:
                raise PipelineError(f"preprocess.derived.{name}: column {column!r} is not in the data")


def _numbers(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A column as float64 (missing: NaN), parsed if it is text.

    Raises:
        PipelineError: if it holds something that is not a number.
    """
    try:
        return pd.to_numeric(frame[name], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError):
        raise PipelineError(f"column {name!r} must be numeric") from None


def _texts(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A column as Python strings, a missing entry as :data:`mlpipe.plan.MISSING_TEXT`."""
    column = frame[name]
    return column.astype("object").where(column.notna(), plan.MISSING_TEXT).astype("str").to_numpy(object)


def _fit_values(frame: pd.DataFrame, params: PreprocessParams, fill: dict[str, Any]) -> dict[str, np.ndarray]:
    """The numeric columns, then each derived feature, filled, before scaling (what scaling is fitted on).

    Raises:
        PipelineError: naming the column or feature, for a missing or non-finite value left.
    """
    sources = {}
    for name in numeric_sources(params.numeric, params.derived):
        values = _numbers(frame, name)
        sources[name] = np.where(np.isnan(values), fill[name], values) if name in fill else values
    values = {name: sources[name] for name in params.numeric}
    for name, text in params.derived.items():
        values[name] = evaluate_expression(name, text, sources)
    for name, array in values.items():
        bad = np.flatnonzero(~np.isfinite(array))
        if len(bad):
            subject = (
                f"derived feature {name!r} = {params.derived[name]}"
                if name in params.derived
                else (f"column {name!r}")
            )
            raise PipelineError(
                f"{subject} has {len(bad)} missing or non-finite values in the training split"
                f" (first at row {bad[0]})"
            )
    return values


def fill_values(
    frame: pd.DataFrame, params: PreprocessParams, nullable: Collection[str] | None = None
) -> dict[str, Any]:
    """What each raw input column's missing entries become, from the training split.

    Numeric columns (and those derived formulas read) take the median or mean; categorical and
    cyclical columns the most frequent level. A strategy of ``none`` fills nothing, and neither does
    a column outside ``nullable`` (the data contract's nullable columns; None: every column): its
    missing values are refused, in training and at serving alike.
    """
    fill: dict[str, Any] = {}
    may_be_null = (lambda name: True) if nullable is None else set(nullable).__contains__
    if params.impute.numeric != "none":
        for name in numeric_sources(params.numeric, params.derived):
            values = pd.to_numeric(frame[name], errors="coerce").dropna()
            if len(values) and may_be_null(name):
                fill[name] = float(values.median() if params.impute.numeric == "median" else values.mean())
    if params.impute.categorical != "none":
        for name in [*params.categorical, *params.cyclical]:
            texts = pd.Series(_texts(frame, name))
            counts = texts[texts != plan.MISSING_TEXT].value_counts(sort=False)
            if len(counts) and may_be_null(name):
                fill[name] = str(counts.sort_index().idxmax())  # ties: the first level in sorted order
    return fill


def classes_of(frame: pd.DataFrame, params: PreprocessParams) -> list[Any] | None:
    """The target's classes for classification (binary: negative first, positive last), else None.

    Raises:
        PipelineError: for a target with missing values, one class, or a class count the task
            does not allow, before any training starts.
    """
    if params.task == "regression":
        return None
    labels = frame[params.target]
    if labels.isna().any():
        raise PipelineError(f"target {params.target!r} has missing values in the training split")
    classes = sorted(labels.unique().tolist(), key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        raise PipelineError(f"target {params.target!r} has one class ({classes[0]!r}) in the training split")
    if params.task == "binary" and len(classes) != 2:
        raise PipelineError(f"task binary needs 2 classes in {params.target!r}, found {len(classes)}")
    if params.task == "binary" and params.positive_class is not None:
        if params.positive_class not in classes:
            raise PipelineError(
                f"preprocess.positive_class {params.positive_class!r} is not a class of the target"
            )
        classes = [c for c in classes if c != params.positive_class] + [params.positive_class]
    return classes


def fit(
    frame: pd.DataFrame, params: PreprocessParams, nullable: Collection[str] | None = None
) -> Preprocessor:
    """Learn fill values, scaling statistics, category levels and classes from the training split.

    Args:
        frame: The training split.
        params: Column roles, formulas, imputation and policies.
        nullable: The columns the data contract lets be null (None: every column); only those get
            a fill value.

    Raises:
        PipelineError: if a declared column is missing, non-numeric where numeric is needed, empty,
            a categorical has more than ``max_levels`` levels, or the target does not fit the task.
    """
    check_roles(list(frame.columns), params)
    if frame.empty:
        raise PipelineError("the training split is empty")
    classes = classes_of(frame, params)
    fill = fill_values(frame, params, nullable)
    values = _fit_values(frame, params, fill)
    mean = {name: float(np.mean(v)) for name, v in values.items()}
    scale = {name: float(np.std(v)) or 1.0 for name, v in values.items()}
    texts = {name: _texts(frame, name) for name in [*params.categorical, *params.cyclical]}
    for name, array in texts.items():
        array = np.where(array == plan.MISSING_TEXT, fill.get(name, plan.MISSING_TEXT), array)
        missing = np.flatnonzero(array == plan.MISSING_TEXT)
        if len(missing):
            raise PipelineError(
                f"column {name!r} has {len(missing)} missing values in the training split"
                f" (first at row {missing[0]})"
            )
        texts[name] = array
    categories = {}
    for name in params.categorical:
        levels = sorted(set(texts[name].tolist()))
        if not levels:
            raise PipelineError(f"categorical column {name!r} has no values in the training split")
        if len(levels) > params.max_levels:
            raise PipelineError(
                f"preprocess.categorical: column {name!r} has {len(levels)} levels in the training split"
                f" (max_levels {params.max_levels}); an id belongs in preprocess.ids"
            )
        categories[name] = levels
    cyclical = {}
    for name, spec in params.cyclical.items():
        unknown = sorted(set(texts[name].tolist()) - set(spec.values))
        if unknown:
            raise PipelineError(f"preprocess.cyclical.{name}.values has no position for {unknown[0]!r}")
        cyclical[name] = {"period": spec.period, "values": dict(spec.values)}
    return Preprocessor(
        target=params.target,
        numeric=list(params.numeric),
        derived=dict(params.derived),
        mean=mean,
        scale=scale,
        cyclical=cyclical,
        categories=categories,
        unknown_category=params.unknown_category,
        task=params.task,
        classes=classes,
        fill=fill,
    )


def plan_of(prep: Preprocessor) -> plan.Plan:
    """The fitted preprocessor as a feature plan: what every backend compiles."""
    text = set(prep.string_inputs)
    inputs = tuple(
        plan.Input(c, plan.TEXT if c in text else plan.NUMBER, prep.fill.get(c)) for c in prep.input_columns
    )
    names = [*prep.numeric, *prep.derived]
    blocks: list[plan.Block] = []
    if names:
        blocks.append(
            plan.Standardize(
                tuple(names),
                tuple(prep.derived.get(n) if n in prep.derived else None for n in names),
                tuple(prep.mean[n] for n in names),
                tuple(prep.scale[n] for n in names),
            )
        )
    for name, spec in prep.cyclical.items():
        levels = tuple(spec["values"])
        positions = tuple(float(spec["values"][k]) for k in levels)
        blocks.append(plan.Cyclical(name, levels, positions, float(spec["period"])))
    for name, levels in prep.categories.items():
        blocks.append(plan.OneHot(name, tuple(levels), prep.unknown_category))
    return plan.Plan(inputs, tuple(blocks))


class NumpyOps:
    """The plan's primitives on numpy arrays: the training, evaluation and reference backend."""

    def const(self, value: Any, dtype: str) -> np.ndarray:
        return np.array(value, dtype=object if dtype == "string" else np.float64)

    is_nan = staticmethod(np.isnan)
    where = staticmethod(np.where)
    matmul = staticmethod(np.matmul)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)

    def equal(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.asarray(x == y, dtype=bool)

    def not_finite(self, x: np.ndarray) -> np.ndarray:
        return ~np.isfinite(x)

    def any_row(self, x: np.ndarray) -> np.ndarray:
        return x.any(axis=1, keepdims=True)

    def as_float64(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float64)

    def as_float32(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32)

    def concat(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts, axis=1)


def plan_inputs(frame: pd.DataFrame, feature_plan: plan.Plan) -> dict[str, np.ndarray]:
    """A frame's raw columns as the plan's ``[N, 1]`` inputs (float64 numbers, text with nulls as "").

    Raises:
        PipelineError: naming the column, if one is missing or a number column holds text.
    """
    missing = [i.name for i in feature_plan.inputs if i.name not in frame.columns]
    if missing:
        raise PipelineError(f"column {missing[0]!r} is missing")
    read = {plan.NUMBER: _numbers, plan.TEXT: _texts}
    return {i.name: read[i.kind](frame, i.name).reshape(-1, 1) for i in feature_plan.inputs}


def lower(frame: pd.DataFrame, prep: Preprocessor) -> plan.Lowered:
    """The plan applied to a frame with numpy: features and the refused rows (no error raised)."""
    feature_plan = plan_of(prep)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return plan.lower(feature_plan, NumpyOps(), plan_inputs(frame, feature_plan), fold_expression)


def refusal_problems(lowered: plan.Lowered, frame: pd.DataFrame, prep: Preprocessor) -> list[tuple[int, str]]:
    """``(first row, message)`` for each column or feature the plan refused rows of, in plan order."""
    problems = []
    for refusal in lowered.refusals:
        for j, column in enumerate(refusal.columns):
            rows = np.flatnonzero(refusal.rows[:, j])
            if len(rows):
                problems.append((int(rows[0]), _refusal_message(refusal.reason, column, rows, frame, prep)))
    return problems


def _refusal_message(
    reason: str, column: str, rows: np.ndarray, frame: pd.DataFrame, prep: Preprocessor
) -> str:
    first = int(rows[0])
    if column in prep.derived:
        formula = prep.derived[column]
        return (
            f"derived feature {column!r} = {formula} has {len(rows)} missing or non-finite values"
            f" (first at row {first})"
        )
    value = frame[column].iloc[first]
    if reason == "unknown level" and not (pd.isna(value) or value == plan.MISSING_TEXT):
        kind = "level" if column in prep.cyclical else "category"
        return f"column {column!r} has unknown {kind} {value!r} at row {first}"
    what = "non-finite" if reason == "not finite" and not pd.isna(value) else "missing"
    return f"column {column!r} has {len(rows)} {what} values (first at row {first})"


def transform(frame: pd.DataFrame, prep: Preprocessor) -> np.ndarray:
    """Apply a fitted preprocessor to raw records (the feature plan, with numpy).

    Returns:
        A float32 matrix with one row per record and ``len(prep.feature_names)`` columns.

    Raises:
        PipelineError: naming the column, for a missing column, a non-numeric value, a value the
            plan refuses (missing without a fill, non-finite, a derived value that is not finite,
            a cyclical level without a position, an unknown category under the policy
            ``"error"``), with the first row.
    """
    lowered = lower(frame, prep)
    problems = refusal_problems(lowered, frame, prep)
    if problems:
        raise PipelineError(problems[0][1])
    return lowered.features


def target(frame: pd.DataFrame, prep: Preprocessor) -> np.ndarray:
    """The target: float32 values for regression, int32 class indices for classification.

    Raises:
        PipelineError: if it is missing, has missing values, or holds a class unseen in training.
    """
    if prep.target not in frame.columns:
        raise PipelineError(f"target column {prep.target!r} is missing")
    if prep.classes is None:
        values = _numbers(frame, prep.target)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise PipelineError(
                f"column {prep.target!r} has {len(bad)} missing or non-finite values (first at row {bad[0]})"
            )
        return values.astype(np.float32)
    labels = frame[prep.target]
    codes = labels.map({c: i for i, c in enumerate(prep.classes)})
    unknown = np.flatnonzero(codes.isna().to_numpy())
    if len(unknown):
        raise PipelineError(
            f"target {prep.target!r} has class {labels.iloc[unknown[0]]!r} at row {unknown[0]},"
            f" not seen in training (classes: {', '.join(map(str, prep.classes))})"
        )
    return codes.to_numpy(dtype=np.int32)


def matrices(frame: pd.DataFrame, prep: Preprocessor) -> tuple[np.ndarray, np.ndarray]:
    """Features and target of a split: ``(transform(frame), target(frame))``."""
    return transform(frame, prep), target(frame, prep)
