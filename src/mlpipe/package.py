"""Stage ``package``: gate the model, then write the verified bundle that serving loads.

Inputs: the preprocessor and the test split from ``preprocess``, the model from ``train``, the test
metrics from ``evaluate``, and ``dvc.lock`` (for the lineage: the md5 of every upstream output).
Outputs: the bundle folder (see :mod:`mlpipe.bundle`) and the gate's verdict as a metrics file.
Params: ``package.*`` (name, description, gate); the ``validate`` contract gives the input ranges;
``preprocess``, ``train`` and ``evaluate`` are recorded in the metadata.

The gate fails the stage, naming each failed check, when the model does not beat each baseline by
its margin, misses an absolute threshold, or when the ONNX graph's or the SavedModel's predictions
on the test split differ from the Keras model's by more than the parity tolerance. The verdict
file is written either way; the bundle only when every check passes.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import platform
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib import metadata as distributions
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mlpipe import bundle, decisions, features, io, onnx_graph
from mlpipe.errors import PipelineError
from mlpipe.params import ColumnRule, GateParams, Params, load_params
from mlpipe.stage import run

log = logging.getLogger("mlpipe.package")

LIBRARIES = ("mlpipe", "numpy", "pandas", "scikit-learn", "keras", "onnx", "onnxruntime")


def gate(evaluation: dict[str, Any], params: GateParams, parity: dict[str, float]) -> dict[str, Any]:
    """Check the test metrics against the gate; return the verdict (``passed`` and each check).

    Improvement over a baseline is relative: ``(baseline - model) / baseline`` for a loss (RMSE,
    MAE, log loss, Brier), ``(model - baseline) / baseline`` for a score (R², accuracy, AUC).

    Raises:
        PipelineError: if the gate names a baseline or metric that evaluate did not report.
    """
    model = evaluation["model"]
    metric = params.metric
    if metric not in model:
        raise PipelineError(f"package.gate.metric: evaluate reports no metric {metric!r}")
    checks: dict[str, dict[str, Any]] = {}
    for baseline, margin in params.min_improvement.items():
        if baseline not in evaluation["baselines"]:
            known = ", ".join(evaluation["baselines"])
            raise PipelineError(f"package.gate.min_improvement.{baseline}: no such baseline (known: {known})")
        theirs = evaluation["baselines"][baseline][metric]
        gain = theirs - model[metric] if decisions.lower_is_better(metric) else model[metric] - theirs
        checks[f"{metric}_improvement_over_{baseline}"] = {"value": gain / abs(theirs), "min": margin}
    for bound, limits in (("max", params.max), ("min", params.min)):
        for metric, limit in limits.items():
            if metric not in model:
                raise PipelineError(f"package.gate.{bound}.{metric}: evaluate reports no such metric")
            checks[metric] = {"value": model[metric], bound: limit}
    for export, difference in parity.items():  # each export's largest difference from Keras
        checks[f"parity_max_diff_{export}"] = {"value": difference, "max": params.parity_tolerance}
    for check in checks.values():
        check["passed"] = bool(
            ("min" not in check or check["value"] >= check["min"])
            and ("max" not in check or check["value"] <= check["max"])
        )
    return {"passed": all(c["passed"] for c in checks.values()), "checks": checks}


def parity_difference(bundle_output: np.ndarray, keras_output: np.ndarray) -> float:
    """The largest difference between the bundle's and Keras' outputs: absolute up to 1, relative
    beyond (float32 carries about 7 digits, so an absolute 1e-5 is out of reach for values in the
    hundreds)."""
    scale = np.maximum(1.0, np.abs(keras_output))
    return float(np.max(np.abs(bundle_output - keras_output) / scale)) if keras_output.size else 0.0


def failures(verdict: dict[str, Any]) -> list[str]:
    """One line per failed check, e.g. ``rmse = 0.61 > max 0.5``."""
    lines = []
    for name, check in verdict["checks"].items():
        if not check["passed"]:
            bound = f"< min {check['min']:g}" if "min" in check else f"> max {check['max']:g}"
            lines.append(f"{name} = {check['value']:.4g} {bound}")
    return lines


def input_schema(prep: features.Preprocessor, rules: dict[str, ColumnRule]) -> dict[str, dict[str, Any]]:
    """The bundle's input contract: each raw column's type, range or categories.

    Ranges come from the validate stage's data contract; categories are the levels seen in training;
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


def read_lock(lock_path: Path) -> dict[str, Any]:
    """``dvc.lock`` as a mapping.

    Raises:
        PipelineError: if it is missing (the stage was not run by ``dvc repro``).
    """
    try:
        return yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise PipelineError(f"{lock_path} not found: run this stage with `dvc repro`") from None


