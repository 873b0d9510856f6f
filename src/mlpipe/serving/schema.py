"""The bundle's input schema, and the one check of records against it.

Two input shapes reach the model: JSON-like records (``predict_one``, ``predict_records``, HTTP),
checked with JSON's types (``"24"`` is not a number), and DataFrames (CSV and Parquet files), where a
number column read as text is parsed. Each shape is only *converted* to columns here, with the
problems only its shape can have (a wrong JSON type, text that is no number, a null); then one
vectorised check, :meth:`Schema.check_columns`, applies every rule of the schema to the typed
columns: finite, whole, in range, a known category, not missing. So a value is judged the same
whatever shape or batch size it comes in.

A missing value is None or NaN, and in a text field also the empty string (the feature plan's
sentinel, :data:`mlpipe.features.plan.MISSING_TEXT`); it is accepted where the field is nullable
(the model fills it) and refused elsewhere.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpipe.features.plan import MISSING_TEXT
from mlpipe.serving.problems import MAX_REPORTED, FieldError, RecordError, quoted, summarise

__all__ = ["MAX_REPORTED", "FieldError", "RecordError", "Schema", "quoted", "summarise"]

# A frame's null may have been a CSV cell's null text (tables.CSV_NULLS): the message says so.
MISSING_IN_FRAME = "missing value (an empty cell, a null, or a null text such as NA, n/a or NULL)"
_ABSENT = object()  # a field the record does not have


@dataclass(frozen=True)
class Field:
    """One input column of the schema."""

    name: str
    kind: str  # "number", "integer" or "string"
    minimum: float | None = None
    maximum: float | None = None
    categories: frozenset[str] | None = None  # None: any string is accepted
    nullable: bool = False  # a null is filled by the model (imputation), so it is accepted
    allowed: frozenset[str] | None = None  # the data contract's levels (unseen ones are ignored)
    numeric: bool = dataclasses.field(init=False)
    json_types: frozenset[type] = dataclasses.field(init=False)  # the Python types of a valid JSON value

    def __post_init__(self) -> None:
        numeric = self.kind != "string"
        object.__setattr__(self, "numeric", numeric)
        object.__setattr__(self, "json_types", frozenset((int, float) if numeric else (str,)))

    @classmethod
    def from_schema(cls, name: str, spec: Mapping[str, Any]) -> Field:
        strict = spec["type"] == "string" and spec.get("unknown") == "error"
        return cls(
            name,
            spec["type"],
            spec.get("min"),
            spec.get("max"),
            frozenset(spec["categories"]) if strict else None,
            "fill" in spec,
            frozenset(spec["allowed"]) if not strict and spec.get("allowed") is not None else None,
        )

    def shown(self, value: float) -> str:
        """A number as a message shows it: whole numbers of an integer field without ``.0``, cut to
        80 characters (``1e308`` as an integer has 309 digits)."""
        return quoted(int(value) if self.kind == "integer" and value.is_integer() else value)


@dataclass
class _Column:
    """A field's values converted to the model's input type, with the rows already found bad."""

    values: Any  # float64 (missing: NaN) or str objects (missing: ""), as an array or a list
    problems: list[tuple[int, str]]
    bad: np.ndarray | None = None  # bool: rows reported by the conversion, which the check skips


class Schema:
    """The input fields of a bundle, and the checks of records and frames against them."""

    def __init__(self, fields: Sequence[Field]) -> None:
        self.fields = list(fields)
        numbers = [f for f in self.fields if f.numeric]
        self._numbers = numbers
        self._texts = [f for f in self.fields if not f.numeric]
        self._minimum = np.array([[-np.inf if f.minimum is None else f.minimum] for f in numbers])
        self._maximum = np.array([[np.inf if f.maximum is None else f.maximum] for f in numbers])
        self._whole = np.array([[f.kind == "integer"] for f in numbers], dtype=bool)
        self._nullable = np.array([[f.nullable] for f in numbers], dtype=bool)
        getter = operator.itemgetter(*(f.name for f in self.fields)) if self.fields else None
        # a record's values in field order, always as a tuple (itemgetter of one name is no tuple)
        self._fields_of = (lambda r: (getter(r),)) if len(self.fields) == 1 else getter

    @classmethod
    def from_metadata(cls, inputs: Mapping[str, Mapping[str, Any]]) -> Schema:
        return cls([Field.from_schema(name, spec) for name, spec in inputs.items()])

    def check_records(self, records: Sequence[Any]) -> tuple[dict[str, np.ndarray], list[FieldError]]:
        """JSON-like records as model input columns, and every problem found (rows from 0)."""
        shapes = [
            FieldError(row, None, f"a record must be an object, got {type(record).__name__}")
            for row, record in enumerate(records)
            if not isinstance(record, Mapping)
        ]
        if shapes:
            return {}, shapes
        try:  # one C call per record when every record has every field (the common case)
            table = [list(values) for values in zip(*map(self._fields_of, records), strict=True)]
        except KeyError:  # some record lacks a field: look each one up, marking the absent ones
            table = [[r.get(f.name, _ABSENT) for r in records] for f in self.fields]
        columns = {f.name: _from_json(f, values) for f, values in zip(self.fields, table, strict=True)}
        return self.check_columns(columns, len(records))

    def check_frame(self, frame: Any) -> tuple[dict[str, np.ndarray], list[FieldError]]:
        """A DataFrame's input columns as model input columns, and every problem found."""
        absent = [
            FieldError(None, f.name, "missing column") for f in self.fields if f.name not in frame.columns
        ]
        if absent:
            return {}, absent
        columns = {f.name: _from_frame(f, frame[f.name]) for f in self.fields}
        return self.check_columns(columns, len(frame))

    def check_columns(
        self, columns: Mapping[str, _Column], rows: int
    ) -> tuple[dict[str, np.ndarray], list[FieldError]]:
        """The one check of every rule on converted columns: the model's ``[N, 1]`` inputs and the
        problems, sorted by row."""
        errors = [
            FieldError(row, name, message) for name, c in columns.items() for row, message in c.problems
        ]
        values: dict[str, np.ndarray] = {}
        if self._numbers:
            numbers = [columns[f.name] for f in self._numbers]
            matrix = np.array([c.values for c in numbers], dtype=np.float64).reshape(len(numbers), rows)
            reported = None
            if any(c.bad is not None for c in numbers):
                reported = np.array([np.zeros(rows, bool) if c.bad is None else c.bad for c in numbers])
            errors += self._check_numbers(matrix, reported)
            # [N, 1] views of the matrix's rows: what ONNX Runtime takes, without a copy
            values = {f.name: matrix[j].reshape(-1, 1) for j, f in enumerate(self._numbers)}
        for text in self._texts:
            column = columns[text.name]
            errors += _check_text(text, column)
            values[text.name] = column.values.reshape(-1, 1)
        if errors:
            errors.sort(key=lambda e: -1 if e.row is None else e.row)
        return values, errors

    def _check_numbers(self, matrix: np.ndarray, reported: np.ndarray | None) -> list[FieldError]:
        finite = np.isfinite(matrix)  # comparisons with NaN are False, and warn of nothing
        fraction = self._whole & (matrix != np.floor(matrix)) & finite
        below = matrix < self._minimum
        above = matrix > self._maximum
        not_finite = ~finite & ~(self._nullable & np.isnan(matrix))
        bad = not_finite | fraction | below | above
        if not bad.any():
            return []
        if reported is not None:
            bad &= ~reported
        errors = []
        for j, row in zip(*np.nonzero(bad), strict=True):
            field, value = self._numbers[j], float(matrix[j, row])
            if not_finite[j, row]:
                message = f"must be finite, got {value}"
            elif fraction[j, row]:
                message = f"must be a whole number, got {value}"
            elif below[j, row]:
                message = f"{field.shown(value)} is below the minimum {field.minimum:g}"
            else:
                message = f"{field.shown(value)} is above the maximum {field.maximum:g}"
            errors.append(FieldError(int(row), field.name, message))
        return errors


