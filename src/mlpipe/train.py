"""Stage ``train``: fit the Keras network on the training split, early-stopped on validation.

Inputs: the ``train`` and ``val`` splits and the fitted preprocessor from ``preprocess``.
Outputs: the model folder (architecture JSON + ``.weights.h5``) and a DVCLive folder with the
per-epoch metrics (shown by ``dvc plots``) and their summary (shown by ``dvc metrics``).
Params: ``base.seed``, ``train.*``; the task (output layer and loss) and the classes come from
the preprocessor.

Deterministic: the seed fixes weight initialisation, dropout and shuffling, and TensorFlow's op
determinism is on, so the same inputs give the same weights byte for byte.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlpipe import features, io
from mlpipe.errors import PipelineError
from mlpipe.params import TrainParams, load_params
from mlpipe.stage import run

log = logging.getLogger("mlpipe.train")


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlpipe.train", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--splits", required=True, help="folder with train/val Parquet files")
    parser.add_argument("--preprocessor", required=True, help="fitted preprocessor JSON")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--live", required=True, help="DVCLive folder to write")
    args = parser.parse_args(argv)

    all_params = load_params(args.params)
    params = all_params.train
    prep = features.Preprocessor.from_dict(io.read_json(args.preprocessor))
    train_frame = io.read_parquet(Path(args.splits, "train.parquet"))
    val_frame = io.read_parquet(Path(args.splits, "val.parquet"))
    (x_train, y_train), (x_val, y_val) = (features.matrices(f, prep) for f in (train_frame, val_frame))

    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    from mlpipe.model import build_model, save_model

    set_determinism(all_params.base.seed)
    model = build_model(x_train.shape[1], params, prep.task, len(prep.classes or ()))
    weights = class_weights(y_train, len(prep.classes or ())) if params.class_weight == "balanced" else None
    with (
        io.atomic_path(args.live, directory=True) as live_dir,
        io.atomic_path(args.out, directory=True) as model_dir,
    ):
        live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False, report=None)
        history = model.fit(
            x_train,
            y_train,
            validation_data=(x_val, y_val),
            epochs=params.epochs,
            batch_size=params.batch_size,
            shuffle=True,
            class_weight=weights,
            verbose=0,
            callbacks=[*callbacks(params), DVCLiveCallback(live=live)],
        )
        val_loss = history.history["val_loss"]
        best = min(range(len(val_loss)), key=val_loss.__getitem__)
        live.summary["best_epoch"] = best
        live.summary["best_val_loss"] = float(val_loss[best])
        live.summary["epochs_run"] = len(val_loss)
        live.make_summary()
        save_model(model, model_dir)
    score = (
        f"val RMSE {val_loss[best] ** 0.5:.4f}"
        if prep.task == "regression"
        else f"val loss {val_loss[best]:.4f}"
    )
    log.info("trained %d epochs; best epoch %d, %s", len(val_loss), best, score)


if __name__ == "__main__":
    raise SystemExit(run(main))