def lineage(lock: dict[str, Any], stage: str, lock_path: Path) -> dict[str, str]:
    """Path -> md5 of every output of the other stages in ``dvc.lock``, checked against the files.

    Raises:
        PipelineError: if the lock has no outputs, or a file no longer matches its md5 (a stale
            lock: run the stage through ``dvc repro``).
    """
    outs = {}
    for name, entry in sorted(lock.get("stages", {}).items()):
        for out in entry.get("outs", []) if name != stage else []:
            path = Path(out["path"])
            if path.is_file() and hashlib.md5(path.read_bytes()).hexdigest() != out["md5"]:
                raise PipelineError(
                    f"{lock_path} is stale for {out['path']}: run this stage with `dvc repro`"
                )
            outs[out["path"]] = out["md5"]
    if not outs:
        raise PipelineError(f"{lock_path} records no outputs: run this stage with `dvc repro`")
    return dict(sorted(outs.items()))


def code_files(lock: dict[str, Any]) -> list[str]:
    """The Python files that built the bundle: every ``.py`` dep of the other stages in the lock,
    and every mlpipe module this process has imported (this stage's own code)."""
    files = {
        str(Path(module.__file__).resolve())
        for name, module in list(sys.modules.items())
        if (name == "mlpipe" or name.startswith("mlpipe.")) and getattr(module, "__file__", None)
    }
    for entry in lock.get("stages", {}).values():
        files |= {str(Path(d["path"]).resolve()) for d in entry.get("deps", []) if d["path"].endswith(".py")}
    return sorted(files)


def git_revision(files: list[str]) -> dict[str, Any]:
    """The last commit that changed any of ``files`` (the code that built the bundle), and whether
    they differed from it when the bundle was built.

    Not ``HEAD``: a commit that does not touch that code (results, docs, the server) must not
    change what a rebuild writes, or no two builds on either side of it would agree. Params and
    data are recorded by value and md5 elsewhere in the metadata.
    """

    def git(*args: str) -> str:
        return subprocess.run(["git", *args, "--", *files], capture_output=True, text=True, check=True).stdout

    try:
        revision = git("log", "-1", "--format=%H").strip()
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return {"revision": None, "dirty": None}
    return {"revision": revision or None, "dirty": bool(status.strip())}


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        versions[name] = distributions.version(name)
    for name in ("tensorflow", "tensorflow-cpu"):
        try:
            versions["tensorflow"] = distributions.version(name)
        except distributions.PackageNotFoundError:
            continue
    return dict(sorted(versions.items()))


def model_card(meta: dict[str, Any]) -> str:
    """The bundle's README: what the model predicts, from what data, how well, and its limits."""
    evaluation = meta["metrics"]
    rows = [("model (this bundle)", evaluation["model"])]
    rows += [(f"baseline: {name}", scores) for name, scores in evaluation["baselines"].items()]
    shown = (
        "rmse",
        "mae",
        "r2",
        "rmse_over_noise_floor",
        "accuracy",
        "f1_weighted",
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
    )
    metric_names = [m for m in shown if m in evaluation["model"]]
    table = ["| | " + " | ".join(metric_names) + " |", "|---" * (len(metric_names) + 1) + "|"]
    table += [f"| {label} | " + " | ".join(f"{s[m]:.3f}" for m in metric_names) + " |" for label, s in rows]
    checks = [
        f"- {'pass' if c['passed'] else 'FAIL'}: {name} = {c['value']:.4g}"
        + (f" (min {c['min']:g})" if "min" in c else f" (max {c['max']:g})")
        for name, c in meta["gate"]["checks"].items()
    ]
    inputs = []
    for name, spec in meta["inputs"].items():
        if spec["type"] == "string":
            detail = ", ".join(spec["categories"]) + (
                "; other values are refused"
                if spec["unknown"] == "error"
                else "; other values encode as none"
            )
        else:
            detail = f"{spec.get('min', '-inf')} to {spec.get('max', 'inf')}"
        if "fill" in spec:
            detail += f"; null becomes {spec['fill']!r}"
        inputs.append(f"| `{name}` | {spec['type']} | {detail} |")
    data = meta["data"]
    git = meta["git"]
    return "\n".join(
        [
            f"# Model card: {meta['name']} ({meta['version']})",
            "",
            meta["description"],
            "",
            f"- Task: {meta['task']}; predicts `{meta['output']['target']}`"
            + (
                f" (classes: {', '.join(map(str, meta['output']['classes']))})."
                if "classes" in meta["output"]
                else "."
            ),
            f"- Built from commit `{git['revision']}`{' with uncommitted changes' if git['dirty'] else ''};"
            " the md5 of every upstream output is in `metadata.json` (`lineage`).",
            f"- Data: {data['train_rows']} training, {data['val_rows']} validation and {data['test_rows']}"
            f" test rows, split by `{data['group']}` so that no group is in two splits.",
            "",
            "## Test metrics against baselines",
            "",
            *table,
            "",
            "## Gate",
            "",
            *checks,
            "",
            "## Inputs",
            "",
            "| field | type | allowed |",
            "|---|---|---|",
            *inputs,
            "",
            "## Limits",
            "",
            "- Valid only for records inside the ranges above; the predictor refuses the rest.",
            "- Scores are measured on held-out groups of the same source; a shift in who or what is"
            " measured needs a new evaluation.",
            "- Files: `model.onnx` (ONNX Runtime), `saved_model/` (TensorFlow Serving), checked by"
            " `sha256sum -c SHA256SUMS`.",
            "",
        ]
    )


