"""Load a packaged bundle and predict from raw records: the public Python API of serving.

>>> from mlpipe.predictor import Predictor
>>> model = Predictor("models/package")            # nothing read yet
>>> model.predict_one({"age": 24, "subject": "physics", ...})   # verifies, loads, predicts
1.8312
>>> model.predict_frame(frame)                      # a DataFrame of raw records: a float array

The bundle is verified (:func:`mlpipe.bundle.verify`) on first use, before anything in it is parsed;
the model runs in ONNX Runtime. Every record is checked against the bundle's input schema first: a
missing field, a value of the wrong type, NaN, a value out of range or an unknown category (when
the bundle's policy is ``error``) raises :class:`RecordError` naming the row and field. Nothing here
imports TensorFlow or unpickles anything.

Two input shapes, one schema: JSON-like records (``predict_one``, ``predict_records``) are checked
value by value with JSON's types (``"24"`` is not a number); DataFrames (``predict_frame``, for CSV
and Parquet files) are checked column by column, and a numeric column read as text is parsed.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpipe import bundle
from mlpipe.errors import PipelineError

MAX_REPORTED = 20
SMALL_BATCH = 16


@dataclass(frozen=True)
class FieldError:
    """One problem with one record: ``row`` counts from 0 within the batch (None: every row)."""

    row: int | None
    field: str | None
    message: str

    def located(self, where: str) -> str:
        """The problem with its place spelled out, e.g. ``line 4, field 'age': ...``."""
        return f"{where}, field {self.field!r}: {self.message}" if self.field else f"{where}: {self.message}"

    def __str__(self) -> str:
        return self.located("all rows" if self.row is None else f"row {self.row}")


def summarise(problems: Sequence[str]) -> str:
    """The first problems joined on one line, and how many more there are."""
    more = len(problems) - MAX_REPORTED
    return "; ".join(problems[:MAX_REPORTED]) + (f"; and {more} more" if more > 0 else "")


class RecordError(PipelineError):
    """Records that do not match the bundle's input schema."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__(summarise([str(e) for e in self.errors]))


_MISSING = object()


