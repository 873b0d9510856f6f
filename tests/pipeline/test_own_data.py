"""Bring your own data: real public datasets that scikit-learn ships, through the real pipeline.

Each dataset gets its own pipeline folder, as the README tells a team to do: ``mlpipe init`` from
the team's CSV, with every default as inferred (contract, roles, task, gate, and training sized to
the table), then ``dvc repro``. No engine code changes. The model is compared with scikit-learn's
baselines fitted on the same split (evaluate's ``baselines``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn import datasets
from tests.pipeline.repo import ROOT, make_repo, sh
from tests.serving.test_server import serving

from mlpipe.serving.predictor import Predictor

pytestmark = pytest.mark.pipeline


def diabetes() -> pd.DataFrame:
    """Regression, with a categorical column and 5% missing BMI values to impute; every 15th row's
    sex is missing too (an empty cell in the CSV)."""
    frame = datasets.load_diabetes(as_frame=True, scaled=False).frame
    frame["sex"] = np.where(frame["sex"] == 1, "female", "male").astype(object)
    frame.loc[::20, "bmi"] = np.nan
    frame.loc[7::15, "sex"] = None
    return frame


def breast_cancer() -> pd.DataFrame:
    """Binary classification with string labels (malignant, the rarer, is the positive class)."""
    data = datasets.load_breast_cancer(as_frame=True)
    return data.frame.assign(target=np.asarray(data.target_names)[data.target])


def wine() -> pd.DataFrame:
    """Multiclass classification, three cultivars."""
    data = datasets.load_wine(as_frame=True)
    return data.frame.assign(target=np.asarray(data.target_names)[data.target])


DATASETS = {"diabetes": diabetes, "breast-cancer": breast_cancer, "wine": wine}
TEMPLATE_ONLY = shutil.ignore_patterns("dvc.lock", "data", "models", "metrics")  # what a copy keeps


def write_table(repo: Path, name: str, frame: pd.DataFrame) -> None:
    """The team's table as a CSV under data/own/, with a row id (each row its own: no group)."""
    frame = frame.assign(row_id=np.arange(1, len(frame) + 1))
    (repo / "data" / "own").mkdir(parents=True, exist_ok=True)
    frame.to_csv(repo / "data" / "own" / f"{name}.csv", index=False)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """Each table through `mlpipe init` with its defaults only, as the README tells a team to do
    (the engine's settings are the dropout pipeline's, copied as the project ships them)."""
    repo = make_repo(tmp_path_factory.mktemp("own") / "project")
    shutil.copytree(ROOT / "pipelines" / "dropout", repo / "pipelines" / "dropout", ignore=TEMPLATE_ONLY)
    for name, load in DATASETS.items():
        write_table(repo, name, load())
        sh(repo, "mlpipe", "init", name, "--data", f"data/own/{name}.csv", "--target", "target")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "our own data")
    return repo


def metrics(folder: Path, name: str) -> dict:
    return json.loads((folder / "metrics" / f"{name}.json").read_text())


def test_init_infers_the_contract_roles_and_task_for_review(repo):
    params = (repo / "pipelines" / "diabetes" / "params.yaml").read_text()
    assert "sex: {dtype: str, nullable: true, allowed: [female, male]}  # inferred: categorical" in params
    assert "bmi: {dtype: float, nullable: true, min: " in params and "5.2% missing" in params
    assert "row_id: {dtype: int, min: 0}  # inferred: id; named like an id" in params
    assert "task: regression  # inferred: the target holds numbers" in params
    assert "group: null  # no rows share a group" in params
    pipeline = yaml.safe_load((repo / "pipelines" / "diabetes" / "dvc.yaml").read_text())
    assert pipeline["stages"]["ingest"]["deps"][0] == "../../data/own/diabetes.csv"
    assert list(pipeline["artifacts"]) == ["diabetes"]
    assert "predicted vs actual" in json.dumps(pipeline["plots"]) and "ROC" not in json.dumps(
        pipeline["plots"]
    )


