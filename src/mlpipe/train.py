"""Stage ``train``: fit the Keras network on the training split, early-stopped on validation.

Inputs: the ``train`` and ``val`` feature matrices and the fitted preprocessor from ``preprocess``,
read in row slices and streamed through ``tf.data`` (:mod:`mlpipe.training.feed`), so memory does not grow
with the number of rows.
Outputs: the model folder (architecture JSON + ``.weights.h5``) and a DVCLive folder with the
per-epoch metrics (shown by ``dvc plots``) and their summary (shown by ``dvc metrics``).
Params: ``base.seed``, ``train.*``; the task (output layer and loss) and the classes come from
the preprocessor.

An epoch is one pass over the training split, or ``train.epoch_rows`` rows where the split is
larger: early stopping and the learning-rate schedule then act at that interval, not once per
million rows.

Deterministic: the seed fixes weight initialisation, dropout and shuffling, and TensorFlow's op
determinism is on, so the same inputs give the same weights byte for byte.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import TrainParams, load_params
from mlpipe.core.stage import run
from mlpipe.features import preprocessor

log = logging.getLogger("mlpipe.train")

VALIDATION_BATCH = 8192  # validation only runs the model forward: large batches, fewer steps


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow's ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def callbacks(params: TrainParams) -> list:
    """Early stopping with best weights restored, and a learning-rate schedule that can act."""
    import keras

    return [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=params.patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss",
            factor=params.lr_factor,
            patience=params.lr_patience,
            min_lr=params.min_lr,
        ),
    ]


def logger(live: Any) -> Callable[[dict[str, float]], None]:
    """Log an epoch's metrics to DVCLive under the names ``DVCLiveCallback`` gives Keras' logs."""

    def log_epoch(metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            live.log_metric(f"eval/{name[4:]}" if name.startswith("val_") else f"train/{name}", value)
        live.next_step()

    return log_epoch


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced class weights, ``n / (k * count)``, so each class weighs the same in the loss.

    Raises:
        PipelineError: for regression (no classes) or a class absent from the training labels.
    """
    if n_classes < 2:
        raise PipelineError("train.class_weight: balanced applies only to classification")
    counts = np.bincount(labels, minlength=n_classes)
    if (counts == 0).any():
        raise PipelineError(f"class {int(np.argmin(counts))} has no training rows")
    return {k: float(len(labels) / (n_classes * c)) for k, c in enumerate(counts)}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlpipe.train", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--splits", required=True, help="preprocess's folder: train and val matrices")
    parser.add_argument("--preprocessor", required=True, help="fitted preprocessor JSON")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--live", required=True, help="DVCLive folder to write")
    return parser.parse_args(argv)


def fit_here(
    build: Callable[[], Any], training: Any, validation: Any, params: TrainParams, steps: int, live: Any
):
    """Train on this machine alone; the model and its validation loss per epoch."""
    from dvclive.keras import DVCLiveCallback

    from mlpipe.training import feed

    model = build()
    history = model.fit(
        feed.dataset(training, repeat=True),
        steps_per_epoch=steps,
        validation_data=feed.dataset(validation, repeat=False),
        epochs=params.epochs,
        shuffle=False,  # the batches are shuffled, seeded, as they are read
        verbose=0,
        callbacks=[*callbacks(params), DVCLiveCallback(live=live)],
    )
    return model, history.history["val_loss"]


def summarise(live: Any, val_loss: list[float]) -> int:
    """Record the best epoch, its validation loss and the epochs run; return the best epoch."""
    best = min(range(len(val_loss)), key=val_loss.__getitem__)
    if live is not None:
        live.summary["best_epoch"] = best
        live.summary["best_val_loss"] = float(val_loss[best])
        live.summary["epochs_run"] = len(val_loss)
        live.make_summary()
    return best


def budget_warning(epochs_run: int, best: int, params: TrainParams) -> str | None:
    """What to say when the epoch budget, not early stopping, ended a model still improving:
    training ran all ``train.epochs`` and the best epoch (counted from 0) came within
    ``train.patience`` of the end. None when early stopping decided."""
    if epochs_run < params.epochs or best < params.epochs - params.patience:
        return None
    return (
        f"the best epoch ({best + 1} of train.epochs {params.epochs}) came within train.patience"
        f" ({params.patience}) of the end: the model was still improving; raise train.epochs"
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    all_params = load_params(args.params)
    params, seed = all_params.train, all_params.base.seed
    prep = preprocessor.Preprocessor.from_dict(files.read_json(args.preprocessor))
    x_train, y_train = files.load_split(args.splits, "train")
    x_val, y_val = files.load_split(args.splits, "val")
    if x_train.shape[1] != len(prep.feature_names):
        raise PipelineError(
            f"the training matrix has {x_train.shape[1]} columns, the preprocessor"
            f" {len(prep.feature_names)} features: run preprocess again"
        )

    from dvclive import Live

    from mlpipe.training import distributed, feed
    from mlpipe.training.model import build_model, save_model

    set_determinism(seed)
    worker = distributed.cluster()
    balanced = params.class_weight == "balanced"
    weights = class_weights(np.asarray(y_train), len(prep.classes or ())) if balanced else None
    training = feed.Batches(x_train, y_train, params.batch_size, seed, shuffle=True, class_weight=weights)
    validation = feed.Batches(x_val, y_val, max(params.batch_size, VALIDATION_BATCH))
    steps = min(training.steps, math.ceil(params.epoch_rows / params.batch_size))

    def build() -> Any:
        return build_model(x_train.shape[1], params, prep.task, len(prep.classes or ()))

    writes = worker is None or worker.chief  # in a cluster, only the chief writes the outputs
    with contextlib.ExitStack() as outputs:
        live_dir = outputs.enter_context(files.atomic_path(args.live, directory=True)) if writes else None
        model_dir = outputs.enter_context(files.atomic_path(args.out, directory=True)) if writes else None
        live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False, report=None) if writes else None
        if worker is not None:
            log.info("training as %s %d of %d workers (TF_CONFIG)", worker.kind, worker.index, worker.count)
            epoch_log = logger(live) if live is not None else None
            model, val_loss = distributed.fit(build, training, validation, params, steps, epoch_log)
        else:
            model, val_loss = fit_here(build, training, validation, params, steps, live)
        best = summarise(live, val_loss)
        if writes:
            save_model(model, model_dir)
    score = (
        f"val RMSE {val_loss[best] ** 0.5:.4f}"
        if prep.task == "regression"
        else f"val loss {val_loss[best]:.4f}"
    )
    log.info("trained %d epochs; best epoch %d, %s", len(val_loss), best, score)
    if warning := budget_warning(len(val_loss), best, params):
        log.warning("%s", warning)


if __name__ == "__main__":
    raise SystemExit(run(main))