@dataclass(frozen=True)
class Field:
    """One input column of the schema, with its checks for single values and for whole columns."""

    name: str
    kind: str  # "number", "integer" or "string"
    minimum: float | None = None
    maximum: float | None = None
    categories: frozenset[str] | None = None  # None: any string is accepted
    nullable: bool = False  # a null is filled by the model (imputation), so it is accepted

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
        )

    def _array(self, values: list[Any]) -> np.ndarray:
        if self.numeric:
            return np.array(values, dtype=np.float64)  # None becomes NaN
        return np.array(["" if v is None else v for v in values] if self.nullable else values, dtype=object)

    @property
    def numeric(self) -> bool:
        return self.kind != "string"

    def check_value(self, value: Any) -> str | None:
        """Why a JSON value is not valid for this field, or None."""
        if value is _MISSING:
            return "missing field"
        if value is None:
            return None if self.nullable else "must not be null"
        if not self.numeric:
            if type(value) is not str:
                return f"must be a string, got {type(value).__name__}"
            if self.categories is not None and value not in self.categories:
                return f"unknown category {value!r} (known: {', '.join(sorted(self.categories))})"
            return None
        if type(value) not in (int, float):
            return f"must be a number, got {type(value).__name__}"
        if self.nullable and math.isnan(value):
            return None
        if not math.isfinite(value):
            return f"must be finite, got {value}"
        if self.kind == "integer" and value != int(value):
            return f"must be a whole number, got {value}"
        return self._range(value)

    def _range(self, value: float) -> str | None:
        if self.minimum is not None and value < self.minimum:
            return f"{value} is below the minimum {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"{value} is above the maximum {self.maximum:g}"
        return None

    def check_array(self, array: np.ndarray) -> list[tuple[int, str]]:
        """``(row, problem)`` for each bad value of an already-typed column (float64 or str objects)."""
        if not self.numeric:
            allowed = (
                self.categories | {""} if self.categories is not None and self.nullable else self.categories
            )
            unknown = set(array.tolist()) - allowed if allowed is not None else ()
            rows = [i for i, v in enumerate(array.tolist()) if v in unknown] if unknown else []
            return [(i, self.check_value(array[i]) or "") for i in rows]
        with np.errstate(invalid="ignore"):
            invalid = ~np.isfinite(array)
            if self.nullable:
                invalid &= ~np.isnan(array)
            if self.kind == "integer":
                invalid |= array != np.floor(array)
            if self.minimum is not None:
                invalid |= array < self.minimum
            if self.maximum is not None:
                invalid |= array > self.maximum
        problems = []
        for i in np.flatnonzero(invalid):
            value = float(array[i])
            problems.append((int(i), self.check_value(int(value) if value.is_integer() else value) or ""))
        return problems

    def check_list(self, values: list[Any]) -> tuple[np.ndarray | None, list[tuple[int, str]]]:
        """A column of JSON values as the model's input array, and ``(row, problem)`` pairs."""
        allowed = {int, float} if self.numeric else {str}
        allowed |= {type(None)} if self.nullable else set()
        # Many values of the right types: vectorised checks. A few records (plain Python beats
        # numpy's per-call overhead there) or a wrong type somewhere: value by value.
        if len(values) > SMALL_BATCH and set(map(type, values)) <= allowed:
            array = self._array(values)
            return array, self.check_array(array)
        problems = [(row, p) for row, v in enumerate(values) if (p := self.check_value(v))]
        return (self._array(values) if not problems else None), problems

    def check_column(self, values: Any) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """A pandas Series as the model's input array, and ``(row, problem)`` pairs."""
        import pandas as pd

        if not self.numeric:  # via the distinct values: converting each row to a Python str is slow
            codes, distinct = pd.factorize(values, use_na_sentinel=True)
            levels = np.array([str(v) for v in distinct] + [""], dtype=object)
            array = levels[codes]  # code -1 (missing) picks the trailing ""
            problems = [] if self.nullable else [(int(i), "missing value") for i in np.flatnonzero(codes < 0)]
            bad_levels = [code for code, _ in self.check_array(levels[:-1])]
            if bad_levels:
                rows = np.flatnonzero(np.isin(codes, bad_levels))
                problems += [(int(i), self.check_value(array[i]) or "") for i in rows]
            return array, sorted(problems)
        missing = values.isna().to_numpy().copy()
        problems = [] if self.nullable else [(int(i), "missing value") for i in np.flatnonzero(missing)]
        if values.dtype == bool:
            problems += [(i, "must be a number, got bool") for i in range(len(values)) if not missing[i]]
            missing[:] = True
        elif not pd.api.types.is_numeric_dtype(values.dtype):  # text, e.g. from a CSV file
            import pyarrow as pa
            import pyarrow.compute as pc

            try:  # Arrow's parser: fast when every value parses
                parsed = pc.cast(pa.array(values, from_pandas=True), pa.float64())
                values = pd.Series(parsed.to_numpy(zero_copy_only=False), index=values.index)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                parsed = pd.to_numeric(values.astype("str").where(~missing), errors="coerce")
                bad = parsed.isna().to_numpy() & ~missing
                problems += [(int(i), f"not a number: {values.iloc[i]!r}") for i in np.flatnonzero(bad)]
                missing |= bad
                values = parsed
        array = values.to_numpy(dtype=np.float64, na_value=np.nan)
        return array, problems + [(i, p) for i, p in self.check_array(array) if not missing[i]]


