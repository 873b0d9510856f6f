"""Versions, the S3 remote and sweeps: the whole story in one repository, as a team would live it.

Train v1, register and push it; train v2, register and push it; compare, promote, refuse a
regression, roll back; clone fresh, check out v1, pull it from S3 and serve it bit for bit; fetch
v1 without moving HEAD; refuse `dvc gc` while a version is unpushed; refuse a corrupted object;
and run a 2x2 sweep through the DVC queue.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import yaml
from tests.pipeline.repo import make_repo, set_params, sh
from tests.serving.test_server import serving

pytestmark = pytest.mark.pipeline
NAME = "study-time"


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under a folder."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def use_remote(repo: Path, s3) -> None:
    """Point the project's remote at the test bucket, per user, as the README says."""
    sh(repo, "dvc", "remote", "modify", "--local", "storage", "url", f"s3://{s3.bucket}/{repo.name}")
    sh(repo, "dvc", "remote", "modify", "--local", "storage", "endpointurl", s3.endpoint)


def rmse_at(repo: Path, rev: str) -> float:
    return json.loads(sh(repo, "git", "show", f"{rev}:metrics/evaluate.json").stdout)["model"]["rmse"]


@pytest.fixture(scope="module")
def story(tmp_path_factory, s3) -> dict:
    """v1 and v2 registered and pushed; their bundles' digests."""
    repo = make_repo(tmp_path_factory.mktemp("team") / "project", project_config=True)
    set_params(repo, registry={"tolerance": 0.0})  # any regression counts
    sh(repo, "git", "commit", "-qam", "strict registry tolerance")
    use_remote(repo, s3)
    bundles = {}
    for version, learning_rate in (("v1.0.0", 0.001), ("v2.0.0", 0.004)):
        set_params(repo, train={"learning_rate": learning_rate})
        sh(repo, "dvc", "repro")
        sh(repo, "git", "add", "-A")
        sh(repo, "git", "commit", "-qm", f"model {version}")
        sh(repo, "mlpipe", "register", "--version", version)
        sh(repo, "dvc", "push")
        bundles[version] = digest(repo / "models" / "package")
    return {"repo": repo, "bundles": bundles, "s3": s3}


def test_versions_are_gto_tags_and_the_remote_holds_them(story):
    repo = story["repo"]
    tags = sh(repo, "git", "tag").stdout.split()
    assert tags == [f"{NAME}@v1.0.0", f"{NAME}@v2.0.0"]
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status").stdout
    assert "Cache and remote 'storage' are in sync" in sh(repo, "dvc", "status", "-c").stdout
    config = (repo / ".dvc" / "config").read_text()
    assert "verify = true" in config and "endpointurl" not in config and "secret" not in config.lower()
    assert story["bundles"]["v1.0.0"] != story["bundles"]["v2.0.0"]


def test_metrics_diff_between_tags_and_compare(story):
    repo = story["repo"]
    diff = json.loads(sh(repo, "dvc", "metrics", "diff", f"{NAME}@v1.0.0", f"{NAME}@v2.0.0", "--json").stdout)
    change = diff["metrics/evaluate.json"]["model.rmse"]
    assert change["old"] == rmse_at(repo, f"{NAME}@v1.0.0") and change["new"] == rmse_at(
        repo, f"{NAME}@v2.0.0"
    )
    rmse = {v: rmse_at(repo, f"{NAME}@{v}") for v in ("v1.0.0", "v2.0.0")}
    better, worse = sorted(rmse, key=rmse.get)
    ok = sh(repo, "mlpipe", "compare", worse, better)
    assert ok.returncode == 0 and "metrics/evaluate.json  model.rmse" in ok.stdout
    regressed = sh(repo, "mlpipe", "compare", better, worse, check=False)
    assert regressed.returncode == 1
    assert (
        f"mlpipe: error: {NAME}@{worse} is worse than {NAME}@{better} beyond the tolerance 0"
        in regressed.stderr
    )


