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

from mlpipe.core.errors import PipelineError
from mlpipe.core.params import TrainParams

ARCHITECTURE = "model.json"
WEIGHTS = "model.weights.h5"


def output_spec(task: str, n_classes: int) -> tuple[int, str | None, str, list[str]]:
    """Width, activation, loss and metrics of the output layer for a task."""
    if task == "regression":
        return 1, None, "mse", ["mae"]
    if task == "binary":
        return 1, "sigmoid", "binary_crossentropy", ["accuracy"]
    return n_classes, "softmax", "sparse_categorical_crossentropy", ["accuracy"]


def build_model(
    n_features: int, params: TrainParams, task: str = "regression", n_classes: int = 1
) -> keras.Model:
    """A compiled, untrained MLP: Dense blocks with dropout, then the task's output layer.

    Args:
        n_features: Width of the preprocessed input.
        params: Layer sizes, dropout rates, activation, learning rate and weight decay (AdamW; 0
            is plain Adam).
        task: ``regression`` (linear output, MSE), ``binary`` (sigmoid, cross-entropy) or
            ``multiclass`` (softmax over ``n_classes``, cross-entropy).
        n_classes: Number of classes (multiclass only).
    """
    width, activation, loss, metrics = output_spec(task, n_classes)
    inputs = keras.Input(shape=(n_features,), name="features")
    x = inputs
    for i, (units, rate) in enumerate(zip(params.units, params.dropout, strict=True)):
        x = keras.layers.Dense(units, activation=params.activation, name=f"dense_{i}")(x)
        if rate > 0:
            x = keras.layers.Dropout(rate, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(width, activation=activation, name="prediction")(x)
    model = keras.Model(inputs, outputs, name="mlp")
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=params.learning_rate, weight_decay=params.weight_decay, name="adamw"
        ),
        loss=loss,
        metrics=metrics,
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
    """Outputs as float32, in batches, without Keras' per-call overhead.

    Returns:
        Shape ``(n,)`` for a one-wide output (regression value, binary positive-class probability),
        ``(n, k)`` for class probabilities.
    """
    width = model.outputs[0].shape[-1]
    out = [np.asarray(model(x[i : i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    values = np.concatenate(out).astype(np.float32) if out else np.empty((0, width), np.float32)
    return values.reshape(-1) if width == 1 else values


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
