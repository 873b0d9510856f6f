"""An early-warning bundle: the same folder as a flat model's (:mod:`mlpipe.bundle.layout`), with the
dual-branch network as ONNX (:mod:`mlpipe.bundle.sequence_onnx`) and as a SavedModel, both taking
raw input: the static fields ``static`` ``[N, S]``, the weekly history ``sequence`` ``[N, W, C]``
(a null channel value is NaN) and ``mask`` ``[N, W]``. ``metadata.json`` names the static fields
as its ``inputs`` and the channels, weeks and cutoffs under ``history``; the model card gives the
metrics by cutoff week and names the weeks at which a baseline beats the model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mlpipe.bundle import card as card_text
from mlpipe.bundle import reference
from mlpipe.features.point_in_time import SequenceScale, lower_history

TARGET = "dropped_out"


def export(network: Any, scale: SequenceScale, folder: str | os.PathLike[str]) -> None:
    """Write the SavedModel (signature ``serving_default``: ``static``, ``sequence``, ``mask`` in,
    ``probability`` out; the history lowered by
    :func:`mlpipe.features.point_in_time.lower_history` in TensorFlow ops) into ``folder``, which
    must not exist yet."""
    import tensorflow as tf

    from mlpipe.bundle.savedmodel import TensorFlowOps, clear_fingerprint_uuid

    weeks, channels = network.inputs[1].shape[1:]
    n_static = network.inputs[0].shape[1]

    class EarlyWarning(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="early_warning")
            self.network = network

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, n_static], tf.float64, name="static"),
                tf.TensorSpec([None, weeks, channels], tf.float64, name="sequence"),
                tf.TensorSpec([None, weeks], tf.bool, name="mask"),
            ]
        )
        def serve(self, static: tf.Tensor, sequence: tf.Tensor, mask: tf.Tensor) -> dict[str, tf.Tensor]:
            fixed, scaled = lower_history(TensorFlowOps(), static, sequence, mask, scale)
            inputs = {"static": fixed, "sequence": scaled, "mask": mask}
            return {"probability": self.network(inputs, training=False)}

    module = EarlyWarning()
    tf.saved_model.save(module, os.fspath(folder), signatures={"serving_default": module.serve})
    clear_fingerprint_uuid(Path(folder, "fingerprint.pb"))


def metadata(prep: dict[str, Any], params: Any, evaluation: dict[str, Any], rows: dict[str, int]) -> dict:
    """``metadata.json`` without its version, files and lineage (the package stage adds them)."""
    return {
        "format_version": 1,
        "name": params.package.name,
        "description": params.package.description,
        "task": "binary",
        "inputs": {name: {"type": "number"} for name in prep["static"]},
        "output": {
            "name": "probability",
            "target": TARGET,
            "type": "probability",
            "classes": [0, 1],
            "threshold": params.package.threshold,
        },
        "history": {
            **{k: prep[k] for k in ("channels", "weeks", "cutoffs")},
            # the tables' columns, for scoring a cohort straight from them (mlpipe predict --as-of)
            "columns": params.history.model_dump(include={"key", "timestamp", "start", "outcome"}),
        },
        "data": {f"{name}_rows": n for name, n in rows.items()},
        "metrics": evaluation,
    }


def parity(
    network: Any, scale: SequenceScale, onnx_bytes: bytes, signature: Any, test: dict
) -> tuple[dict[str, float], np.ndarray]:
    """The largest difference between Keras (scaled in NumPy), ONNX Runtime and the SavedModel on
    the test split's point-in-time rows (at most 2,000 compared; all scored by ONNX Runtime, whose
    probabilities are returned too)."""
    import onnxruntime as ort
    import tensorflow as tf

    from mlpipe.training import sequence

    raw = {
        "static": test["static"][:2000].astype(np.float64),
        "sequence": test["sequence"][:2000].astype(np.float64),
        "mask": test["mask"][:2000],
    }
    keras_out = sequence.predict(network, scale.apply(raw["static"], raw["sequence"], raw["mask"]))
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, raw)[0].reshape(-1)
    saved = signature(**{k: tf.constant(v) for k, v in raw.items()})["probability"].numpy().reshape(-1)
    every = {"static": test["static"], "sequence": test["sequence"].astype(np.float64), "mask": test["mask"]}
    differences = {
        "onnx": float(np.max(np.abs(onnx_out - keras_out), initial=0.0)),
        "saved_model": float(np.max(np.abs(saved - keras_out), initial=0.0)),
    }
    return differences, session.run(None, every)[0].reshape(-1).astype(np.float64)


def numbers(values: np.ndarray) -> reference.Sketch:
    """A number sketch: deciles of the values (NaN counted missing) and their counts."""
    present = values[~np.isnan(values)]
    stride = max(1, len(present) // reference.SAMPLE)
    sketch = reference.Sketch("number", reference.edges_of(present[::stride]))
    sketch.counts = [0] * (len(sketch.edges) + 1)
    sketch.add(values)
    return sketch


def reference_document(train: dict[str, np.ndarray], prep: dict[str, Any], probability: np.ndarray) -> dict:
    """``reference.json``: what monitoring measures drift against. The static fields and each
    channel's weekly values over the observed weeks (``history.<channel>``) of the training split,
    and the test split's probabilities."""
    inputs = {
        name: numbers(train["static"][:, j].astype(np.float64)) for j, name in enumerate(prep["static"])
    }
    observed = train["sequence"][train["mask"]].astype(np.float64)
    for j, channel in enumerate(prep["channels"]):
        inputs[f"history.{channel}"] = numbers(observed[:, j])
    return reference.document(inputs, numbers(probability), len(train["ids"]), len(probability))