@dataclass(frozen=True)
class Prediction:
    """A batch's predictions and the model that made them.

    ``values`` is the model's output: the predicted number (regression), the probability of the
    last class (binary), or one probability per class (multiclass, ``(n, k)``).
    """

    values: np.ndarray
    model: str
    version: str
    classes: list[Any] | None = None
    threshold: float | None = None

    @property
    def labels(self) -> list[Any]:
        """The predicted class of each row (classification only): binary at the threshold, else argmax."""
        if self.classes is None:
            raise ValueError("a regression model predicts numbers, not labels")
        if self.values.ndim == 1:
            picks = (self.values >= (self.threshold if self.threshold is not None else 0.5)).astype(int)
        else:
            picks = self.values.argmax(axis=1)
        return [self.classes[i] for i in picks.tolist()]

    def probabilities(self) -> np.ndarray:
        """``(n, k)`` class probabilities (classification only)."""
        return np.column_stack([1 - self.values, self.values]) if self.values.ndim == 1 else self.values

    def answers(self) -> list[dict[str, Any]]:
        """One JSON-ready answer per row: ``{"prediction": x}``, or ``{"label": ..., "probabilities":
        {class: p}}`` for classification."""
        if self.classes is None:
            return [{"prediction": v} for v in self.values.tolist()]
        names = [str(c) for c in self.classes]
        return [
            {"label": label, "probabilities": dict(zip(names, row, strict=True))}
            for label, row in zip(self.labels, self.probabilities().tolist(), strict=True)
        ]


