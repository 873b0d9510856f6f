"""The dual-branch early-warning network: a static branch over a student's attributes and a
recurrent branch (GRU or LSTM) over the weekly sequence of activity, merged before the output.

The sequence's mask is an input of its own, not a padding value: a week the student was enrolled
but did nothing is all zeros and still a week, so ``keras.layers.Masking`` (which drops zero
steps) would be wrong. The channels are scaled by :class:`SequenceScale` (``log1p`` then
standardised on the training split), fitted once and stored with the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


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


@dataclass(frozen=True)
class SequenceScale:
    """``log1p`` of each channel, then its training-split mean and standard deviation over the
    observed weeks; and the static columns' means and deviations."""

    channel_mean: np.ndarray
    channel_std: np.ndarray
    static_mean: np.ndarray
    static_std: np.ndarray

    @classmethod
    def fit(cls, static: np.ndarray, sequence: np.ndarray, mask: np.ndarray) -> SequenceScale:
        seen = np.log1p(np.maximum(np.nan_to_num(sequence[mask], nan=0.0), 0.0))
        return cls(
            seen.mean(axis=0),
            np.where(seen.std(axis=0) > 0, seen.std(axis=0), 1.0),
            static.mean(axis=0),
            np.where(static.std(axis=0) > 0, static.std(axis=0), 1.0),
        )

    def apply(self, static: np.ndarray, sequence: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """The network's three inputs; a null (NaN) channel value counts as 0, padded weeks stay 0."""
        filled = np.nan_to_num(np.asarray(sequence, np.float64), nan=0.0)
        scaled = (np.log1p(np.maximum(filled, 0.0)) - self.channel_mean) / self.channel_std
        return {
            "static": ((static - self.static_mean) / self.static_std).astype(np.float32),
            "sequence": np.where(mask[..., None], scaled, 0.0).astype(np.float32),
            "mask": mask.astype(bool),
        }


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
) -> Any:
    """Train with early stopping on the validation loss, keeping the best weights."""
    import keras

    stop = keras.callbacks.EarlyStopping(patience=spec.patience, restore_best_weights=True)
    model.fit(
        train,
        y.astype(np.float32),
        validation_data=(val, y_val.astype(np.float32)),
        batch_size=spec.batch_size,
        epochs=spec.epochs,
        callbacks=[stop],
        shuffle=True,
        verbose=0,
    )
    return model