def card(meta: dict[str, Any]) -> str:
    """The model card: what it predicts, from what, how well by cutoff week, and its limits."""
    history, git = meta["history"], meta["git"]
    by_week = meta["metrics"]["by_cutoff"]
    rows = []
    for week, found in by_week.items():
        base = found["baselines"]
        oracle = f"{found['oracle']['roc_auc']:.4f}" if "oracle" in found else "-"
        rows.append(
            f"| {week} | {found['model']['roc_auc']:.4f} | {base['logistic']['roc_auc']:.4f}"
            f" | {base['hgb']['roc_auc']:.4f} | {oracle} | {found['model']['log_loss']:.4f}"
            f" | {found['model']['recall_at_10pct']:.3f} | {found['model']['rows']} |"
        )
    wins = meta["metrics"].get("baseline_wins", {})
    beaten = (
        [
            f"- At week {w}, {' and '.join(names)} ranked students better than the model."
            for w, names in wins.items()
        ]
        if wins
        else ["- No baseline ranked students better than the model at any cutoff week."]
    )
    dirty = " with uncommitted changes" if git["dirty"] else ""
    return "\n".join(
        [
            *card_text.heading(meta),
            f"- Predicts the probability that a student drops out after the cutoff week (`{TARGET}`),",
            "  from the static fields and the weekly history before it: "
            + ", ".join(f"`{c}` ({how} per week)" for c, how in history["channels"].items())
            + f"; at most {history['weeks']} weeks.",
            f"- Built from commit `{git['revision']}`{dirty}; trained and judged at cutoff weeks"
            f" {', '.join(map(str, history['cutoffs']))}, split by student.",
            "",
            "## Test metrics by cutoff week",
            "",
            "| week | ROC-AUC | logistic | hgb | oracle | log loss | recall, riskiest 10% | students |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "## Where a baseline wins",
            "",
            *beaten,
            "",
            "## Limits",
            "",
            "- A history must not run past its cutoff: the server refuses more weeks than the model reads.",
            "- Measured at the cutoffs above on held-out students of the same source; other weeks,"
            " terms or institutions need a new evaluation.",
            card_text.FILES,
            "",
        ]
    )
