"""The package stage: the gate, the bundle's contents, its byte stability, and parity with Keras."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests.serving.conftest import run_package

from mlpipe import package
from mlpipe.bundle import layout as bundle
from mlpipe.bundle import lineage
from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import GateParams
from mlpipe.evaluation import gate
from mlpipe.features import preprocessor

keras = pytest.importorskip("keras")
from mlpipe.training.model import dense_weights, load_model, predict  # noqa: E402

EVALUATION = {
    "model": {"rmse": 0.42, "r2": 0.9},
    "baselines": {"mean": {"rmse": 1.4}, "linear": {"rmse": 0.52}, "hgb": {"rmse": 0.42}},
}


def gate_params(**overrides) -> GateParams:
    values = {
        "metric": "rmse",
        "min_improvement": {"mean": 0.5, "linear": 0.1, "hgb": -0.03},
        "max": {"rmse": 0.5},
        "min": {"r2": 0.85},
        "parity_tolerance": 1e-5,
    }
    return GateParams(**{**values, **overrides})


def test_gate_passes_a_model_that_beats_every_margin():
    verdict = gate.verdict(EVALUATION, gate_params(), parity={"onnx": 1e-6, "saved_model": 0.0})
    assert verdict["passed"] is True
    assert verdict["checks"]["rmse_improvement_over_linear"]["value"] == pytest.approx(1 - 0.42 / 0.52)
    assert gate.failures(verdict) == []


def test_gate_names_each_failed_check():
    params = gate_params(min_improvement={"linear": 0.3}, min={"r2": 0.95})
    verdict = gate.verdict(EVALUATION, params, parity={"onnx": 1e-6, "saved_model": 1e-3})
    assert verdict["passed"] is False
    failed = gate.failures(verdict)
    assert failed == [
        "rmse_improvement_over_linear = 0.1923 < min 0.3",
        "r2 = 0.9 < min 0.95",
        "parity_max_diff_saved_model = 0.001 > max 1e-05",
    ]


def test_gate_refuses_an_unknown_baseline_or_metric():
    with pytest.raises(PipelineError, match=r"package.gate.min_improvement.forest: no such baseline"):
        gate.verdict(EVALUATION, gate_params(min_improvement={"forest": 0.1}), parity={"onnx": 0.0})
    with pytest.raises(PipelineError, match=r"package.gate.max.rmsle: evaluate reports no such metric"):
        gate.verdict(EVALUATION, gate_params(max={"rmsle": 1.0}), parity={"onnx": 0.0})


def test_input_schema_takes_ranges_from_the_contract_and_levels_from_training(built: Path, params):
    prep = preprocessor.Preprocessor.from_dict(files.read_json(built / "prep.json"))
    schema = package.input_schema(prep, params.validate.columns)
    assert list(schema) == prep.input_columns
    assert schema["age"] == {"type": "integer", "min": 18, "max": 35}
    assert schema["estimated_base_time"] == {"type": "number", "min": 0.05, "max": 24.0}
    assert schema["subject"]["categories"] == prep.categories["subject"]
    assert schema["subject"]["unknown"] == "ignore"
    assert schema["subject"]["allowed"] == params.validate.columns["subject"].allowed  # refused beyond it
    assert "allowed" not in schema["time_of_day"]  # its categories refuse any other level already
    assert schema["time_of_day"]["unknown"] == "error"  # a cyclical level needs a position


def test_lineage_reads_the_lock_and_refuses_a_stale_one(tmp_path: Path):
    out = tmp_path / "prep.json"
    out.write_text("{}")
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "stages:\n  preprocess:\n    outs:\n    - path: "
        + str(out)
        + "\n      md5: 99914b932bd37a50b983c5e7c90ae93b\n"
    )
    read = lineage.read_lock(lock)
    assert lineage.outputs(read, "package", lock) == {str(out): "99914b932bd37a50b983c5e7c90ae93b"}
    out.write_text("{ }")
    with pytest.raises(PipelineError, match="stale"):
        lineage.outputs(read, "package", lock)
    with pytest.raises(PipelineError, match="run this stage with `dvc repro`"):
        lineage.read_lock(tmp_path / "missing.lock")


def test_code_files_are_the_modules_the_stage_imports_and_the_lock_names(tmp_path: Path):
    import json
    import subprocess
    import sys

    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "stages:\n  train:\n    deps:\n    - path: src/mlpipe/train.py\n      md5: x\n"
        f"    - path: {Path(__file__).resolve().parents[2]}/src/mlpipe/training\n      md5: y.dir\n"
    )
    script = (
        "import json, sys\n"
        "from mlpipe import package\nfrom mlpipe.bundle import lineage, savedmodel\n"
        "from mlpipe.serving import predictor\nfrom mlpipe.training import model\n"
        f"print(json.dumps(lineage.code_files(lineage.read_lock(__import__('pathlib').Path({str(lock)!r})))))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    names = {Path(f).name for f in json.loads(run.stdout)}
    assert {
        "package.py",
        "gate.py",
        "lineage.py",
        "card.py",
        "onnx_graph.py",
        "savedmodel.py",
        "predictor.py",
        "train.py",
        "feed.py",  # in src/mlpipe/training, a folder dep
    } <= names
    assert not names & {"app.py", "main.py", "batch.py", "tags.py"}  # serving edits change nothing


def test_the_revision_is_the_last_commit_of_those_files(tmp_path: Path, monkeypatch):
    import subprocess

    def git(*args: str) -> str:
        env = {
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@x",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@x",
        }
        return subprocess.run(
            ["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True, env=env
        ).stdout

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "-A")
    git("commit", "-qm", "code")
    code_commit = git("rev-parse", "HEAD").strip()
    (tmp_path / "README.md").write_text("docs\n")
    git("add", "-A")
    git("commit", "-qm", "docs")
    monkeypatch.chdir(tmp_path)
    paths = [str(tmp_path / "code.py")]
    assert lineage.git_revision(paths) == {"revision": code_commit, "dirty": False}
    (tmp_path / "code.py").write_text("x = 2\n")
    assert lineage.git_revision(paths) == {"revision": code_commit, "dirty": True}


def test_bundle_holds_the_files_metadata_and_card(built: Path):
    folder = built / "bundle"
    assert bundle.list_files(folder) == [
        "README.md",
        "SHA256SUMS",
        "metadata.json",
        "model.onnx",
        "reference.json",
        "saved_model/fingerprint.pb",
        "saved_model/saved_model.pb",
        "saved_model/variables/variables.data-00000-of-00001",
        "saved_model/variables/variables.index",
    ]
    meta = json.loads((folder / "metadata.json").read_text())
    onnx_bytes = (folder / "model.onnx").read_bytes()
    assert meta["name"] == "study-time" and meta["task"] == "regression"
    assert meta["version"] == bundle.sha256(onnx_bytes)[:12]
    assert meta["files"]["model.onnx"] == bundle.sha256(onnx_bytes)
    assert set(meta["files"]) == set(bundle.list_files(folder)) - {"metadata.json", "SHA256SUMS"}
    assert meta["metrics"] == {
        k: v for k, v in files.read_json(built / "evaluate.json").items() if k in meta["metrics"]
    }
    assert meta["params"]["train"]["units"] == [32, 16]
    lock = yaml.safe_load((built / "dvc.lock").read_text())
    assert meta["lineage"][str(built / "prep.json")] == lock["stages"]["preprocess"]["outs"][0]["md5"]
    assert {"python", "numpy", "onnx", "onnxruntime", "keras", "tensorflow"} <= set(meta["libraries"])
    assert meta["gate"] == files.read_json(built / "package.json")
    card = (folder / "README.md").read_text()
    assert f"# Model card: study-time ({meta['version']})" in card
    assert f"| model (this bundle) | {meta['metrics']['model']['rmse']:.3f}" in card
    assert "| `subject` | string |" in card


def test_the_reference_sketches_every_input_of_the_training_split_and_the_test_predictions(
    built: Path, test_frame
):
    from mlpipe.bundle import reference
    from mlpipe.serving.predictor import Predictor

    folder = built / "bundle"
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["files"]["reference.json"] == bundle.sha256((folder / "reference.json").read_bytes())
    ref = reference.Reference.from_dict(files.read_json(folder / "reference.json"), "reference.json")
    train = files.read_parquet(built / "splits" / "train.parquet")
    assert sorted(ref.inputs) == sorted(meta["inputs"])
    for name, sketch in ref.inputs.items():
        assert sketch.total == len(train), name
        if meta["inputs"][name]["type"] == "string":
            assert sketch.kind == "category"
            assert sketch.levels == train[name].dropna().astype(str).value_counts().to_dict()
        else:  # deciles of the training values: each bin holds about a tenth
            assert sketch.kind == "number" and sketch.missing == int(train[name].isna().sum())
            again = sketch.empty_like()
            again.add(train[name])
            assert again.counts == sketch.counts
            if len(sketch.edges) == reference.BINS - 1:
                assert max(sketch.counts) < 0.2 * len(train), name
    predicted = Predictor(folder).predict_frame(test_frame).values
    assert ref.prediction.total == len(test_frame)
    live = ref.prediction.empty_like()
    live.add(predicted)
    assert live.counts == ref.prediction.counts and reference.psi(ref.prediction, live) == 0.0


def test_the_bundle_predicts_what_keras_predicts_on_the_whole_test_split(built: Path, test_frame):
    from mlpipe.serving.predictor import Predictor

    prep = preprocessor.Preprocessor.from_dict(files.read_json(built / "prep.json"))
    expected = predict(load_model(built / "model"), preprocessor.transform(test_frame, prep))
    onnx = Predictor(built / "bundle").predict_frame(test_frame).values
    assert len(onnx) == len(test_frame) > 100
    assert np.max(np.abs(onnx - expected)) <= 1e-5

    from mlpipe.bundle import savedmodel

    serve = savedmodel.load_signature(built / "bundle" / "saved_model")
    tf_values = serve(**savedmodel.feed(test_frame, prep))["prediction"].numpy().reshape(-1)
    assert np.max(np.abs(tf_values - expected)) <= 1e-5


def test_a_failed_gate_writes_the_verdict_and_no_bundle(built: Path, tmp_path: Path):
    raw = yaml.safe_load((built / "params.yaml").read_text())
    raw["package"]["gate"]["max"] = {"rmse": 0.01}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    with pytest.raises(PipelineError, match=r"gate failed, not packaging: rmse = [0-9.]+ > max 0.01"):
        run_package(built, tmp_path / "bundle", tmp_path / "verdict.json", params)
    assert files.read_json(tmp_path / "verdict.json")["passed"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "verdict.json"]


def test_a_lambda_layer_is_refused_for_export():
    inputs = keras.Input(shape=(3,))
    outputs = keras.layers.Dense(1)(keras.layers.Lambda(lambda x: x * 2, name="doubling")(inputs))
    with pytest.raises(PipelineError, match="layer 'doubling' is a Lambda"):
        dense_weights(keras.Model(inputs, outputs))


def test_parity_is_absolute_below_one_and_relative_above():
    keras_out = np.array([0.5, 200.0])
    assert gate.parity_difference(keras_out + [1e-6, 0.0], keras_out) == pytest.approx(1e-6)
    assert gate.parity_difference(keras_out + [0.0, 2e-3], keras_out) == pytest.approx(1e-5)
