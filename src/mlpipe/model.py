"""The Keras network: a factory that returns it compiled and untrained, and byte-stable save/load.

Saved as two files: the architecture as Keras JSON config and the weights as ``.weights.h5``.
Unlike a ``.keras`` zip, neither embeds a save timestamp, so retraining with the same seed gives
identical bytes and an identical ``dvc.lock``; and neither holds code that runs on load.
Importing this module imports TensorFlow (seconds): only ``train`` and ``evaluate`` use it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np

from mlpipe.errors import PipelineError
from mlpipe.params import TrainParams

ARCHITECTURE = "model.json"
WEIGHTS = "model.weights.h5"


def build_model(n_features: int, params: TrainParams) -> keras.Model:
    """A compiled, untrained MLP regressor: Dense blocks with dropout, then a linear output.

    Args:
        n_features: Width of the preprocessed input.
        params: Layer sizes, dropout rates, activation, learning rate and weight decay (AdamW; 0
            is plain Adam).
    """
    inputs = keras.Input(shape=(n_features,), name="features")
    x = inputs
    for i, (units, rate) in enumerate(zip(params.units, params.dropout, strict=True)):
        x = keras.layers.Dense(units, activation=params.activation, name=f"dense_{i}")(x)
        if rate > 0:
            x = keras.layers.Dropout(rate, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(1, name="prediction")(x)
    model = keras.Model(inputs, outputs, name="study_time")
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=params.learning_rate, weight_decay=params.weight_decay, name="adamw"
        ),
        loss="mse",
        metrics=["mae"],
    )
    return model


def save_model(model: keras.Model, folder: str | os.PathLike[str]) -> None:
    """Write the architecture and weights into ``folder`` (which must exist)."""
    Path(folder, ARCHITECTURE).write_text(
        json.dumps(json.loads(model.to_json()), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    model.save_weights(Path(folder, WEIGHTS))


def load_model(folder: str | os.PathLike[str]) -> keras.Model:
    """Rebuild a model saved by :func:`save_model` (no optimizer state; for inference)."""
    config = Path(folder, ARCHITECTURE).read_text(encoding="utf-8")
    model = keras.models.model_from_json(config)
    model.load_weights(Path(folder, WEIGHTS))
    return model


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Predictions as a flat float32 array, in batches, without Keras' per-call overhead."""
    out = [np.asarray(model(x[i : i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(out).reshape(-1).astype(np.float32) if out else np.empty(0, np.float32)


def dense_weights(model: keras.Model) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Each Dense layer's ``(kernel, bias, activation)``, input to output, for export.

    Raises:
        PipelineError: naming the layer, for any layer other than Input, Dense or Dropout (a Lambda
            layer, for one, holds Python code and cannot be exported safely).
    """
    layers = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("InputLayer", "Dropout"):
            continue
        if kind != "Dense":
            raise PipelineError(
                f"layer {layer.name!r} is a {kind}: only Dense and Dropout layers can be packaged"
            )
        kernel, bias = (np.asarray(w, dtype=np.float32) for w in layer.get_weights())
        layers.append((kernel, bias, layer.get_config()["activation"]))
    return layers
