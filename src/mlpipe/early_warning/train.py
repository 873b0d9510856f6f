"""Stage ``train`` of the early-warning pipeline: the dual-branch network (a static branch and a GRU
or LSTM over the weekly history, :mod:`mlpipe.training.sequence`), early-stopped on validation.

Inputs: the point-in-time arrays of ``train`` and ``val`` and the preprocessor JSON (its scale) from
``preprocess``. Outputs: the model folder (architecture JSON + weights) and metrics: the epochs run,
the best epoch and its validation loss.
Params: ``base.seed``, ``train.*``.

Deterministic on one host: the seed fixes weight initialisation and shuffling, and TensorFlow's op
determinism is on.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence

import numpy as np

from mlpipe.core import files
from mlpipe.core.params import load_early_warning_params
from mlpipe.core.stage import run
from mlpipe.features import point_in_time
from mlpipe.training import sequence

log = logging.getLogger("mlpipe.early_warning.train")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlpipe.early_warning.train", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--splits", required=True, help="preprocess's folder of point-in-time arrays")
    parser.add_argument("--preprocessor", required=True, help="preprocessor JSON")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_early_warning_params(args.params)
    prep = files.read_json(args.preprocessor)
    scale = point_in_time.SequenceScale.from_dict(prep["scale"])
    train, val = (point_in_time.load(args.splits, name) for name in ("train", "val"))
    spec = sequence.SequenceSpec.from_params(params.train)

    import tensorflow as tf

    from mlpipe.training.model import save_model

    tf.config.experimental.enable_op_determinism()
    model = sequence.build(len(prep["static"]), prep["weeks"], len(prep["channels"]), spec, params.base.seed)
    began = time.perf_counter()
    val_loss = sequence.fit(
        model,
        scale.apply(train["static"], train["sequence"], train["mask"]),
        train["label"],
        scale.apply(val["static"], val["sequence"], val["mask"]),
        val["label"],
        spec,
    )
    seconds = time.perf_counter() - began
    with files.atomic_path(args.out, directory=True) as folder:
        save_model(model, folder)
    best = int(np.argmin(val_loss))
    files.write_json(
        args.metrics, {"epochs": len(val_loss), "best_epoch": best + 1, "val_loss": val_loss[best]}
    )
    log.info(
        "trained %d epochs (%.0f training rows/s); best epoch %d, val loss %.4f",
        len(val_loss),
        len(val_loss) * len(train["label"]) / seconds,
        best + 1,
        val_loss[best],
    )


if __name__ == "__main__":
    raise SystemExit(run(main))
