"""The feature plan: the fitted preprocessing as an explicit list of blocks, and the one walk over it.

A :class:`Plan` is derived from a fitted :class:`~mlpipe.features.preprocessor.Preprocessor`. It lists the raw
inputs (each with its null policy) and the blocks that turn them into the feature matrix, in feature
order. :func:`lower` walks the plan once, in terms of a few array primitives (:class:`Ops`); numpy
(training, evaluate), ONNX (the bundle) and TensorFlow (the SavedModel) each supply those primitives
and nothing else, so every block and every policy is written once, here, and the three cannot drift.

The policies, decided here for all three:

- A missing value is NaN in a number input and :data:`MISSING_TEXT` (the empty string) in a text
  input: tensors of strings have no null, so an empty string *is* a missing value, in training too.
  A missing value takes the input's fill (training statistic) where the plan has one, and is
  refused otherwise.
- A number input or derived feature whose scaled float32 value is not finite (NaN without a
  fill, infinite, a division by zero, beyond float32's range) is refused.
- A cyclical level without a position is refused; an unknown categorical level encodes as all zeros
  (policy ``ignore``) or is refused (``error``).

Refusal is per row: numpy raises, naming the column, row and value; the graph backends output NaN
for that row (the predictor refuses non-finite outputs, naming the row), so a refused row never
yields a number anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mlpipe.core.errors import PipelineError

MISSING_TEXT = ""  # the null sentinel of a text input, the same in numpy, ONNX and TensorFlow
NUMBER = "number"
TEXT = "text"


@dataclass(frozen=True)
class Input:
    """One raw column the plan reads: its kind and what a missing value becomes (None: refused)."""

    name: str
    kind: str  # NUMBER or TEXT
    fill: float | str | None = None


@dataclass(frozen=True)
class Standardize:
    """``(value - mean) / scale`` of numeric columns and derived formulas, one feature each.

    ``formulas[i]`` is None for a raw column, else the derived feature's formula over raw columns.
    """

    names: tuple[str, ...]
    formulas: tuple[str | None, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    @property
    def features(self) -> list[str]:
        return list(self.names)


@dataclass(frozen=True)
class Cyclical:
    """``sin`` and ``cos`` of a level's position on a circle of ``period``; other levels refused."""

    column: str
    levels: tuple[str, ...]
    positions: tuple[float, ...]
    period: float

    @property
    def features(self) -> list[str]:
        return [f"{self.column}_sin", f"{self.column}_cos"]


@dataclass(frozen=True)
class OneHot:
    """One indicator per level; another level is all zeros (``ignore``) or refused (``error``)."""

    column: str
    levels: tuple[str, ...]
    unknown: str

    @property
    def features(self) -> list[str]:
        return [f"{self.column}={level}" for level in self.levels]


Block = Standardize | Cyclical | OneHot
BLOCKS: dict[str, type] = {"standardize": Standardize, "cyclical": Cyclical, "onehot": OneHot}


