"""Load a packaged bundle and predict from raw records: the public Python API of serving.

>>> from mlpipe.serving.predictor import Predictor
>>> model = Predictor("models/package")            # nothing read yet
>>> model.predict_one({"age": 24, "subject": "physics", ...})   # verifies, loads, predicts
1.8312
>>> model.predict_frame(frame)                      # a DataFrame of raw records: a float array

The bundle is verified (:func:`mlpipe.bundle.layout.verify`) on first use, before anything in it is parsed;
the model runs in ONNX Runtime. Every record is checked against the bundle's input schema first: a
missing field, a value of the wrong type, NaN, a value out of range or an unknown category (when
the bundle's policy is ``error``) raises :class:`RecordError` naming the row and field. Nothing here
imports TensorFlow or unpickles anything.

Two input shapes, one schema and one check (:mod:`mlpipe.serving.schema`): JSON-like records
(``predict_one``, ``predict_records``) are taken with JSON's types (``"24"`` is not a number);
DataFrames (``predict_frame``, for CSV and Parquet files) column by column, where a numeric column
read as text is parsed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlpipe.bundle import layout as bundle
from mlpipe.core.errors import PipelineError
from mlpipe.serving.history import HistorySchema
from mlpipe.serving.prediction import Prediction
from mlpipe.serving.schema import FieldError, RecordError, Schema, summarise

__all__ = ["FieldError", "Prediction", "Predictor", "RecordError", "summarise"]


class Predictor:
    """A packaged model, verified and loaded on first use (thread-safe).

    Args:
        folder: The bundle folder written by the package stage.
        threads: ONNX Runtime's intra-op threads (default: one per core).
        trusted_key: An Ed25519 public key (or a PEM file's path or text): the bundle must be
            signed by it (:mod:`mlpipe.bundle.signing`); an unsigned one is refused.
    """

    def __init__(
        self, folder: str | os.PathLike[str], threads: int | None = None, trusted_key: Any = None
    ) -> None:
        self.folder = os.fspath(folder)
        self.threads = threads
        if trusted_key is not None and not hasattr(trusted_key, "verify"):
            from mlpipe.bundle import signing

            trusted_key = signing.public_key(trusted_key)
        self.trusted_key = trusted_key
        self._lock = threading.Lock()
        self._verified: bundle.Verified | None = None
        self._session: Any = None
        self._schema = Schema([])
        self._history: HistorySchema | None = None
        self.load_error: str | None = None

    @classmethod
    def from_verified(cls, verified: bundle.Verified, threads: int | None = None) -> Predictor:
        """A predictor over a bundle that was checked already (the package stage's own check)."""
        predictor = cls(verified.folder, threads)
        predictor._load(verified)
        return predictor

    def fresh(self, folder: str | os.PathLike[str] | None = None) -> Predictor:
        """A new, unloaded predictor with the same settings, over ``folder`` (default: this one's),
        to load a changed bundle."""
        return Predictor(self.folder if folder is None else folder, self.threads, self.trusted_key)

    @property
    def ready(self) -> bool:
        """Whether the bundle has been verified and loaded."""
        return self._session is not None

    def load(self) -> Predictor:
        """Verify and load the bundle now (otherwise the first prediction does).

        Raises:
            mlpipe.bundle.layout.BundleError: if the bundle fails verification; every later call raises too.
        """
        if self._session is None:
            with self._lock:
                if self._session is None:
                    if self.load_error is not None:
                        raise bundle.BundleError(self.load_error)
                    try:
                        self._load(bundle.verify(self.folder, self.trusted_key))
                    except PipelineError as exc:
                        self.load_error = str(exc)
                        raise
                    except Exception as exc:  # consistently hashed but broken: a refusal, not a crash
                        self.load_error = f"{self.folder}: cannot be loaded: {type(exc).__name__}: {exc}"[
                            :500
                        ]
                        raise bundle.BundleError(self.load_error) from exc
        return self

    def _load(self, verified: bundle.Verified) -> None:
        import onnxruntime as ort

        bundle.check_graph(verified.model)
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        session = ort.InferenceSession(verified.model, options, providers=["CPUExecutionProvider"])
        inputs = verified.metadata["inputs"]
        reads = {i.name: i.type for i in session.get_inputs()}
        history = verified.metadata.get("history")
        if history is not None:  # an early-warning model: static fields and a weekly history
            self._history = history_schema(verified.metadata, reads)
        else:
            self._schema = Schema.from_metadata(inputs)
        if history is None and set(reads) != set(inputs):
            raise bundle.BundleError("the ONNX model's inputs do not match the metadata's input schema")
        for name, spec in inputs.items() if history is None else ():  # a type rewritten in the metadata
            if reads[name] != ("tensor(string)" if spec["type"] == "string" else "tensor(double)"):
                raise bundle.BundleError(
                    f"{bundle.METADATA}: input {name!r} is declared {spec['type']},"
                    f" but {bundle.MODEL} reads {reads[name]}"
                )
        meta, output = verified.metadata, verified.metadata["output"]
        # What every prediction of this bundle carries, read once (not per call)
        self._labels = (
            str(meta["name"]),
            str(meta["version"]),
            output.get("classes"),
            output.get("threshold"),
        )
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
        """Predictions for JSON-like records, checked with JSON's types.

        Raises:
            RecordError: listing every bad row and field.
        """
        self.load()
        if self._history is not None:
            return self._run(self._history.parse(records), len(records))
        columns, errors = self._schema.check_records(records)
        if errors:
            raise RecordError(errors)
        return self._run(columns, len(records))

    @property
    def history(self) -> HistorySchema | None:
        """What an early-warning model reads (static fields, channels, weeks); None for a flat one."""
        self.load()
        return self._history

    def check_frame(self, frame: Any) -> tuple[dict[str, np.ndarray], list[FieldError]]:
        """A DataFrame's input columns as model inputs, and every problem found (rows from 0)."""
        self.load()
        if self._history is not None:
            raise PipelineError(
                f"{self.name} reads a weekly history: score records with one, or an activity table"
                " with `mlpipe predict --as-of`"
            )
        return self._schema.check_frame(frame)

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
        """Predictions for ``[N, 1]`` columns that :meth:`check_frame` returned, restricted to valid
        rows."""
        self.load()
        return self._run(columns, rows)

    @property
    def output_width(self) -> int:
        """Columns of the model's output: the number of classes for multiclass, else 1."""
        output = self.metadata["output"]
        return len(output.get("classes") or ()) if self.metadata["task"] == "multiclass" else 1

    def as_prediction(self, values: np.ndarray) -> Prediction:
        """Wrap raw output values (e.g. assembled from several calls) with this model's classes."""
        self.load()
        return Prediction(values, *self._labels)

    def _run(self, columns: Mapping[str, np.ndarray], rows: int) -> Prediction:
        if rows == 0:
            width = self.output_width
            return self.as_prediction(np.empty((0, width) if width > 1 else 0, np.float64))
        output = self._session.run(None, dict(columns))[0]  # the schema's [N, 1] columns
        if not np.isfinite(output).all():  # the graph refused rows (the feature plan's policies)
            bad = np.flatnonzero(~np.isfinite(output).all(axis=1))
            raise RecordError(
                [
                    FieldError(int(i), None, "the model refused the row (a derived feature is not finite?)")
                    for i in bad
                ]
            )
        values = output.astype(np.float64)
        return Prediction(values.reshape(-1) if values.shape[1] == 1 else values, *self._labels)


def history_schema(metadata: dict[str, Any], reads: dict[str, str]) -> HistorySchema:
    """An early-warning bundle's :class:`HistorySchema`, checked against its graph's inputs.

    Raises:
        mlpipe.bundle.layout.BundleError: if the graph does not read the static row, the history
            and its mask.
    """
    wanted = {"static": "tensor(double)", "sequence": "tensor(double)", "mask": "tensor(bool)"}
    if reads != wanted:
        raise bundle.BundleError(f"{bundle.MODEL}: an early-warning model reads {wanted}, this one {reads}")
    history = metadata["history"]
    return HistorySchema(tuple(metadata["inputs"]), tuple(history["channels"]), int(history["weeks"]))


class StaleBundle(PipelineError):
    """A bundle folder that holds another version than the one a task was told to use."""

    def __init__(self, folder: str, found: str, wanted: str) -> None:
        super().__init__(f"{folder} holds {found}, not {wanted}")
        self.folder, self.found, self.wanted = folder, found, wanted


_shared: dict[tuple[str, bytes | None], Predictor] = {}
_shared_lock = threading.Lock()


def shared(
    folder: str, version: str, threads: int | None = None, trusted_key: bytes | None = None
) -> Predictor:
    """This process's predictor of ``folder``, verified (against ``trusted_key``, a public key's
    PEM) and loaded once, then reused: for worker processes that are told with each task which
    version to score with (Dask workers, the server's scoring processes). A folder whose version
    changed is loaded again.

    Raises:
        StaleBundle: if the folder holds another version than ``version``.
        mlpipe.bundle.layout.BundleError: if it fails verification.
    """
    with _shared_lock:
        predictor = _shared.get((folder, trusted_key))
        if predictor is None or predictor.version != version:
            predictor = Predictor(folder, threads=threads, trusted_key=trusted_key).load()
            _shared[(folder, trusted_key)] = predictor
    if predictor.version != version:
        raise StaleBundle(folder, predictor.version, version)
    return predictor
