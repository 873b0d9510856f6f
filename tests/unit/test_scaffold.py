"""`mlpipe init`'s inference on a table with one column of each kind, without running the pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlpipe.cli import inference
from mlpipe.cli import init as scaffold
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import load_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path) -> Path:
    """A repository root with what `mlpipe init` copies from, and a table under data/."""
    ignore = shutil.ignore_patterns("dvc.lock", "data", "models", "metrics")
    shutil.copytree(ROOT / "pipelines" / "dropout", tmp_path / "pipelines" / "dropout", ignore=ignore)
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    rng = np.random.default_rng(1)
    n = 300
    frame = pd.DataFrame(
        {
            "customerId": np.arange(n),
            "paid": rng.normal(size=n),
            "visits": rng.integers(0, 20, n),
            "notes": [f"call {i}" for i in range(n)],
            "member": rng.integers(0, 2, n).astype(bool),
            "signup": pd.date_range("2024-01-01", periods=n),
            "plan": rng.choice(["basic", "plus", None], n),
            "churned": rng.choice(["yes", "no"], n, p=[0.3, 0.7]),
        }
    )
    (tmp_path / "data").mkdir()
    frame.to_parquet(tmp_path / "data" / "customers.parquet")
    return tmp_path


def test_roles_contract_and_task_are_inferred_and_the_params_load(project):
    folder = scaffold.init("churn", "data/customers.parquet", "churned", root=project)
    params = load_params(folder / "params.yaml")
    prep, columns = params.preprocess, params.validate.columns
    assert (prep.task, prep.positive_class, prep.group) == ("binary", "yes", None)  # the rarer class
    assert (prep.ids, prep.numeric, prep.categorical) == (["customerId"], ["paid", "visits"], ["plan"])
    assert set(columns) == {"customerId", "paid", "visits", "plan", "churned"}  # the rest left out
    assert columns["plan"].allowed == ["basic", "plus"] and columns["plan"].nullable
    assert columns["visits"].dtype == "int" and columns["visits"].min == 0 and columns["visits"].max >= 21
    assert columns["customerId"].max is None  # new customers bring larger ids
    text = (folder / "params.yaml").read_text()
    for left_out in (
        "notes: left out (300 distinct texts",
        "member: left out (true/false",
        "signup: left out (a date",
    ):
        assert left_out in text
    assert params.package.gate.metric == "log_loss" and params.registry.metric == "model.log_loss"
    pipeline = yaml.safe_load((folder / "dvc.yaml").read_text())
    assert pipeline["stages"]["ingest"]["deps"][0] == "../../data/customers.parquet"
    assert "ROC" in str(pipeline["plots"]) and "students" not in (folder / "dvc.yaml").read_text()


@pytest.mark.parametrize(
    ("values", "task", "expected"),
    [
        ([1.5, 2.5, 3.0], None, "regression"),
        ([0, 1, 1], None, "binary"),
        (["a", "b", "c"], None, "multiclass"),
        ([1, 2, 3], "multiclass", "multiclass"),
    ],
)
def test_the_task_follows_the_target(values, task, expected):
    assert inference.infer_task(pd.Series(values, name="y"), task, max_levels=100) == expected


def test_a_target_with_more_classes_than_max_levels_is_refused(project):
    with pytest.raises(
        PipelineError, match=r"--target 'y': 5 classes, more than preprocess.max_levels \(4\)"
    ):
        inference.infer_task(pd.Series(list("abcde"), name="y"), "multiclass", max_levels=4)
    with pytest.raises(PipelineError, match="holds text, not numbers"):
        inference.infer_task(pd.Series(list("abc"), name="y"), "regression", max_levels=4)
    with pytest.raises(PipelineError, match="data/elsewhere.csv: file not found"):
        scaffold.init("churn", "data/elsewhere.csv", "churned", root=project)
    assert not (project / "pipelines" / "churn").exists()


def test_a_database_table_is_read_with_its_query_and_named_in_ingest(project):
    import sqlalchemy

    database = project / "data" / "customers.db"
    url = f"sqlite:///{database}"
    frame = pd.read_parquet(project / "data" / "customers.parquet").drop(columns=["signup", "member"])
    frame.to_sql("customers", sqlalchemy.create_engine(url), index=False)
    with pytest.raises(PipelineError, match="a database URL needs --query"):
        scaffold.init("churn", url, "churned", root=project)
    assert not (project / "pipelines" / "churn").exists()

    query = "SELECT * FROM customers WHERE visits >= 0"
    folder = scaffold.init("churn", url, "churned", query=query, root=project)
    params = load_params(folder / "params.yaml")
    assert (params.ingest.url, params.ingest.query) == (url, query)
    prep = params.preprocess
    assert (prep.task, prep.ids, prep.numeric, prep.categorical) == (
        "binary",
        ["customerId"],
        ["paid", "visits"],
        ["plan"],
    )
    assert params.validate.columns["plan"].nullable  # NULL in the database, as None in the file
    assert f"from {url} (--query)" in (folder / "params.yaml").read_text()
    ingest = yaml.safe_load((folder / "dvc.yaml").read_text())["stages"]["ingest"]
    assert not any("customers" in str(dep) for dep in ingest.get("deps", []))  # no file for DVC to track
    assert ingest["always_changed"] is True  # so each repro reads the table again


@pytest.mark.parametrize(
    ("rows", "units", "dropout", "batch_size", "linear_margin"),
    [
        (300, [32, 16], 0.2, 32, -0.25),
        (5_000, [64, 32, 16], 0.0, 64, -0.05),
        (60_000, [128, 64, 32, 16], 0.0, 256, -0.05),
    ],
)
def test_training_and_the_gate_are_sized_to_the_table(
    tmp_path, rows, units, dropout, batch_size, linear_margin
):
    shutil.copytree(ROOT / "pipelines" / "dropout", tmp_path / "pipelines" / "dropout")
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    rng = np.random.default_rng(2)
    (tmp_path / "data").mkdir()
    pd.DataFrame({"x": rng.normal(size=rows), "y": rng.normal(size=rows)}).to_parquet(
        tmp_path / "data" / "t.parquet"
    )
    params = load_params(scaffold.init("t", "data/t.parquet", "y", root=tmp_path) / "params.yaml")
    assert (params.train.units, params.train.batch_size) == (units, batch_size)
    assert params.train.dropout == [dropout] * len(units)
    assert params.train.epochs == inference.EPOCHS  # early stopping, not the budget, ends training
    assert params.package.gate.min_improvement == {"mean": 0.1, "linear": linear_margin}
    assert f"inferred: {rows} rows:" in (tmp_path / "pipelines" / "t" / "params.yaml").read_text()