@dataclass(frozen=True)
class Plan:
    """The inputs and the blocks, in feature order; plain data, serialisable as JSON."""

    inputs: tuple[Input, ...]
    blocks: tuple[Block, ...]

    @property
    def feature_names(self) -> list[str]:
        return [name for block in self.blocks for name in block.features]

    def input(self, name: str) -> Input:
        return next(i for i in self.inputs if i.name == name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the bundle's metadata carries it); :meth:`from_dict` reverses it."""
        kind = {cls: name for name, cls in BLOCKS.items()}
        return {
            "inputs": [vars(i) for i in self.inputs],
            "blocks": [{"block": kind[type(b)], **_lists(vars(b))} for b in self.blocks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            PipelineError: if the data is not a plan.
        """
        try:
            blocks = []
            for spec in data["blocks"]:
                fields = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "block"}
                blocks.append(BLOCKS[spec["block"]](**fields))
            return cls(tuple(Input(**i) for i in data["inputs"]), tuple(blocks))
        except (KeyError, TypeError) as exc:
            raise PipelineError(f"malformed feature plan: {exc!r}") from None


def _lists(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}


@dataclass(frozen=True)
class Refusal:
    """Rows the plan refuses: ``rows`` is the backend's ``[N, len(columns)]`` boolean, a column of
    it per named input or derived feature."""

    columns: tuple[str, ...]
    reason: str  # "missing", "not finite" or "unknown level"
    rows: Any


@dataclass(frozen=True)
class Lowered:
    """The plan applied: the float32 feature matrix ``[N, F]`` and the refused rows."""

    features: Any
    refusals: list[Refusal]


class Ops(Protocol):
    """The array primitives a backend supplies. Tensors are ``[N, 1]`` per input; operators
    ``+ - * /`` and unary minus work on them with floats and with each other (derived formulas and
    scaling use them)."""

    def const(self, value: Any, dtype: str) -> Any: ...  # dtype: "float64" or "string"
    def is_nan(self, x: Any) -> Any: ...
    def not_finite(self, x: Any) -> Any: ...  # NaN or infinite
    def equal(self, x: Any, y: Any) -> Any: ...
    def any_row(self, x: Any) -> Any: ...  # [N, k] boolean -> [N, 1]
    def where(self, condition: Any, x: Any, y: Any) -> Any: ...
    def as_float64(self, x: Any) -> Any: ...
    def as_float32(self, x: Any) -> Any: ...
    def matmul(self, x: Any, y: Any) -> Any: ...
    def sin(self, x: Any) -> Any: ...
    def cos(self, x: Any) -> Any: ...
    def concat(self, parts: list[Any]) -> Any: ...  # along axis 1
    # a student's history (mlpipe.features.point_in_time.lower_history): [N, W, C] tensors
    def log1p(self, x: Any) -> Any: ...
    def maximum(self, x: Any, y: Any) -> Any: ...
    def expand_last(self, x: Any) -> Any: ...  # [N, W] -> [N, W, 1]


Fold = Callable[[str, str, dict[str, Any]], Any]


def lower(plan: Plan, ops: Ops, inputs: Mapping[str, Any], fold: Fold) -> Lowered:
    """Apply the plan with a backend's primitives: the one definition of every block and policy.

    Args:
        plan: The feature plan.
        ops: The backend.
        inputs: Input name -> its ``[N, 1]`` tensor (float64 for numbers, strings for text).
        fold: ``(name, formula, columns) -> value``: the formula walker
            (:func:`mlpipe.features.formulas.fold`), passed in so that this module needs none.
    """
    refusals: list[Refusal] = []
    columns: dict[str, Any] = {}
    for spec in plan.inputs:
        x = inputs[spec.name]
        text = spec.kind == TEXT
        if spec.fill is not None:
            missing = ops.equal(x, ops.const([[MISSING_TEXT]], "string")) if text else ops.is_nan(x)
            fill = ops.const([[spec.fill if text else float(spec.fill)]], "string" if text else "float64")
            x = ops.where(missing, fill, x)
        columns[spec.name] = x
    # Without a fill, a missing number stays NaN and scaling refuses it; a missing text is no level,
    # so a block that refuses unknown levels refuses it, and one-hot blocks that ignore them are
    # checked here, all in one comparison.
    unchecked = [
        b.column
        for b in plan.blocks
        if isinstance(b, OneHot) and b.unknown != "error" and plan.input(b.column).fill is None
    ]
    if unchecked:
        texts = ops.concat([columns[c] for c in unchecked]) if len(unchecked) > 1 else columns[unchecked[0]]
        refusals.append(
            Refusal(tuple(unchecked), "missing", ops.equal(texts, ops.const([[MISSING_TEXT]], "string")))
        )
    parts = []
    for block in plan.blocks:
        if isinstance(block, Standardize):
            parts.append(_standardize(block, ops, columns, refusals, fold))
        elif isinstance(block, Cyclical):
            parts.append(_cyclical(block, ops, columns, refusals))
        else:
            parts.append(_onehot(block, ops, columns, refusals))
    return Lowered(ops.concat(parts) if len(parts) > 1 else parts[0], refusals)


def _standardize(block: Standardize, ops: Ops, columns: dict, refusals: list[Refusal], fold: Fold) -> Any:
    values = [
        columns[name] if formula is None else fold(name, formula, columns)
        for name, formula in zip(block.names, block.formulas, strict=True)
    ]
    stacked = ops.concat(values) if len(values) > 1 else values[0]
    mean = ops.const([list(block.mean)], "float64")
    scale = ops.const([list(block.scale)], "float64")
    scaled = ops.as_float32((stacked - mean) / scale)
    # Not finite: a number input missing without a fill (NaN), an infinite input, a division by 0,
    # or a value beyond float32's range, which the network would take as infinite.
    refusals.append(Refusal(block.names, "not finite", ops.not_finite(scaled)))
    return scaled


def _levels(column: str, levels: Sequence[str], ops: Ops, columns: dict) -> Any:
    """``[N, k]`` booleans: does the row hold each level?"""
    return ops.equal(columns[column], ops.const([list(levels)], "string"))


def _no_level(hits: Any, width: int, ops: Ops) -> Any:
    """``[N, 1]``: the rows whose float64 level indicators ``hits`` ``[N, width]`` are all 0."""
    count = ops.matmul(hits, ops.const([[1.0]] * width, "float64"))
    return ops.equal(count, ops.const([[0.0]], "float64"))


def _cyclical(block: Cyclical, ops: Ops, columns: dict, refusals: list[Refusal]) -> Any:
    hits = ops.as_float64(_levels(block.column, block.levels, ops, columns))
    refusals.append(Refusal((block.column,), "unknown level", _no_level(hits, len(block.levels), ops)))
    # the hit-weighted sum of positions is the level's position
    position = ops.matmul(hits, ops.const([[p] for p in block.positions], "float64"))
    angle = ops.const([[2 * math.pi]], "float64") * position / ops.const([[float(block.period)]], "float64")
    return ops.as_float32(ops.concat([ops.sin(angle), ops.cos(angle)]))


def _onehot(block: OneHot, ops: Ops, columns: dict, refusals: list[Refusal]) -> Any:
    hits = _levels(block.column, block.levels, ops, columns)
    if block.unknown == "error":
        hits = ops.as_float64(hits)
        refusals.append(Refusal((block.column,), "unknown level", _no_level(hits, len(block.levels), ops)))
    return ops.as_float32(hits)


def refused_rows(lowered: Lowered, ops: Ops) -> Any | None:
    """The ``[N, 1]`` rows that any block refused (None when the plan can refuse nothing)."""
    masks = [r.rows for r in lowered.refusals]
    if not masks:
        return None
    return ops.any_row(ops.concat(masks) if len(masks) > 1 else masks[0])
