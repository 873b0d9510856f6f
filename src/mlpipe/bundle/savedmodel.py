"""Export the model as a TensorFlow SavedModel that takes raw records, for teams on TF Serving.

The ``serving_default`` signature has one input per raw column (``[None]``, ``tf.float64`` for numeric
columns, ``tf.string`` for categorical and cyclical ones), applies the fitted preprocessing with
TensorFlow ops, and returns ``prediction``. So TF Serving's REST API takes the same records as
``mlpipe serve``: ``{"instances": [{"age": 24, "subject": "physics", ...}]}``. The preprocessing is
the feature plan lowered by :func:`mlpipe.features.plan.lower` with TensorFlow ops (:class:`TensorFlowOps`),
the same walk as training and the ONNX graph; a missing value is NaN or ``""``, and a refused row's
output is NaN. The package stage's gate checks it against the Keras model. Importing this module
imports TensorFlow.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from mlpipe.features import formulas, plan, preprocessor


def signature_names(columns: list[str]) -> dict[str, str]:
    """Column -> its signature input name: TensorFlow allows only ``[A-Za-z0-9_.-/]`` (a column
    ``"mean radius"`` becomes ``mean_radius``), unique, not starting with ``_``, ``-`` or ``/``."""
    names: dict[str, str] = {}
    for column in columns:
        name = re.sub(r"[^A-Za-z0-9_.\-/]", "_", column)
        name = name if re.match(r"[A-Za-z0-9.]", name) else f"x{name}"
        while name in names.values():
            name += "_"
        names[column] = name
    return names


class TensorFlowOps:
    """The feature plan's primitives (:class:`mlpipe.features.plan.Ops`) as TensorFlow ops."""

    def const(self, value: Any, dtype: str) -> tf.Tensor:
        return tf.constant(value, tf.string if dtype == "string" else tf.float64)

    def is_nan(self, x: tf.Tensor) -> tf.Tensor:
        return tf.math.is_nan(x)

    def not_finite(self, x: tf.Tensor) -> tf.Tensor:
        return tf.logical_not(tf.math.is_finite(x))

    def equal(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        return tf.equal(x, y)

    def any_row(self, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_any(x, axis=1, keepdims=True)

    def where(self, condition: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        return tf.where(condition, x, y)

    def as_float64(self, x: tf.Tensor) -> tf.Tensor:
        return tf.cast(x, tf.float64)

    def as_float32(self, x: tf.Tensor) -> tf.Tensor:
        return tf.cast(x, tf.float32)

    def matmul(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, y)

    def sin(self, x: tf.Tensor) -> tf.Tensor:
        return tf.sin(x)

    def cos(self, x: tf.Tensor) -> tf.Tensor:
        return tf.cos(x)

    def concat(self, parts: list[tf.Tensor]) -> tf.Tensor:
        return tf.concat(parts, axis=1)

    def log1p(self, x: tf.Tensor) -> tf.Tensor:
        return tf.math.log1p(x)

    def maximum(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        return tf.maximum(x, y)

    def expand_last(self, x: tf.Tensor) -> tf.Tensor:
        return x[..., None]


class _RawRecordModel(tf.Module):
    def __init__(self, network: keras.Model, prep: preprocessor.Preprocessor) -> None:
        super().__init__(name="raw_record_model")
        self.network = network
        self.plan = preprocessor.plan_of(prep)
        self.names = signature_names([i.name for i in self.plan.inputs])
        self.signature = {
            self.names[i.name]: tf.TensorSpec(
                [None], tf.string if i.kind == plan.TEXT else tf.float64, name=self.names[i.name]
            )
            for i in self.plan.inputs
        }

    def serve(self, inputs: dict[str, tf.Tensor]) -> dict[str, Any]:
        ops = TensorFlowOps()
        columns = {i.name: inputs[self.names[i.name]][:, None] for i in self.plan.inputs}
        lowered = plan.lower(self.plan, ops, columns, formulas.fold)
        prediction = self.network(lowered.features, training=False)
        refused = plan.refused_rows(lowered, ops)
        if refused is not None:  # a refused row's output is NaN, as the plan says
            prediction = tf.where(refused, tf.constant(math.nan, prediction.dtype), prediction)
        return {"prediction": prediction}


def export(network: keras.Model, prep: preprocessor.Preprocessor, folder: str | os.PathLike[str]) -> None:
    """Write the SavedModel into ``folder`` (which must not exist yet)."""
    module = _RawRecordModel(network, prep)
    serve = tf.function(module.serve, input_signature=[module.signature])
    tf.saved_model.save(module, os.fspath(folder), signatures={"serving_default": serve})
    clear_fingerprint_uuid(Path(folder, "fingerprint.pb"))


def clear_fingerprint_uuid(path: Path) -> None:
    """Drop the random id TensorFlow writes into ``fingerprint.pb``: the rest is content hashes.

    Without this the export differs on every run, and so would the bundle's ``dvc.lock`` hash.
    """
    from tensorflow.core.protobuf import fingerprint_pb2

    fingerprint = fingerprint_pb2.FingerprintDef.FromString(path.read_bytes())
    fingerprint.ClearField("uuid")
    path.write_bytes(fingerprint.SerializeToString(deterministic=True))


def load_signature(folder: str | os.PathLike[str]) -> Any:
    """The ``serving_default`` function of an exported SavedModel (for tests and TF users)."""
    return tf.saved_model.load(os.fspath(folder)).signatures["serving_default"]


def feed(frame: Any, prep: preprocessor.Preprocessor) -> dict[str, tf.Tensor]:
    """Raw records of a frame as the signature's keyword arguments (nulls as the plan's sentinels)."""
    inputs = preprocessor.plan_inputs(frame, preprocessor.plan_of(prep))
    names = signature_names(list(inputs))
    return {names[c]: tf.constant(values.reshape(-1)) for c, values in inputs.items()}