class Predictor:
    """A packaged model, verified and loaded on first use (thread-safe).

    Args:
        folder: The bundle folder written by the package stage.
        threads: ONNX Runtime's intra-op threads (default: one per core).
    """

    def __init__(self, folder: str | os.PathLike[str], threads: int | None = None) -> None:
        self.folder = os.fspath(folder)
        self._threads = threads
        self._lock = threading.Lock()
        self._verified: bundle.Verified | None = None
        self._session: Any = None
        self._fields: list[Field] = []
        self.load_error: str | None = None

    @classmethod
    def from_verified(cls, verified: bundle.Verified, threads: int | None = None) -> Predictor:
        """A predictor over a bundle that was checked already (the package stage's own check)."""
        predictor = cls(verified.folder, threads)
        predictor._load(verified)
        return predictor

    @property
    def ready(self) -> bool:
        """Whether the bundle has been verified and loaded."""
        return self._session is not None

    def load(self) -> Predictor:
        """Verify and load the bundle now (otherwise the first prediction does).

        Raises:
            mlpipe.bundle.BundleError: if the bundle fails verification; every later call raises too.
        """
        if self._session is None:
            with self._lock:
                if self._session is None:
                    if self.load_error is not None:
                        raise bundle.BundleError(self.load_error)
                    try:
                        self._load(bundle.verify(self.folder))
                    except PipelineError as exc:
                        self.load_error = str(exc)
                        raise
        return self

    def _load(self, verified: bundle.Verified) -> None:
        import onnxruntime as ort

        _check_graph(verified.model)
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        if self._threads:
            options.intra_op_num_threads = self._threads
        options.log_severity_level = 3
        session = ort.InferenceSession(verified.model, options, providers=["CPUExecutionProvider"])
        inputs = verified.metadata["inputs"]
        self._fields = [Field.from_schema(name, spec) for name, spec in inputs.items()]
        expected = {i.name for i in session.get_inputs()}
        if expected != set(inputs):
            raise bundle.BundleError("the ONNX model's inputs do not match the metadata's input schema")
        self._verified = verified
        self._session = session

    @property
    def metadata(self) -> dict[str, Any]:
        """The bundle's metadata (loads the bundle)."""
        self.load()
        assert self._verified is not None
        return self._verified.metadata

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    def predict_one(self, record: Mapping[str, Any]) -> Any:
        """One prediction from one JSON-like record (extra fields are ignored): the number
        (regression) or the predicted class (classification; :meth:`predict_records` gives the
        probabilities).

        Raises:
            RecordError: naming the field, if the record does not match the schema.
        """
        result = self.predict_records([record])
        return result.labels[0] if result.classes is not None else float(result.values[0])

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> Prediction:
        """Predictions for JSON-like records, checked value by value.

        Raises:
            RecordError: listing every bad row and field.
        """
        self.load()
        errors: list[FieldError] = []
        columns: dict[str, np.ndarray] = {}
        for row, record in enumerate(records):
            if not isinstance(record, Mapping):
                errors.append(
                    FieldError(row, None, f"a record must be an object, got {type(record).__name__}")
                )
        if errors:
            raise RecordError(errors)
        for field in self._fields:
            array, problems = field.check_list([r.get(field.name, _MISSING) for r in records])
            errors += [FieldError(row, field.name, message) for row, message in problems]
            if array is not None:
                columns[field.name] = array
        if errors:
            raise RecordError(sorted(errors, key=lambda e: e.row or 0))
        return self._run(columns, len(records))

    def check_frame(self, frame: Any) -> tuple[dict[str, np.ndarray], list[FieldError]]:
        """A DataFrame's input columns as model inputs, and every problem found (rows from 0)."""
        self.load()
        errors: list[FieldError] = []
        columns: dict[str, np.ndarray] = {}
        for field in self._fields:
            if field.name not in frame.columns:
                errors.append(FieldError(None, field.name, "missing column"))
                continue
            columns[field.name], problems = field.check_column(frame[field.name])
            errors += [FieldError(row, field.name, message) for row, message in problems]
        return columns, sorted(errors, key=lambda e: -1 if e.row is None else e.row)

    def predict_frame(self, frame: Any) -> Prediction:
        """Predictions for a DataFrame of raw records (extra columns are ignored).

        Raises:
            RecordError: listing every bad row and field.
        """
        columns, errors = self.check_frame(frame)
        if errors:
            raise RecordError(errors)
        return self._run(columns, len(frame))

    def predict_columns(self, columns: Mapping[str, np.ndarray], rows: int) -> Prediction:
        """Predictions for columns that :meth:`check_frame` returned, restricted to valid rows."""
        self.load()
        return self._run(columns, rows)

    @property
    def output_width(self) -> int:
        """Columns of the model's output: the number of classes for multiclass, else 1."""
        output = self.metadata["output"]
        return len(output.get("classes") or ()) if self.metadata["task"] == "multiclass" else 1

    def as_prediction(self, values: np.ndarray) -> Prediction:
        """Wrap raw output values (e.g. assembled from several calls) with this model's classes."""
        output = self.metadata["output"]
        return Prediction(values, self.name, self.version, output.get("classes"), output.get("threshold"))

    def _run(self, columns: Mapping[str, np.ndarray], rows: int) -> Prediction:
        width = self.output_width
        if rows == 0:
            return self.as_prediction(np.empty((0, width) if width > 1 else 0, np.float64))
        feed = {name: np.asarray(values).reshape(-1, 1) for name, values in columns.items()}
        values = self._session.run(None, feed)[0].astype(np.float64)
        values = values.reshape(-1) if values.shape[1] == 1 else values
        bad = np.flatnonzero(~np.isfinite(values).reshape(len(values), -1).all(axis=1))
        if len(bad):
            raise RecordError(
                [
                    FieldError(int(i), None, "the prediction is not finite (a derived feature divides by 0?)")
                    for i in bad
                ]
            )
        return self.as_prediction(values)


def _check_graph(model: bytes) -> None:
    """Refuse an ONNX graph that needs custom operators or reads data from other files."""
    import onnx

    proto = onnx.load_from_string(model)
    domains = {o.domain for o in proto.opset_import} | {n.domain for n in proto.graph.node}
    foreign = sorted(d for d in domains if d not in ("", "ai.onnx"))
    if foreign or proto.functions:
        raise bundle.BundleError(
            f"{bundle.MODEL}: uses operators outside standard ONNX ({', '.join(foreign)})"
        )
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise bundle.BundleError(f"{bundle.MODEL}: reads tensors from external files")
