"""Training batches streamed from the split matrices on disk, through ``tf.data``.

A pass over the training split reads it in blocks of :data:`BLOCK_ROWS` rows: the blocks in a
seeded random order, the rows of each block shuffled, batches cut across block edges so only the
last batch of a pass is short. Memory is one block or two, whatever the split's size. The order
depends only on the seed and the pass number, so training stays repeatable byte for byte; a split
of one block is shuffled in full, as ``model.fit(shuffle=True)`` does in memory.

Importing this module does not import TensorFlow; :func:`dataset` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

BLOCK_ROWS = 262_144  # ~40 MiB of features at 40 columns: a wide window for shuffling, still small
GROUP = 32  # batches handed to tf.data per Python call


class Batches:
    """Seeded batches of ``(x, y)`` or ``(x, y, sample_weight)``: pass after pass, or one pass.

    Args:
        x: Features ``[N, F]`` (a :class:`mlpipe.core.files.Matrix` or an array).
        y: Targets ``[N]``.
        batch_size: Rows per batch.
        seed: The shuffle seed; pass ``p`` uses the generator ``[seed, 30, p]``.
        shuffle: Shuffle (training) or keep the file's order (validation, scoring).
        class_weight: Class index -> weight: batches carry per-row sample weights.
        block_rows: Rows read and shuffled at a time.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = False,
        class_weight: dict[int, float] | None = None,
        block_rows: int = BLOCK_ROWS,
    ) -> None:
        if len(x) != len(y) or not len(x):
            raise ValueError(f"need as many targets as feature rows (> 0), got {len(y)} and {len(x)}")
        self.x, self.y = x, y
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.block_rows = max(block_rows, batch_size)
        self.weights = (
            None
            if class_weight is None
            else np.array([class_weight[k] for k in range(len(class_weight))], dtype=np.float32)
        )

    @property
    def steps(self) -> int:
        """Batches in one pass."""
        return math.ceil(len(self.x) / self.batch_size)

    def one_pass(self, number: int = 0) -> Iterator[tuple[np.ndarray, ...]]:
        """The batches of pass ``number``."""
        rng = np.random.default_rng([self.seed, 30, number])
        starts = np.arange(0, len(self.x), self.block_rows)
        if self.shuffle:
            starts = rng.permutation(starts)
        carry: tuple[np.ndarray, np.ndarray] | None = None
        for start in starts:
            bx = np.asarray(self.x[start : start + self.block_rows])
            by = np.asarray(self.y[start : start + self.block_rows])
            if self.shuffle:
                order = rng.permutation(len(bx))
                bx, by = bx[order], by[order]
            if carry is not None:
                bx, by = np.concatenate([carry[0], bx]), np.concatenate([carry[1], by])
            full = len(bx) - len(bx) % self.batch_size
            for i in range(0, full, self.batch_size):
                yield self._batch(bx[i : i + self.batch_size], by[i : i + self.batch_size])
            carry = (bx[full:], by[full:]) if full < len(bx) else None
        if carry is not None:
            yield self._batch(*carry)

    def forever(self) -> Iterator[tuple[np.ndarray, ...]]:
        """Pass after pass, each shuffled anew."""
        number = 0
        while True:
            yield from self.one_pass(number)
            number += 1

    def _batch(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
        return (x, y) if self.weights is None else (x, y, self.weights[y])


def dataset(batches: Batches, repeat: bool) -> Any:
    """A ``tf.data.Dataset`` of the batches (forever, or one pass), prefetched."""
    import tensorflow as tf

    width = batches.x.shape[1]
    signature = [
        tf.TensorSpec((None, width), tf.float32),
        tf.TensorSpec((None,), tf.as_dtype(batches.y.dtype)),
    ]
    if batches.weights is not None:
        signature.append(tf.TensorSpec((None,), tf.float32))
    generate = batches.forever if repeat else batches.one_pass

    def stacked() -> Iterator[tuple[np.ndarray, ...]]:
        # Batches of one size go to TensorFlow GROUP at a time, stacked: one Python call per group
        # instead of per batch, and tf.data splits them apart again in C++.
        group: list[tuple[np.ndarray, ...]] = []
        for batch in generate():
            if group and (len(group) == GROUP or len(batch[0]) != len(group[0][0])):
                yield tuple(np.stack(parts) for parts in zip(*group, strict=True))
                group = []
            group.append(batch)
        if group:
            yield tuple(np.stack(parts) for parts in zip(*group, strict=True))

    stacked_signature = tuple(tf.TensorSpec((None, *spec.shape), spec.dtype) for spec in signature)
    data = tf.data.Dataset.from_generator(stacked, output_signature=stacked_signature).unbatch()
    # A known length lets Keras end a pass without a "ran out of data" warning.
    length = tf.data.INFINITE_CARDINALITY if repeat else batches.steps
    return data.apply(tf.data.experimental.assert_cardinality(length)).prefetch(4)