def test_promotion_refuses_a_regression_and_rollback_restores(story):
    repo = story["repo"]
    rmse = {v: rmse_at(repo, f"{NAME}@{v}") for v in ("v1.0.0", "v2.0.0")}
    better, worse = sorted(rmse, key=rmse.get)
    sh(repo, "mlpipe", "promote", worse)
    promoted = sh(repo, "mlpipe", "promote", better)
    assert f"is now in prod (push it: git push origin {NAME}#prod#2)" in promoted.stderr
    refused = sh(repo, "mlpipe", "promote", worse, check=False)
    assert refused.returncode == 1 and "not promoting" in refused.stderr and "model.rmse" in refused.stderr
    sh(repo, "mlpipe", "rollback")
    stage = sh(repo, "gto", "show", f"{NAME}#prod", "--ref").stdout.strip()
    assert stage == f"{NAME}@{worse}"
    assert sh(repo, "git", "tag", "--list", f"{NAME}#prod#*").stdout.split() == [
        f"{NAME}#prod#1",
        f"{NAME}#prod#2",
        f"{NAME}#prod#3",
    ]


def test_registration_refuses_a_failed_gate(story):
    repo = story["repo"]
    set_params(
        repo,
        package={
            "gate": {
                **yaml.safe_load((repo / "params.yaml").read_text())["package"]["gate"],
                "max": {"rmse": 0.01},
            }
        },
    )
    assert sh(repo, "dvc", "repro", check=False).returncode != 0
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "a gate that fails")
    refused = sh(repo, "mlpipe", "register", "--version", "v9.0.0", check=False)
    assert (
        refused.returncode == 1 and "the gate failed at HEAD (checks.rmse): not registering" in refused.stderr
    )
    assert f"{NAME}@v9.0.0" not in sh(repo, "git", "tag").stdout
    sh(repo, "git", "reset", "-q", "--hard", "HEAD~1")
    sh(repo, "dvc", "checkout", "-q")


def test_a_fresh_clone_checks_out_v1_pulls_it_and_serves_it_bit_for_bit(story, tmp_path):
    repo, s3 = story["repo"], story["s3"]
    clone = tmp_path / "project"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    sh(clone, "git", "checkout", "-q", f"{NAME}@v1.0.0")
    sh(clone, "dvc", "remote", "modify", "--local", "storage", "url", f"s3://{s3.bucket}/{repo.name}")
    sh(clone, "dvc", "remote", "modify", "--local", "storage", "endpointurl", s3.endpoint)
    sh(clone, "dvc", "pull")
    assert digest(clone / "models" / "package") == story["bundles"]["v1.0.0"]
    assert "Data and pipelines are up to date" in sh(clone, "dvc", "status").stdout
    assert "in sync" in sh(clone, "dvc", "status", "-c").stdout
    version = json.loads((clone / "models" / "package" / "metadata.json").read_text())["version"]
    with serving("--bundle", str(clone / "models" / "package")) as client:
        assert client.get("/ready").json()["models"]["champion"]["version"] == version


def test_fetch_gets_a_version_without_moving_head(story, tmp_path):
    repo = story["repo"]
    head = sh(repo, "git", "rev-parse", "HEAD").stdout
    sh(repo, "mlpipe", "fetch", "v1.0.0", "-o", str(tmp_path / "v1"))
    assert digest(tmp_path / "v1") == story["bundles"]["v1.0.0"]
    assert sh(repo, "git", "rev-parse", "HEAD").stdout == head
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine\n")
    refused = sh(repo, "mlpipe", "fetch", "v1.0.0", "-o", str(taken), check=False)
    assert refused.returncode == 1 and "exists and is not an empty folder" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken", "v1"]  # nothing else written
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    prod = sh(repo, "gto", "show", f"{NAME}#prod", "--ref").stdout.strip().rsplit("@", 1)[1]
    sh(repo, "mlpipe", "fetch", "--stage", "prod", "-o", str(tmp_path / "prod"))
    assert digest(tmp_path / "prod") == story["bundles"][prod]
    version = json.loads((tmp_path / "prod" / "metadata.json").read_text())["version"]
    with serving("--stage", "prod", "--repo", str(repo)) as client:
        assert client.get("/ready").json()["models"]["champion"]["version"] == version