@pytest.mark.parametrize(
    ("table", "args", "message"),
    [
        ("target,x\n1,1\n1,2\n1,3\n", [], "--target 'target': one value only (1): nothing to learn"),
        ("target,x\n,1\n,2\n", [], "--target 'target': every value is missing"),
        ("target,x\na,1\nb,2\nc,3\n", ["--task", "binary"], "--target 'target': 3 classes, not 2"),
        ("target,x\n1.5,1\n2.5,2\n", ["--group", "student"], "--group 'student' is not a column (target, x)"),
        ("\x00\x01\xff\xfe", [], "data/own/bad.csv: a binary file, not CSV text"),
    ],
)
def test_init_refuses_an_unusable_table_with_one_line_and_writes_nothing(repo, table, args, message):
    source = repo / "data" / "own" / "bad.csv"
    source.write_bytes(table.encode("latin-1"))
    try:
        refused = sh(
            repo,
            "mlpipe",
            "init",
            "bad",
            "--data",
            "data/own/bad.csv",
            "--target",
            "target",
            *args,
            check=False,
        )
    finally:
        source.unlink()
    assert refused.returncode == 1 and message in refused.stderr, refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert not (repo / "pipelines" / "bad").exists()
    assert not [p for p in (repo / "pipelines").iterdir() if p.name.startswith(".")]  # no temporary folder


def test_init_refuses_a_folder_that_exists(repo):
    before = (repo / "pipelines" / "wine" / "params.yaml").read_text()
    refused = sh(
        repo, "mlpipe", "init", "wine", "--data", "data/own/wine.csv", "--target", "target", check=False
    )
    assert refused.returncode == 1 and "pipelines/wine: exists already" in refused.stderr
    assert (repo / "pipelines" / "wine" / "params.yaml").read_text() == before


def gap_closed(scores: dict, metric: str, naive: str) -> float:
    """The share of the naive baseline's gap to the better of the linear and gradient-boosting
    baselines that the model closes, on a lower-is-better metric (1: as good as the better one).
    This is how "within 5% of the better baseline" is judged on log loss: a relative 5% of a log
    loss near 0 on 27-86 test rows is less than one row's confidence."""
    baselines = scores["baselines"]
    best = min(baselines["linear"][metric], baselines["hgb"][metric])
    return (baselines[naive][metric] - scores["model"][metric]) / (baselines[naive][metric] - best)


def relative_to_best(scores: dict, metric: str) -> float:
    """The model's metric over the better of the linear and gradient-boosting baselines', minus 1."""
    baselines = scores["baselines"]
    return scores["model"][metric] / min(baselines["linear"][metric], baselines["hgb"][metric]) - 1


def test_regression_on_diabetes_with_imputation(repo, tmp_path):
    sh(repo, "dvc", "repro", "pipelines/diabetes/dvc.yaml")
    folder = repo / "pipelines" / "diabetes"
    prep = metrics(folder, "preprocess")
    assert sum(prep["missing"]["bmi"].values()) == 23  # every 20th of 442 rows, reported per split
    assert prep["fill"]["bmi"] == pytest.approx(
        pd.read_parquet(folder / "data" / "processed" / "train.parquet")["bmi"].median()
    )
    scores = metrics(folder, "evaluate")
    baselines = scores["baselines"]
    assert scores["model"]["rmse"] < 0.85 * baselines["mean"]["rmse"]
    assert relative_to_best(scores, "rmse") <= 0.05  # the reading: within 5% of the better
    predictor = Predictor(folder / "models" / "package")
    row = {"age": 50.0, "sex": "female", "bmi": None, "bp": 90.0, "s1": 180.0, "s2": 100.0, "s3": 50.0}
    row |= {"s4": 4.0, "s5": 4.5, "s6": 90.0}
    filled = predictor.predict_one({**row, "bmi": prep["fill"]["bmi"]})
    assert predictor.predict_one(row) == filled  # a null bmi is imputed with the training median
    assert predictor.predict_one({**row, "bmi": prep["fill"]["bmi"] + 10}) != filled
    assert predictor.metadata["inputs"]["bmi"]["fill"] == prep["fill"]["bmi"]

    # The team's CSV, empty cells and all: mlpipe predict scores every test row exactly as the
    # pipeline's split holds it (ingest and predict read the same cells as missing).
    test = pd.read_parquet(folder / "data" / "processed" / "test.parquet")
    assert test["sex"].isna().sum() > 0 and not (test["sex"] == "").any()
    out = tmp_path / "scored.csv"
    sh(
        repo,
        "mlpipe",
        "predict",
        "--bundle",
        str(folder / "models" / "package"),
        "data/own/diabetes.csv",
        "-o",
        str(out),
    )
    scored = pd.read_csv(out).set_index("row_id")["prediction"]
    np.testing.assert_allclose(
        scored.loc[test["row_id"]].to_numpy(), predictor.predict_frame(test).values, rtol=0, atol=1e-9
    )