def _check_text(field: Field, column: _Column) -> list[FieldError]:
    """Unknown categories (where the field refuses them) and levels the data contract does not
    allow (where unseen ones are ignored), judged once per distinct value."""
    levels = field.categories if field.categories is not None else field.allowed
    if levels is None:
        return []
    distinct = set(column.values.tolist())
    unknown = distinct - levels - {MISSING_TEXT}  # a missing value was judged by the conversion
    if not unknown:
        return []
    listed = ", ".join(sorted(levels))
    what = "unknown category {} (known: {})" if field.categories is not None else "{} is not allowed ({})"
    if field.categories is None:
        listed = f"the data contract allows: {listed}"
    return [
        FieldError(row, field.name, what.format(quoted(value), listed))
        for row, value in enumerate(column.values.tolist())
        if value in unknown and (column.bad is None or not column.bad[row])
    ]


def _from_json(field: Field, values: list[Any]) -> _Column:
    """A field's JSON values as a typed column; wrong types, absent fields and nulls reported."""
    # All of the right type (and no empty text): the values as they are; else a look at each one.
    if set(map(type, values)) <= field.json_types and (field.numeric or MISSING_TEXT not in values):
        return _Column(values if field.numeric else np.array(values, dtype=object), [])
    bad = np.zeros(len(values), dtype=bool)
    problems: list[tuple[int, str]] = []
    for row, value in enumerate(values):
        problem = _json_problem(field, value)
        if problem:
            problems.append((row, problem))
            bad[row] = True
    values = [_placeholder(field, v) for v in values]
    return _Column(values if field.numeric else np.array(values, dtype=object), problems, bad)


