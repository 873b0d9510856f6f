"""The dual-branch early-warning network: a static branch over a student's attributes and a
recurrent branch (GRU or LSTM) over the weekly sequence of activity, merged before the output.

The sequence's mask is an input of its own, not a padding value: a week the student was enrolled
but did nothing is all zeros and still a week, so ``keras.layers.Masking`` (which drops zero
steps) would be wrong. The channels are scaled by :class:`SequenceScale` (``log1p`` then
standardised on the training split), fitted by the preprocess stage and stored in its JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpipe.core.history_params import SequenceTrainParams
from mlpipe.features.point_in_time import SequenceScale

__all__ = ["SequenceScale", "SequenceSpec", "build", "fit"]


@dataclass(frozen=True)
class SequenceSpec:
    """The network's shape and training (what params.yaml's ``train.sequence`` will hold)."""

    cell: str = "gru"  # gru or lstm
    units: int = 32  # the recurrent state
    static_units: int = 16  # the static branch's layer
    merged_units: int = 16  # the layer after the merge
    learning_rate: float = 0.003
    batch_size: int = 256
    epochs: int = 60  # an upper bound: early stopping on the validation split decides
    patience: int = 5

    @classmethod
    def from_params(cls, train: SequenceTrainParams) -> SequenceSpec:
        """The spec of an early-warning params file's ``train`` section."""
        return cls(
            train.sequence.cell,
            train.sequence.units,
            train.static_units,
            train.merged_units,
            train.learning_rate,
            train.batch_size,
            train.epochs,
            train.patience,
        )


def build(n_static: int, weeks: int, channels: int, spec: SequenceSpec, seed: int) -> Any:
    """A compiled, untrained network: inputs ``static`` ``(n_static,)``, ``sequence``
    ``(weeks, channels)`` and ``mask`` ``(weeks,)``; output the probability of dropping out."""
    import keras

    keras.utils.set_random_seed(seed)
    static = keras.Input((n_static,), name="static")
    sequence = keras.Input((weeks, channels), name="sequence")
    mask = keras.Input((weeks,), name="mask", dtype="bool")
    cells = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}
    if spec.cell not in cells:
        raise ValueError(f"train.sequence.cell {spec.cell!r}: use gru or lstm")
    recurrent = cells[spec.cell](spec.units, name=spec.cell)(sequence, mask=mask)
    dense = keras.layers.Dense(spec.static_units, activation="relu", name="static_dense")(static)
    merged = keras.layers.Concatenate(name="merge")([dense, recurrent])
    hidden = keras.layers.Dense(spec.merged_units, activation="relu", name="merged_dense")(merged)
    output = keras.layers.Dense(1, activation="sigmoid", name="probability")(hidden)
    model = keras.Model([static, sequence, mask], output)
    model.compile(optimizer=keras.optimizers.Adam(spec.learning_rate), loss="binary_crossentropy")
    return model


def fit(
    model: Any, train: dict[str, np.ndarray], y: np.ndarray, val: dict, y_val: np.ndarray, spec: SequenceSpec
) -> list[float]:
    """Train with early stopping on the validation loss, keeping the best weights; returns the
    validation loss of each epoch."""
    import keras

    stop = keras.callbacks.EarlyStopping(patience=spec.patience, restore_best_weights=True)
    history = model.fit(
        train,
        y.astype(np.float32),
        validation_data=(val, y_val.astype(np.float32)),
        batch_size=spec.batch_size,
        epochs=spec.epochs,
        callbacks=[stop],
        shuffle=True,
        verbose=0,
    )
    return [float(v) for v in history.history["val_loss"]]


def predict(model: Any, inputs: dict[str, np.ndarray], batch_size: int = 8192) -> np.ndarray:
    """The probabilities ``(n,)`` as float64, in batches, without Keras' per-call overhead."""
    n = len(inputs["mask"])
    out = [
        np.asarray(model({k: v[i : i + batch_size] for k, v in inputs.items()}, training=False))
        for i in range(0, n, batch_size)
    ]
    return np.concatenate(out).reshape(-1).astype(np.float64) if out else np.empty(0)