def test_registration_refuses_a_tree_that_is_not_what_head_built(story):
    repo = story["repo"]
    params = repo / "params.yaml"
    original = params.read_text()
    set_params(repo, evaluate={"linear_alpha": 7.0})
    dirty = sh(repo, "mlpipe", "register", "--version", "v8.0.0", check=False)
    assert dirty.returncode == 1 and "uncommitted changes (params.yaml): commit them" in dirty.stderr
    sh(repo, "git", "commit", "-qam", "params changed, pipeline not run")
    stale = sh(repo, "mlpipe", "register", "--version", "v8.0.0", check=False)
    assert stale.returncode == 1 and "dvc.yaml is not up to date (evaluate" in stale.stderr
    assert "run `dvc repro`, commit, then register" in stale.stderr
    assert f"{NAME}@v8.0.0" not in sh(repo, "git", "tag").stdout
    sh(repo, "git", "reset", "-q", "--hard", "HEAD~1")
    assert params.read_text() == original


def test_gc_is_refused_while_a_version_is_unpushed(story):
    repo = story["repo"]
    set_params(repo, evaluate={"linear_alpha": 3.0})  # a new bundle: metadata records the params
    sh(repo, "dvc", "repro")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "model v3")
    sh(repo, "mlpipe", "register", "--version", "v3.0.0")
    refused = sh(repo, "mlpipe", "gc", "--", "-w", "-f", check=False)
    assert refused.returncode == 1
    assert f"refusing `dvc gc`: registered versions have data that is not on the remote ({NAME}@v3.0.0:" in (
        refused.stderr
    )
    assert "models/package" in refused.stderr
    sh(repo, "dvc", "push")
    sh(repo, "mlpipe", "gc", "--", "-w", "-f")
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status").stdout


def test_a_corrupted_object_on_the_remote_fails_the_pull_and_writes_nothing(story, tmp_path):
    repo, s3 = story["repo"], story["s3"]
    lock = yaml.safe_load(sh(repo, "git", "show", f"{NAME}@v1.0.0:dvc.lock").stdout)
    entries = {o["path"]: o["md5"] for o in lock["stages"]["package"]["outs"]}
    listing = json.loads(
        s3.client()
        .get_object(
            Bucket=s3.bucket,
            Key=f"{repo.name}/files/md5/{entries['models/package'][:2]}/{entries['models/package'][2:]}",
        )["Body"]
        .read()
    )
    onnx_md5 = next(e["md5"] for e in listing if e["relpath"] == "model.onnx")
    key = f"{repo.name}/files/md5/{onnx_md5[:2]}/{onnx_md5[2:]}"
    original = s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"not the model")
    try:
        clone = tmp_path / "project"
        sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
        sh(clone, "git", "checkout", "-q", f"{NAME}@v1.0.0")
        sh(clone, "dvc", "remote", "modify", "--local", "storage", "url", f"s3://{s3.bucket}/{repo.name}")
        sh(clone, "dvc", "remote", "modify", "--local", "storage", "endpointurl", s3.endpoint)
        pulled = sh(clone, "dvc", "pull", "models/package", check=False)
        assert pulled.returncode != 0
        assert not (clone / "models" / "package").exists()
    finally:
        s3.client().put_object(Bucket=s3.bucket, Key=key, Body=original)


def test_a_sweep_is_checked_queued_run_ranked_and_the_best_registered(story, tmp_path):
    repo = story["repo"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  train.learning_rat: [0.001, 0.004]\n")
    refused = sh(repo, "mlpipe", "sweep", str(bad), check=False)
    assert refused.returncode == 1 and "unknown key 'train.learning_rat'" in refused.stderr
    assert "Queued" not in sh(repo, "dvc", "queue", "status").stdout
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid:\n  train.learning_rate: [0.001, 0.004]\n  train.batch_size: [64, 128]\n")
    queued = sh(repo, "mlpipe", "sweep", str(grid))
    assert "4 experiments queued" in queued.stderr
    sh(repo, "dvc", "queue", "start", "-j", "2")
    deadline = time.monotonic() + 600
    while True:
        status = sh(repo, "dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert status.count("Success") == 4, status
    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    experiments = []
    for entry in shown:
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs", []):
                data = rev["data"]
                rmse = data["metrics"]["metrics/evaluate.json"]["data"]["model"]["rmse"]
                experiments.append((rmse, exp.get("name") or rev["name"]))
    assert len(experiments) == 4
    best = min(experiments)[1]
    sh(repo, "dvc", "exp", "apply", best)
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", f"best of the sweep: {best}")
    sh(repo, "mlpipe", "register", "--bump", "major")
    assert f"{NAME}@v4.0.0" in sh(repo, "git", "tag").stdout
    sh(repo, "dvc", "queue", "stop", check=False)