def output_metadata(prep: features.Preprocessor, threshold: float) -> dict[str, Any]:
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
    params: Params, prep: features.Preprocessor, evaluation: dict[str, Any], split_rows: dict[str, int]
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
        "libraries": library_versions(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlpipe.package", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--splits", required=True, help="preprocess's folder: raw splits and their matrices")
    parser.add_argument("--preprocessor", required=True, help="fitted preprocessor JSON")
    parser.add_argument("--model", required=True, help="model folder from train")
    parser.add_argument("--evaluation", required=True, help="evaluate's metrics JSON")
    parser.add_argument("--lock", default="dvc.lock", help="dvc.lock, for the lineage")
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--metrics", required=True, help="gate verdict JSON to write")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    prep = features.Preprocessor.from_dict(io.read_json(args.preprocessor))
    evaluation = io.read_json(args.evaluation)
    rows = {name: io.parquet_rows(Path(args.splits, f"{name}.parquet")) for name in ("train", "val", "test")}
    meta = build_metadata(params, prep, evaluation, rows)
    lock = read_lock(Path(args.lock))
    meta["lineage"] = lineage(lock, "package", Path(args.lock))

    from mlpipe import savedmodel
    from mlpipe.model import dense_weights, load_model, predict
    from mlpipe.predictor import Predictor

    meta["git"] = git_revision(code_files(lock))
    # TF Serving's input names: the column names, with characters TensorFlow refuses replaced.
    meta["saved_model"] = {
        "signature": "serving_default",
        "inputs": savedmodel.signature_names(prep.input_columns),
    }

    network = load_model(args.model)
    layers = [onnx_graph.DenseLayer(*weights) for weights in dense_weights(network)]
    onnx_bytes = onnx_graph.build(prep, layers, params.package.name).SerializeToString()
    meta["version"] = bundle.sha256(onnx_bytes)[:12]
    meta["plan"] = features.plan_of(prep).to_dict()
    # Parity of both exports on the whole test split, batch by batch: ONNX through the serving code
    # path (schema checks, ONNX Runtime), the SavedModel through its serving signature, as TF
    # Serving runs it.
    served = Predictor.from_verified(bundle.Verified(Path(args.out), meta, onnx_bytes), threads=1)
    parity = tf_parity = 0.0
    with tempfile.TemporaryDirectory() as scratch:
        savedmodel.export(network, prep, Path(scratch, bundle.SAVED_MODEL))
        signature = savedmodel.load_signature(Path(scratch, bundle.SAVED_MODEL))
        x_test, offset = io.load_split(args.splits, "test")[0], 0
        for test in io.iter_parquet(Path(args.splits, "test.parquet")):
            # Keras on preprocess's numpy features against each export on the raw records.
            expected = predict(network, x_test[offset : offset + len(test)]).astype(np.float64)
            tf_output = signature(**savedmodel.feed(test, prep))[onnx_graph.OUTPUT].numpy()
            parity = max(parity, parity_difference(served.predict_frame(test).values, expected))
            tf_output = tf_output.astype(np.float64).reshape(expected.shape)
            tf_parity = max(tf_parity, parity_difference(tf_output, expected))
            offset += len(test)
    meta["gate"] = gate(evaluation, params.package.gate, {"onnx": parity, "saved_model": tf_parity})
    io.write_json(args.metrics, meta["gate"])
    if not meta["gate"]["passed"]:
        raise PipelineError("gate failed, not packaging: " + "; ".join(failures(meta["gate"])))

    with io.atomic_path(args.out, directory=True) as tmp:
        (tmp / bundle.MODEL).write_bytes(onnx_bytes)
        savedmodel.export(network, prep, tmp / bundle.SAVED_MODEL)
        (tmp / bundle.CARD).write_text(model_card(meta), encoding="utf-8")
        meta["files"] = bundle.file_hashes(tmp)
        metadata = io.dumps_json(meta, sort_keys=False).encode("utf-8")
        (tmp / bundle.METADATA).write_bytes(metadata)
        hashes = {**meta["files"], bundle.METADATA: bundle.sha256(metadata)}
        (tmp / bundle.CHECKSUMS).write_text(bundle.format_checksums(hashes), encoding="utf-8")
        bundle.verify(tmp)  # the bundle as serving will see it
    log.info(
        "packaged %s %s: parity %.2e (ONNX), %.2e (SavedModel), %s",
        meta["name"],
        meta["version"],
        parity,
        tf_parity,
        args.out,
    )


if __name__ == "__main__":
    raise SystemExit(run(main))
