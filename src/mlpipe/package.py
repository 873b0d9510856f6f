"""Stage ``package``: gate the model, then write the verified bundle that serving loads.

Inputs: the preprocessor and the test split from ``preprocess``, the model from ``train``, the test
metrics from ``evaluate``, and ``dvc.lock`` (for the lineage: the md5 of every upstream output).
Outputs: the bundle folder (see :mod:`mlpipe.bundle.layout`) and the gate's verdict as a metrics file.
Params: ``package.*`` (name, description, gate); the ``validate`` contract gives the input ranges;
``preprocess``, ``train`` and ``evaluate`` are recorded in the metadata.

The gate (:mod:`mlpipe.evaluation.gate`) fails the stage, naming each failed check, when the model does not
beat each baseline by its margin, misses an absolute threshold, or when the ONNX graph's or the
SavedModel's predictions on the test split differ from the Keras model's by more than the parity
tolerance. The verdict file is written either way; the bundle only when every check passes. The
lineage comes from :mod:`mlpipe.bundle.lineage`, the bundle's README from :mod:`mlpipe.bundle.card`, and its
``reference.json`` (the training inputs' and test predictions' distributions, for drift) from
:mod:`mlpipe.bundle.reference`. With ``MLPIPE_SIGNING_KEY`` set (a PEM key's path or text, from the
environment only) the bundle's checksums are signed (:mod:`mlpipe.bundle.signing`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlpipe.bundle import layout as bundle
from mlpipe.bundle import lineage, onnx_graph, reference, signing
from mlpipe.bundle.writing import write_bundle
from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import ColumnRule, Params, load_params
from mlpipe.core.stage import run
from mlpipe.evaluation import gate
from mlpipe.features import preprocessor

log = logging.getLogger("mlpipe.package")


def input_schema(prep: preprocessor.Preprocessor, rules: dict[str, ColumnRule]) -> dict[str, dict[str, Any]]:
    """The bundle's input contract: each raw column's type, range or categories.

    Ranges come from the validate stage's data contract; categories are the levels seen in training;
    ``allowed`` is the contract's list of levels for a column whose unseen levels are ignored (a
    level the contract refuses is refused at scoring too, as validate quarantines it in training);
    ``fill`` is what a null becomes (imputation), for columns the contract lets be null.
    """
    schema: dict[str, dict[str, Any]] = {}
    for column in prep.input_columns:
        rule = rules.get(column)
        if column in prep.categories:
            entry = {
                "type": "string",
                "categories": prep.categories[column],
                "unknown": prep.unknown_category,
            }
            if prep.unknown_category == "ignore" and rule is not None and rule.allowed is not None:
                entry["allowed"] = [str(level) for level in rule.allowed]
        elif column in prep.cyclical:
            entry = {
                "type": "string",
                "categories": list(prep.cyclical[column]["values"]),
                "unknown": "error",
            }
        else:
            whole = rule is not None and rule.dtype == "int"
            entry = {"type": "integer" if whole else "number"}
            for bound in ("min", "max"):
                value = getattr(rule, bound) if rule is not None else None
                if value is not None:
                    entry[bound] = int(value) if whole and float(value).is_integer() else value
        if column in prep.fill:  # preprocess fits a fill only where the contract allows a null
            entry["fill"] = prep.fill[column]
        schema[column] = entry
    return schema


def output_metadata(prep: preprocessor.Preprocessor, threshold: float) -> dict[str, Any]:
    """What the ONNX output ``prediction`` holds: a number, the last class's probability (binary),
    or one probability per class; with the classes and the binary decision threshold."""
    if prep.task == "regression":
        return {"name": onnx_graph.OUTPUT, "target": prep.target, "type": "number"}
    spec = {
        "name": onnx_graph.OUTPUT,
        "target": prep.target,
        "type": "probabilities",
        "classes": prep.classes,
    }
    if prep.task == "binary":
        spec.update(type="probability of the last class", threshold=threshold)
    return spec


def build_metadata(
    params: Params, prep: preprocessor.Preprocessor, evaluation: dict[str, Any], split_rows: dict[str, int]
) -> dict[str, Any]:
    """Everything about the bundle except the gate verdict, its version and file hashes."""
    return {
        "format_version": bundle.FORMAT_VERSION,
        "name": params.package.name,
        "description": params.package.description,
        "task": prep.task,
        "inputs": input_schema(prep, params.validate.columns),
        "ids": list(params.preprocess.ids),
        "output": output_metadata(prep, params.evaluate.threshold),
        "params": {
            section: getattr(params, section).model_dump(mode="json")
            for section in ("base", "preprocess", "train", "evaluate", "package")
        },
        "metrics": {k: evaluation[k] for k in ("model", "baselines") if k in evaluation},
        "data": {
            "group": params.preprocess.group,
            **{f"{split}_rows": rows for split, rows in split_rows.items()},
        },
        "libraries": lineage.library_versions(),
    }


def export_parity(
    network: Any, prep: preprocessor.Preprocessor, served: Any, signature: Any, splits: Path
) -> dict[str, float]:
    """Each export's largest difference from Keras on the whole test split, batch by batch: ONNX
    through the serving code path (``served``: schema checks, ONNX Runtime), the SavedModel through
    its serving ``signature``, as TF Serving runs it; Keras on preprocess's numpy preprocessor."""
    from mlpipe.bundle import savedmodel
    from mlpipe.training.model import predict

    parity = {"onnx": 0.0, "saved_model": 0.0}
    x_test, offset = files.load_split(splits, "test")[0], 0
    for test in files.iter_parquet(splits / "test.parquet"):
        expected = predict(network, x_test[offset : offset + len(test)]).astype(np.float64)
        tf_output = signature(**savedmodel.feed(test, prep))[onnx_graph.OUTPUT].numpy()
        tf_output = tf_output.astype(np.float64).reshape(expected.shape)
        onnx_diff = gate.parity_difference(served.predict_frame(test).values, expected)
        parity["onnx"] = max(parity["onnx"], onnx_diff)
        parity["saved_model"] = max(parity["saved_model"], gate.parity_difference(tf_output, expected))
        offset += len(test)
    return parity


