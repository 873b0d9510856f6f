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

from mlpipe.core.errors import PipelineError
from mlpipe.core.params import TrainParams
from mlpipe.training.feed import Batches, dataset

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


@dataclass
class Schedule:
    """Early stopping (with the best weights restored) and the learning-rate plateau rule, as Keras'
    ``EarlyStopping`` and ``ReduceLROnPlateau`` apply them, for a custom training loop."""

    params: TrainParams
    best: float = math.inf
    stall: int = 0
    plateau_best: float = math.inf
    plateau_wait: int = 0

    def after_epoch(self, val_loss: float, rate: float) -> tuple[bool, float | None, bool]:
        """Whether this epoch is the best so far, the new learning rate (None: unchanged), and
        whether to stop."""
        improved = val_loss < self.best
        self.best, self.stall = (val_loss, 0) if improved else (self.best, self.stall + 1)
        new_rate = None
        if val_loss < self.plateau_best - PLATEAU_MIN_DELTA:
            self.plateau_best, self.plateau_wait = val_loss, 0
        else:
            self.plateau_wait += 1
            if self.plateau_wait >= self.params.lr_patience and rate > self.params.min_lr:
                new_rate = max(rate * self.params.lr_factor, self.params.min_lr)
                self.plateau_wait = 0
        return improved, new_rate, self.stall >= self.params.patience


def step_functions(strategy: Any, model: Any) -> tuple[Callable, Callable]:
    """The distributed training and validation steps; each returns the summed loss and the rows."""
    import keras
    import tensorflow as tf

    per_row = getattr(keras.losses, LOSSES[model.loss])(reduction=None)

    def losses(x: Any, y: Any, training: bool) -> Any:
        output = model(x, training=training)
        return per_row(y if output.shape[-1] > 1 else tf.reshape(y, (-1, 1)), output)

    def summed(total: Any, rows: Any) -> tuple[Any, Any]:
        return strategy.reduce("SUM", total, axis=None), strategy.reduce("SUM", rows, axis=None)

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

        return summed(*strategy.run(replica, args=batch))

    @tf.function
    def val_step(batch: tuple) -> tuple[Any, Any]:
        def replica(x: Any, y: Any) -> tuple[Any, Any]:
            row_loss = losses(x, y, False)
            return tf.reduce_sum(row_loss), tf.cast(tf.size(row_loss), tf.float32)

        return summed(*strategy.run(replica, args=batch))

    return train_step, val_step


def mean_loss(step: Callable, batches: Any) -> float:
    """The row-weighted mean loss of ``step`` over ``batches``."""
    total = rows = 0.0
    for batch in batches:
        step_total, step_rows = step(batch)
        total, rows = total + float(step_total), rows + float(step_rows)
    return total / rows


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
    import itertools

    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    with strategy.scope():
        model = build()
        model.optimizer.build(model.trainable_variables)
    train_step, val_step = step_functions(strategy, model)
    train_data = iter(strategy.experimental_distribute_dataset(dataset(training, True).with_options(options)))
    val_data = strategy.experimental_distribute_dataset(dataset(validation, False).with_options(options))
    schedule, val_losses, best_weights = Schedule(params), [], None
    for _ in range(params.epochs):
        loss = mean_loss(train_step, itertools.islice(train_data, steps))
        val_losses.append(mean_loss(val_step, val_data))
        rate = float(model.optimizer.learning_rate.numpy())
        if log is not None:
            log({"loss": loss, "val_loss": val_losses[-1], "learning_rate": rate})
        improved, new_rate, stop = schedule.after_epoch(val_losses[-1], rate)
        if improved:
            best_weights = model.get_weights()
        if new_rate is not None:
            model.optimizer.learning_rate = new_rate
        if stop:
            break
    if best_weights is not None:
        model.set_weights(best_weights)
    return model, val_losses
