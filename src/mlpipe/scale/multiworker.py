"""Training past one machine: ``tf.distribute.MultiWorkerMirroredStrategy``, configured by ``TF_CONFIG``.

Set ``TF_CONFIG`` on each machine (``{"cluster": {"worker": ["host1:port", "host2:port"]},
"task": {"type": "worker", "index": 0}}``, index 1 on the second, ...) and run the ``train`` stage
on every one of them; each reads the same split matrices (a shared file system, or ``dvc pull``
of ``data/processed`` on each). The weights are mirrored and the gradients all-reduced every step.
The chief (``type: chief``, or worker 0 when there is none) writes the model and the training log;
the other workers write nothing. Without ``TF_CONFIG``, or with one worker, training runs in one
process with ``model.fit``.

The global batch is ``train.batch_size`` whatever the number of workers (each worker computes its
share of it), an epoch is the same number of steps, and early stopping, best-weight restoring and
the learning-rate schedule follow the same rules as Keras' callbacks of the single-process path;
so a distributed model matches a single-process one within the tolerance of a different summation
order, not bit for bit. Keras 3's ``model.fit`` does not run under this strategy (it reduces a data
batch across workers before the first step and fails: keras-team/keras#20585), so this is a
custom loop around ``strategy.run``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mlpipe.errors import PipelineError
from mlpipe.feed import Batches, dataset
from mlpipe.params import TrainParams

PLATEAU_MIN_DELTA = 1e-4  # Keras' ReduceLROnPlateau default, kept for the same schedule


@dataclass(frozen=True)
class Worker:
    """This process's place in the cluster that ``TF_CONFIG`` describes."""

    count: int
    kind: str
    index: int
    has_chief: bool = False

    @property
    def chief(self) -> bool:
        """Whether this worker writes the outputs."""
        return self.kind == "chief" or (self.index == 0 and not self.has_chief)


def cluster(environ: Mapping[str, str] = os.environ) -> Worker | None:
    """The worker ``TF_CONFIG`` makes of this process; None without it or for a cluster of one.

    Raises:
        PipelineError: if ``TF_CONFIG`` is not JSON, or its task is not a chief or worker of it.
    """
    raw = environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
        spec, task = config.get("cluster", {}), config.get("task", {})
        workers = [*spec.get("chief", []), *spec.get("worker", [])]
        kind, index = task.get("type"), task.get("index")
    except (ValueError, AttributeError):
        raise PipelineError("TF_CONFIG must be JSON with a cluster and a task") from None
    if len(workers) < 2:
        return None
    known = kind in ("chief", "worker") and isinstance(index, int)
    if not known or not 0 <= index < len(spec.get(kind, [])):
        raise PipelineError(f"TF_CONFIG task {task!r} is not a chief or worker of the cluster")
    return Worker(len(workers), kind, index, has_chief=bool(spec.get("chief")))


LOSSES = {
    "mse": "MeanSquaredError",
    "binary_crossentropy": "BinaryCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
}


def fit(
    build: Callable[[], Any],
    training: Batches,
    validation: Batches,
    params: TrainParams,
    steps: int,
    log: Callable[[dict[str, float]], None] | None = None,
) -> tuple[Any, list[float]]:
    """Train under ``MultiWorkerMirroredStrategy`` (``TF_CONFIG`` must be set in every worker).

    Args:
        build: Returns the compiled, untrained model (called in the strategy's scope).
        training: The training batches (every worker builds the same, and takes its share).
        validation: The validation batches.
        params: Epochs, patience and the learning-rate schedule.
        steps: Global steps per epoch.
        log: Called after each epoch with ``loss``, ``val_loss`` and ``learning_rate`` (the chief
            logs them to DVCLive).

    Returns:
        The model with the best epoch's weights, and the validation loss of every epoch.
    """
    import keras
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    with strategy.scope():
        model = build()
        model.optimizer.build(model.trainable_variables)
    per_row = getattr(keras.losses, LOSSES[model.loss])(reduction=None)
    train_data = iter(strategy.experimental_distribute_dataset(dataset(training, True).with_options(options)))
    val_data = strategy.experimental_distribute_dataset(dataset(validation, False).with_options(options))

    def losses(x: Any, y: Any, training: bool) -> Any:
        output = model(x, training=training)
        return per_row(y if output.shape[-1] > 1 else tf.reshape(y, (-1, 1)), output)

    @tf.function
    def train_step(batch: tuple) -> tuple[Any, Any]:
        def replica(x: Any, y: Any, weight: Any = None) -> tuple[Any, Any]:
            with tf.GradientTape() as tape:
                row_loss = losses(x, y, True)
                weighted = row_loss if weight is None else row_loss * weight
                loss = tf.nn.compute_average_loss(weighted)
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return tf.reduce_sum(weighted), tf.cast(tf.size(row_loss), tf.float32)

        total, rows = strategy.run(replica, args=batch)
        return strategy.reduce("SUM", total, axis=None), strategy.reduce("SUM", rows, axis=None)

    @tf.function
    def val_step(batch: tuple) -> tuple[Any, Any]:
        def replica(x: Any, y: Any) -> tuple[Any, Any]:
            row_loss = losses(x, y, False)
            return tf.reduce_sum(row_loss), tf.cast(tf.size(row_loss), tf.float32)

        total, rows = strategy.run(replica, args=batch)
        return strategy.reduce("SUM", total, axis=None), strategy.reduce("SUM", rows, axis=None)

    val_losses: list[float] = []
    best, best_weights, stall, plateau_best, plateau_wait = math.inf, None, 0, math.inf, 0
    for _ in range(params.epochs):
        total = rows = 0.0
        for _ in range(steps):
            step_total, step_rows = train_step(next(train_data))
            total, rows = total + float(step_total), rows + float(step_rows)
        val_total = val_rows = 0.0
        for batch in val_data:
            step_total, step_rows = val_step(batch)
            val_total, val_rows = val_total + float(step_total), val_rows + float(step_rows)
        val_loss = val_total / val_rows
        val_losses.append(val_loss)
        rate = float(model.optimizer.learning_rate.numpy())
        if log is not None:
            log({"loss": total / rows, "val_loss": val_loss, "learning_rate": rate})
        if val_loss < best:  # EarlyStopping(restore_best_weights=True)
            best, best_weights, stall = val_loss, model.get_weights(), 0
        else:
            stall += 1
        if val_loss < plateau_best - PLATEAU_MIN_DELTA:  # ReduceLROnPlateau
            plateau_best, plateau_wait = val_loss, 0
        else:
            plateau_wait += 1
            if plateau_wait >= params.lr_patience and rate > params.min_lr:
                model.optimizer.learning_rate = max(rate * params.lr_factor, params.min_lr)
                plateau_wait = 0
        if stall >= params.patience:
            break
    if best_weights is not None:
        model.set_weights(best_weights)
    return model, val_losses