def test_binary_classification_on_breast_cancer(repo, tmp_path):
    sh(repo, "dvc", "repro", "pipelines/breast-cancer/dvc.yaml")
    folder = repo / "pipelines" / "breast-cancer"
    scores = metrics(folder, "evaluate")
    model, baselines = scores["model"], scores["baselines"]
    assert model["roc_auc"] > 0.95 and model["accuracy"] > 0.9
    assert model["log_loss"] < 1.5 * baselines["linear"]["log_loss"]
    assert model["log_loss"] < 0.5 * baselines["majority"]["log_loss"]
    assert relative_to_best(scores, "log_loss") <= 0.05 and gap_closed(scores, "log_loss", "majority") >= 0.95
    assert set(model["per_class"]) == {"benign", "malignant"}
    for png in ("confusion_matrix", "roc", "precision_recall", "calibration"):
        assert (folder / "metrics" / "evaluate" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    bundle = folder / "models" / "package"
    meta = json.loads((bundle / "metadata.json").read_text())
    assert meta["output"]["classes"] == ["benign", "malignant"] and meta["output"]["threshold"] == 0.5

    test = pd.read_parquet(folder / "data" / "processed" / "test.parquet")
    result = Predictor(bundle).predict_frame(test)
    assert np.mean(np.array(result.labels) == test["target"].to_numpy()) == pytest.approx(model["accuracy"])
    source = tmp_path / "in.csv"
    test.drop(columns="target").to_csv(source, index=False)
    sh(repo, "mlpipe", "predict", "--bundle", str(bundle), str(source), "-o", str(tmp_path / "out.csv"))
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["row_id", "label", "probability_benign", "probability_malignant"]
    assert out["label"].tolist() == result.labels
    np.testing.assert_allclose(out["probability_malignant"], result.values, atol=1e-9)
    record = {
        k: (v.item() if hasattr(v, "item") else v) for k, v in test.drop(columns="target").iloc[0].items()
    }
    with serving("--bundle", str(bundle), "--route-key", "row_id") as client:
        answer = client.post("/predict", json=record).json()
    assert answer["label"] == result.labels[0]
    assert answer["probabilities"]["malignant"] == pytest.approx(result.values[0], abs=1e-12)


def test_multiclass_on_wine(repo):
    repro = sh(repo, "dvc", "repro", "pipelines/wine/dvc.yaml")
    printed = repro.stdout + repro.stderr
    assert "E0000" not in printed and "do not sum to one" not in printed  # no noise from TF or sklearn
    folder = repo / "pipelines" / "wine"
    scores = metrics(folder, "evaluate")
    assert scores["model"]["accuracy"] > 0.85
    assert scores["model"]["log_loss"] < 0.5 * scores["baselines"]["majority"]["log_loss"]
    assert relative_to_best(scores, "log_loss") <= 0.05 and gap_closed(scores, "log_loss", "majority") >= 0.95
    assert set(scores["model"]["per_class"]) == {"class_0", "class_1", "class_2"}
    test = pd.read_parquet(folder / "data" / "processed" / "test.parquet")
    assert metrics(folder, "preprocess")["test"]["rows"] == len(test) == round(0.15 * 178)  # row by row
    card = (folder / "models" / "package" / "README.md").read_text()
    assert "split row by row (no group column)" in card
    result = Predictor(folder / "models" / "package").predict_frame(test)
    assert result.values.shape == (len(test), 3)
    np.testing.assert_allclose(result.values.sum(axis=1), 1.0, atol=1e-6)
    assert Predictor(folder / "models" / "package").predict_one(
        test.drop(columns="target").iloc[0].to_dict()
    ) in {
        "class_0",
        "class_1",
        "class_2",
    }


def test_nothing_in_the_engine_changed(repo):
    """After the pipelines above ran: no engine file differs from the commit, and each pipeline's
    dvc.yaml runs exactly the dropout pipeline's commands (only the ingest dependency differs)."""
    assert sh(repo, "git", "status", "--porcelain", "--untracked-files=all", "--", "src").stdout == ""
    reference = yaml.safe_load((ROOT / "pipelines" / "dropout" / "dvc.yaml").read_text())["stages"]
    for name in DATASETS:
        text = (repo / "pipelines" / name / "dvc.yaml").read_text()
        stages = yaml.safe_load(text.replace("table.parquet", "students.parquet"))["stages"]  # init's names
        assert {k: v["cmd"] for k, v in stages.items()} == {k: v["cmd"] for k, v in reference.items()}
        changed = {k for k in stages if stages[k]["deps"] != reference[k]["deps"]}
        assert changed == {"ingest"}, name
