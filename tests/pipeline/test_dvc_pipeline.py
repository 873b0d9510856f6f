"""The real ``dvc`` on the real dvc.yaml, in a temporary git repository with tiny params.

The run's one built and committed tiny project is copied for the module (its first ``dvc repro``
kept for the first test), then used as a user would: a no-op repro, targeted re-runs, forced
re-runs, an experiment and a metrics diff. Each test needs only the built repository, so each
passes alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pandas as pd
import pytest
import yaml
from tests.pipeline.repo import OTHER_HOST, copy_project, sh, stages_run, user_env

pytestmark = pytest.mark.pipeline


FIRST_RUN: dict[str, str] = {}


@pytest.fixture(scope="module")
def repo(built_project, tmp_path_factory):
    """A copy of the tiny project, reproduced once and committed (shared by the run's modules)."""
    built, FIRST_RUN["stdout"] = built_project
    return copy_project(built, tmp_path_factory.mktemp("repo") / "project")


def test_repro_runs_every_stage_then_nothing(repo):
    assert stages_run(FIRST_RUN["stdout"]) == [
        "simulate",
        "ingest",
        "validate",
        "preprocess",
        "train",
        "evaluate",
        "package",
    ]
    metrics = json.loads((repo / "metrics" / "evaluate.json").read_text())
    assert metrics["model"]["rmse"] < metrics["baselines"]["mean"]["rmse"]
    again = sh(repo, "dvc", "repro")
    assert stages_run(again.stdout) == []
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status").stdout


def test_the_bundle_records_its_lineage_and_serves(repo):
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    outs = {
        o["path"]: o["md5"] for name, st in lock["stages"].items() if name != "package" for o in st["outs"]
    }
    meta = json.loads((repo / "models" / "package" / "metadata.json").read_text())
    assert meta["lineage"] == outs
    code_commit = sh(repo, "git", "log", "-1", "--format=%H", "--", "src").stdout.strip()
    assert meta["git"] == {"revision": code_commit, "dirty": False}
    assert json.loads((repo / "metrics" / "package.json").read_text())["passed"] is True
    from mlpipe.serving.predictor import Predictor

    test = pd.read_parquet(repo / "data" / "processed" / "test.parquet")
    assert Predictor(repo / "models" / "package").predict_frame(test).values.shape == (len(test),)


def test_another_host_retrains_the_committed_model_bit_for_bit(repo):
    """Train, evaluate and package again on an emulated other machine: the same bytes, so a fresh
    clone elsewhere leaves ``git status`` clean. Without the pins (:mod:`mlpipe.core.host`,
    :mod:`mlpipe.evaluation.portable`) one core alone changes the weights and OpenBLAS's kernels the
    linear baseline."""
    lock = (repo / "dvc.lock").read_text()
    rerun = sh(repo, "dvc", "repro", "--force", "-s", "train", "evaluate", "package", host=OTHER_HOST)
    assert stages_run(rerun.stdout) == ["train", "evaluate", "package"]
    assert (repo / "dvc.lock").read_text() == lock
    assert sh(repo, "git", "status", "--porcelain").stdout == ""
    assert "ONEDNN_MAX_CPU_ISA=SSE41 overridden to AVX2" in rerun.stderr


def test_a_failed_gate_stops_the_stage_with_the_reason_and_writes_no_bundle(repo):
    params = repo / "params.yaml"
    original = params.read_text()
    data = yaml.safe_load(original)
    data["package"]["gate"]["max"]["rmse"] = 0.01
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        failed = sh(repo, "dvc", "repro", check=False)
        assert failed.returncode != 0
        assert "mlpipe.package: error: gate failed, not packaging: rmse = " in failed.stderr
        assert "> max 0.01" in failed.stderr
        verdict = json.loads((repo / "metrics" / "package.json").read_text())
        assert verdict["passed"] is False and verdict["checks"]["rmse"]["passed"] is False
        assert not (repo / "models" / "package").exists()
    finally:
        params.write_text(original)
        sh(repo, "git", "checkout", "--", "metrics/package.json")
        sh(repo, "dvc", "checkout", "-q")
    assert (repo / "models" / "package" / "metadata.json").exists()


def test_evaluate_param_reruns_only_evaluate(repo):
    params = repo / "params.yaml"
    original = params.read_text()
    data = yaml.safe_load(original)
    data["evaluate"]["linear_alpha"] = 2.0
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        assert stages_run(sh(repo, "dvc", "repro", "--dry").stdout) == ["evaluate", "package"]
    finally:
        params.write_text(original)


def test_editing_a_module_reruns_only_the_stages_that_import_it(repo):
    for module, expected in (
        ("evaluate.py", ["evaluate"]),
        ("training/model.py", ["train", "evaluate", "package"]),
        ("serving/http/app.py", []),
        ("serving/predictor.py", ["package"]),
        ("core/files.py", ["simulate", "ingest", "validate", "preprocess", "train", "evaluate", "package"]),
    ):
        path = repo / "src" / "mlpipe" / module
        original = path.read_text()
        path.write_text(original + "\n# an edit\n")
        try:
            assert stages_run(sh(repo, "dvc", "repro", "--dry").stdout) == expected, module
        finally:
            path.write_text(original)


def killed_while_packaging(repo) -> list[str]:
    """``dvc repro --force --single-item package`` killed with SIGKILL (stage and DVC alike) once the
    stage has started writing its bundle; the temporary folders it left."""
    process = subprocess.Popen(
        ["dvc", "repro", "--force", "--single-item", "package"],
        cwd=repo,
        env=user_env(repo),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not list((repo / "models").glob(".package.*")):
        assert process.poll() is None and time.monotonic() < deadline, "package ended before it was killed"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return sorted(p.name for p in (repo / "models").glob(".package.*"))


def test_forced_repro_after_a_kill_gives_the_committed_lock(repo):
    # Two runs of every stage, each in a fresh process as DVC runs it (the first repro, committed,
    # and a forced one): the bundle (ONNX, SavedModel, metadata) is byte-stable, and the lock's md5
    # of models/package proves it. Before the forced run, a package stage killed mid-bundle leaves
    # its temporary folder: git ignores it, and the next run of the stage removes it.
    committed = (repo / "dvc.lock").read_text()
    assert "path: models/package" in committed
    assert killed_while_packaging(repo)
    # DVC removed the stage's outputs before running it (the verdict shows as deleted); the
    # temporary folder does not show
    assert sh(repo, "git", "status", "--porcelain").stdout.split("\n")[:-1] == [" D metrics/package.json"]
    forced = sh(repo, "dvc", "repro", "--force")
    assert len(stages_run(forced.stdout)) == 7
    assert (repo / "dvc.lock").read_text() == committed
    assert not list((repo / "models").glob(".package.*"))
    assert sh(repo, "git", "status", "--porcelain").stdout == ""


def test_misspelt_set_param_fails_loudly(repo):
    # DVC refuses a misspelt existing-style key itself...
    refused = sh(repo, "dvc", "exp", "run", "-S", "train.learning_rat=0.1", check=False)
    assert refused.returncode != 0 and "learning_rat" in refused.stderr
    # ...but appends a new key with "+": the stage's params loader must stop it.
    appended = sh(repo, "dvc", "exp", "run", "-S", "+train.learning_rat=0.1", check=False)
    assert appended.returncode != 0
    assert "mlpipe.train: error: params.yaml: unknown key 'train.learning_rat'" in appended.stderr
    assert not (repo / "models" / "model").exists()
    sh(repo, "git", "checkout", "--", "params.yaml")
    sh(repo, "dvc", "checkout", "-q")


def test_experiment_is_listed_and_diffed(repo):
    run = sh(repo, "dvc", "exp", "run", "-n", "faster-lr", "-S", "train.learning_rate=0.004")
    assert stages_run(run.stdout) == ["train", "evaluate", "package"]
    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    names = [exp.get("name") for entry in shown for exp in (entry.get("experiments") or [])]
    assert "faster-lr" in names
    diff = json.loads(sh(repo, "dvc", "metrics", "diff", "--json").stdout)
    changed = diff["metrics/evaluate.json"]
    assert changed["model.rmse"]["diff"] != 0
    params_diff = json.loads(sh(repo, "dvc", "params", "diff", "--json").stdout)
    assert params_diff["params.yaml"]["train.learning_rate"]["new"] == 0.004


def test_going_back_to_earlier_params_restores_from_the_run_cache(repo):
    # After the experiment above (learning rate 0.004 in the workspace): back to the committed
    # params, then to the experiment's again. Neither retrains; both restore the same bytes.
    sh(repo, "git", "checkout", "--", "params.yaml")
    back = sh(repo, "dvc", "repro")
    assert stages_run(back.stdout) == []
    for stage in ("train", "evaluate", "package"):
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in back.stdout
    assert sh(repo, "git", "status", "--porcelain").stdout == ""
    again = sh(repo, "dvc", "exp", "run", "-S", "train.learning_rate=0.004")
    assert stages_run(again.stdout) == [] and "Stage 'train' is cached" in again.stdout