def _json_problem(field: Field, value: Any) -> str | None:
    if value is _ABSENT:
        return "missing field"
    if value is None or (value == MISSING_TEXT and not field.numeric):
        if field.nullable:
            return None
        return (
            "must not be null" if value is None else "must not be empty (an empty string is a missing value)"
        )
    if type(value) not in field.json_types:
        return f"must be a {'number' if field.numeric else 'string'}, got {type(value).__name__}"
    return None


def _placeholder(field: Field, value: Any) -> Any:
    """What a value stands as in the column: itself if of the right type, else a missing value."""
    if field.numeric:
        return value if type(value) in (int, float) else np.nan
    return value if type(value) is str else MISSING_TEXT


def _from_frame(field: Field, series: Any) -> _Column:
    """A DataFrame column as a typed column; nulls and text that is no number reported."""
    import pandas as pd

    if not field.numeric:  # via the distinct values: converting each row to a Python str is slow
        codes, distinct = pd.factorize(series, use_na_sentinel=True)
        levels = np.array([str(v) for v in distinct] + [MISSING_TEXT], dtype=object)
        values = levels[codes]  # code -1 (missing) picks the trailing ""
        missing = values == MISSING_TEXT
        return _missing_checked(field, values, missing, [])
    missing = series.isna().to_numpy().copy()
    problems: list[tuple[int, str]] = []
    if series.dtype == bool:
        problems = [(i, "must be a number, got bool") for i in range(len(series))]
        return _Column(np.full(len(series), np.nan), problems, np.ones(len(series), dtype=bool))
    if not pd.api.types.is_numeric_dtype(series.dtype):  # text, e.g. from a CSV file
        import pyarrow as pa
        import pyarrow.compute as pc

        try:  # Arrow's parser: fast when every value parses
            parsed = pc.cast(pa.array(series, from_pandas=True), pa.float64())
            series = pd.Series(parsed.to_numpy(zero_copy_only=False), index=series.index)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            parsed = pd.to_numeric(series.astype("str").where(~missing), errors="coerce")
            unparsed = parsed.isna().to_numpy() & ~missing
            problems = [(int(i), f"not a number: {quoted(series.iloc[i])}") for i in np.flatnonzero(unparsed)]
            values = parsed.to_numpy(np.float64, na_value=np.nan)
            return _missing_checked(field, values, missing, problems, unparsed)
    return _missing_checked(field, series.to_numpy(dtype=np.float64, na_value=np.nan), missing, problems)


def _missing_checked(
    field: Field, values: np.ndarray, missing: np.ndarray, problems: list, bad: np.ndarray | None = None
) -> _Column:
    bad = np.zeros(len(values), dtype=bool) if bad is None else bad.copy()
    if not field.nullable and missing.any():
        problems = problems + [(int(i), MISSING_IN_FRAME) for i in np.flatnonzero(missing)]
        bad |= missing
    return _Column(values, problems, bad)
