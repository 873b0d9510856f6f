"""The fitted preprocessing: raw records in, a float32 feature matrix out.

One code path from training to serving (house style, point 8): ``preprocess`` fits a
:class:`Preprocessor` on the training split (:mod:`mlpipe.features.fitting`) and saves it as plain JSON (no
pickle, nothing that runs on load). :func:`plan_of` turns it into the feature plan
(:mod:`mlpipe.features.plan`), which numpy (:func:`transform`: ``preprocess`` writes the split matrices with
it), ONNX and TensorFlow (the bundle) compile with the same walk.
Which columns are numeric, categorical, cyclical or derived comes from params.

Feature order: scaled numeric columns, scaled derived columns, the sin/cos pair of each cyclical
column, then one indicator per category level of each categorical column.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.core.errors import PipelineError
from mlpipe.features import formulas, plan

FORMAT_VERSION = 1


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
    return list(dict.fromkeys([*numeric, *(c for n, t in derived.items() for c in formulas.columns(n, t))]))


def numbers(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A column as float64 (missing: NaN), parsed if it is text.

    Raises:
        PipelineError: if it holds something that is not a number.
    """
    try:
        return pd.to_numeric(frame[name], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError):
        raise PipelineError(f"column {name!r} must be numeric") from None


def texts(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A column as Python strings, a missing entry as :data:`mlpipe.features.plan.MISSING_TEXT`."""
    column = frame[name]
    return column.astype("object").where(column.notna(), plan.MISSING_TEXT).astype("str").to_numpy(object)


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
    log1p = staticmethod(np.log1p)
    maximum = staticmethod(np.maximum)
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

    def expand_last(self, x: np.ndarray) -> np.ndarray:
        return x[..., None]


def plan_inputs(frame: pd.DataFrame, feature_plan: plan.Plan) -> dict[str, np.ndarray]:
    """A frame's raw columns as the plan's ``[N, 1]`` inputs (float64 numbers, text with nulls as "").

    Raises:
        PipelineError: naming the column, if one is missing or a number column holds text.
    """
    missing = [i.name for i in feature_plan.inputs if i.name not in frame.columns]
    if missing:
        raise PipelineError(f"column {missing[0]!r} is missing")
    read = {plan.NUMBER: numbers, plan.TEXT: texts}
    return {i.name: read[i.kind](frame, i.name).reshape(-1, 1) for i in feature_plan.inputs}


def lower(frame: pd.DataFrame, prep: Preprocessor) -> plan.Lowered:
    """The plan applied to a frame with numpy: features and the refused rows (no error raised)."""
    feature_plan = plan_of(prep)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return plan.lower(feature_plan, NumpyOps(), plan_inputs(frame, feature_plan), formulas.fold)


def refusal_problems(
    lowered: plan.Lowered, frame: pd.DataFrame, prep: Preprocessor, offset: int = 0
) -> list[tuple[int, str]]:
    """``(first row, message)`` for each column or feature the plan refused rows of, in plan order.

    Rows are counted from ``offset`` (the frame's first row in its file, for a streamed batch).
    """
    problems = []
    for refusal in lowered.refusals:
        for j, column in enumerate(refusal.columns):
            rows = np.flatnonzero(refusal.rows[:, j])
            if len(rows):
                message = _refusal_message(refusal.reason, column, rows, frame, prep, offset)
                problems.append((offset + int(rows[0]), message))
    return problems


def _refusal_message(
    reason: str, column: str, rows: np.ndarray, frame: pd.DataFrame, prep: Preprocessor, offset: int
) -> str:
    first = int(rows[0])
    if column in prep.derived:
        formula = prep.derived[column]
        return (
            f"derived feature {column!r} = {formula} has {len(rows)} missing or non-finite values"
            f" (first at row {offset + first})"
        )
    value = frame[column].iloc[first]
    if reason == "unknown level" and not (pd.isna(value) or value == plan.MISSING_TEXT):
        kind = "level" if column in prep.cyclical else "category"
        return f"column {column!r} has unknown {kind} {value!r} at row {offset + first}"
    what = "non-finite" if reason == "not finite" and not pd.isna(value) else "missing"
    return f"column {column!r} has {len(rows)} {what} values (first at row {offset + first})"


def transform(frame: pd.DataFrame, prep: Preprocessor, offset: int = 0) -> np.ndarray:
    """Apply a fitted preprocessor to raw records (the feature plan, with numpy).

    ``offset`` is the frame's first row in its file: errors count rows from it.

    Returns:
        A float32 matrix with one row per record and ``len(prep.feature_names)`` columns.

    Raises:
        PipelineError: naming the column, for a missing column, a non-numeric value, a value the
            plan refuses (missing without a fill, non-finite, a derived value that is not finite,
            a cyclical level without a position, an unknown category under the policy
            ``"error"``), with the first row.
    """
    lowered = lower(frame, prep)
    problems = refusal_problems(lowered, frame, prep, offset)
    if problems:
        raise PipelineError(problems[0][1])
    return lowered.features


def target(frame: pd.DataFrame, prep: Preprocessor, offset: int = 0) -> np.ndarray:
    """The target: float32 values for regression, int32 class indices for classification.

    ``offset`` is the frame's first row in its file: errors count rows from it.

    Raises:
        PipelineError: if it is missing, has missing values, or holds a class unseen in training.
    """
    if prep.target not in frame.columns:
        raise PipelineError(f"target column {prep.target!r} is missing")
    if prep.classes is None:
        values = numbers(frame, prep.target)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise PipelineError(
                f"column {prep.target!r} has {len(bad)} missing or non-finite values"
                f" (first at row {offset + bad[0]})"
            )
        return values.astype(np.float32)
    labels = frame[prep.target]
    codes = labels.map({c: i for i, c in enumerate(prep.classes)})
    unknown = np.flatnonzero(codes.isna().to_numpy())
    if len(unknown):
        raise PipelineError(
            f"target {prep.target!r} has class {labels.iloc[unknown[0]]!r} at row {offset + unknown[0]},"
            f" not seen in training (classes: {', '.join(map(str, prep.classes))})"
        )
    return codes.to_numpy(dtype=np.int32)


def matrices(frame: pd.DataFrame, prep: Preprocessor) -> tuple[np.ndarray, np.ndarray]:
    """Features and target of a split: ``(transform(frame), target(frame))``."""
    return transform(frame, prep), target(frame, prep)
