"""Export the model as a TensorFlow SavedModel that takes raw records, for teams on TF Serving.

The ``serving_default`` signature has one input per raw column (``[None]``, ``tf.float64`` for numeric
columns, ``tf.string`` for categorical and cyclical ones), applies the fitted preprocessing with
TensorFlow ops, and returns ``prediction``. So TF Serving's REST API takes the same records as
``mlpipe serve``: ``{"instances": [{"age": 24, "subject": "physics", ...}]}``. Derived formulas go
through :func:`mlpipe.features.fold_expression`, the same tree walk as training. A parity test
checks it against the Keras model and the ONNX graph. Importing this module imports TensorFlow.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mlpipe import features


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


class _RawRecordModel(tf.Module):
    def __init__(self, network: keras.Model, prep: features.Preprocessor) -> None:
        super().__init__(name="raw_record_model")
        self.network = network
        self.prep = prep
        text = set(prep.string_inputs)
        self.names = signature_names(prep.input_columns)
        self.signature = {
            self.names[c]: tf.TensorSpec([None], tf.string if c in text else tf.float64, name=self.names[c])
            for c in prep.input_columns
        }

    def preprocess(self, signature_inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        prep = self.prep
        text = set(prep.string_inputs)
        inputs = {c: signature_inputs[self.names[c]] for c in prep.input_columns}
        for c, fill in prep.fill.items():  # a missing value is NaN (numeric) or "" (string), as in ONNX
            if c in inputs:
                missing = tf.equal(inputs[c], "") if c in text else tf.math.is_nan(inputs[c])
                value = tf.constant(str(fill)) if c in text else tf.constant(float(fill), tf.float64)
                inputs[c] = tf.where(missing, value, inputs[c])
        columns = {c: inputs[c] for c in prep.input_columns if c not in text}
        values = [columns[name] for name in prep.numeric]
        values += [features.fold_expression(n, t, columns) for n, t in prep.derived.items()]
        names = [*prep.numeric, *prep.derived]
        blocks = []
        if values:
            mean = tf.constant([prep.mean[k] for k in names], tf.float64)
            scale = tf.constant([prep.scale[k] for k in names], tf.float64)
            blocks.append(tf.cast((tf.stack(values, axis=1) - mean) / scale, tf.float32))
        for name, spec in prep.cyclical.items():
            levels = list(spec["values"])
            hits = tf.cast(tf.equal(inputs[name][:, None], tf.constant([levels])), tf.float64)
            positions = tf.constant([[float(spec["values"][k])] for k in levels], tf.float64)
            position = tf.matmul(hits, positions) / tf.matmul(hits, tf.ones([len(levels), 1], tf.float64))
            angle = tf.constant(2 * math.pi, tf.float64) * position / float(spec["period"])
            blocks.append(tf.cast(tf.concat([tf.sin(angle), tf.cos(angle)], axis=1), tf.float32))
        for name, levels in prep.categories.items():
            blocks.append(tf.cast(tf.equal(inputs[name][:, None], tf.constant([levels])), tf.float32))
        return tf.concat(blocks, axis=1)

    def serve(self, inputs: dict[str, tf.Tensor]) -> dict[str, Any]:
        return {"prediction": self.network(self.preprocess(inputs), training=False)}


def export(network: keras.Model, prep: features.Preprocessor, folder: str | os.PathLike[str]) -> None:
    """Write the SavedModel into ``folder`` (which must not exist yet)."""
    module = _RawRecordModel(network, prep)
    serve = tf.function(module.serve, input_signature=[module.signature])
    tf.saved_model.save(module, os.fspath(folder), signatures={"serving_default": serve})
    _clear_fingerprint_uuid(Path(folder, "fingerprint.pb"))


def _clear_fingerprint_uuid(path: Path) -> None:
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


def feed(frame: Any, prep: features.Preprocessor) -> dict[str, tf.Tensor]:
    """Raw records of a frame as the signature's keyword arguments."""
    text = set(prep.string_inputs)
    names = signature_names(prep.input_columns)
    return {
        names[c]: tf.constant(
            frame[c].astype("str").to_numpy(dtype=object) if c in text else frame[c].to_numpy(np.float64)
        )
        for c in prep.input_columns
    }