def reference_of(prep: preprocessor.Preprocessor, served: Any, splits: Path) -> dict[str, Any]:
    """``reference.json``: the training split's input sketches and the test split's prediction
    sketch (:mod:`mlpipe.bundle.reference`), in two streamed passes over the training split."""
    train, test = splits / "train.parquet", splits / "test.parquet"
    text = prep.string_inputs
    numbers = [c for c in prep.input_columns if c not in text]
    sketches = reference.sketch_columns(
        files.iter_parquet(train, prep.input_columns),
        files.parquet_rows(train),
        numbers,
        text,
        lambda: files.iter_parquet(train, numbers),
    )
    regression = prep.task == "regression"
    predictions = (
        (result.values if regression else result.labels)
        for result in (served.predict_frame(frame) for frame in files.iter_parquet(test))
    )
    prediction = reference.prediction_sketch(predictions, prep.task)
    inputs = {c: sketches[c] for c in prep.input_columns}
    return reference.document(inputs, prediction, files.parquet_rows(train), files.parquet_rows(test))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlpipe.package", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--splits", required=True, help="preprocess's folder: raw splits and their matrices")
    parser.add_argument("--preprocessor", required=True, help="fitted preprocessor JSON")
    parser.add_argument("--model", required=True, help="model folder from train")
    parser.add_argument("--evaluation", required=True, help="evaluate's metrics JSON")
    parser.add_argument("--lock", default="dvc.lock", help="dvc.lock, for the lineage")
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--metrics", required=True, help="gate verdict JSON to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_params(args.params)
    prep = preprocessor.Preprocessor.from_dict(files.read_json(args.preprocessor))
    evaluation = files.read_json(args.evaluation)
    splits, lock_path = Path(args.splits), Path(args.lock)
    rows = {name: files.parquet_rows(splits / f"{name}.parquet") for name in ("train", "val", "test")}
    configured = signing.from_env(signing.SIGNING_KEY_ENV)
    key = signing.private_key(configured) if configured else None  # read first: a bad key fails fast
    meta = build_metadata(params, prep, evaluation, rows)
    lock = lineage.read_lock(lock_path)
    meta["lineage"] = lineage.outputs(lock, "package", lock_path)

    from mlpipe.bundle import savedmodel
    from mlpipe.serving.predictor import Predictor
    from mlpipe.training.model import dense_weights, load_model

    meta["git"] = lineage.git_revision(lineage.code_files(lock))  # after the imports: they are code
    # TF Serving's input names: the column names, with characters TensorFlow refuses replaced.
    meta["saved_model"] = {
        "signature": "serving_default",
        "inputs": savedmodel.signature_names(prep.input_columns),
    }
    network = load_model(args.model)
    layers = [onnx_graph.DenseLayer(*weights) for weights in dense_weights(network)]
    onnx_bytes = onnx_graph.build(prep, layers, params.package.name).SerializeToString()
    meta["version"] = bundle.version_of(onnx_bytes)
    meta["plan"] = preprocessor.plan_of(prep).to_dict()
    with files.atomic_path(args.out, directory=True) as folder:  # removed again if the gate fails
        savedmodel.export(network, prep, folder / bundle.SAVED_MODEL)
        served = Predictor.from_verified(bundle.Verified(Path(args.out), meta, onnx_bytes), threads=1)
        signature = savedmodel.load_signature(folder / bundle.SAVED_MODEL)
        parity = export_parity(network, prep, served, signature, splits)
        meta["gate"] = gate.verdict(evaluation, params.package.gate, parity)
        files.write_json(args.metrics, meta["gate"])
        if not meta["gate"]["passed"]:
            raise PipelineError("gate failed, not packaging: " + "; ".join(gate.failures(meta["gate"])))
        files.write_json(folder / reference.FILE, reference_of(prep, served, splits))
        write_bundle(folder, onnx_bytes, meta, key)
    log.info(
        "packaged %s %s: parity %.2e (ONNX), %.2e (SavedModel), %s, %s",
        meta["name"],
        meta["version"],
        parity["onnx"],
        parity["saved_model"],
        f"signed by key {signing.key_id(key.public_key())}" if key else "unsigned",
        args.out,
    )


if __name__ == "__main__":
    raise SystemExit(run(main))
