"""The model's life after serving, end to end in one repository, as the README walks it through:
serve v1 from the registry with a prediction log; a new term arrives with a documented shift and is
scored; its outcomes arrive and monitoring alerts, naming the drifted columns; retraining registers
v1.1.0 as challenger and the server picks it up on SIGHUP without a restart; the next term is
scored by both arms; the live comparison says promote; promotion by that verdict; the server swaps;
and a retrained model that fails the gate is not registered.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest
import yaml
from tests.pipeline.repo import copy_project, set_params, sh
from tests.serving.test_server import serving

pytestmark = pytest.mark.pipeline
TERM = 1500  # sessions per later term


def replay(repo: Path, client: httpx.Client, first: int, last: int) -> None:
    """The sessions ``first``-``last`` sent to the service as the README does (mlpipe replay)."""
    url = str(client.base_url).rstrip("/") + "/predict"
    sent = sh(repo, "mlpipe", "replay", "--where", f"session_id BETWEEN {first} AND {last}", "--url", url)
    assert f"sent {last - first + 1} records" in sent.stderr and "0 batches refused" in sent.stderr


def models(client: httpx.Client) -> dict[str, str]:
    return {arm: m["version"] for arm, m in client.get("/ready").json()["models"].items()}


def reload(client: httpx.Client, arm: str, changed_from: str | None) -> str:
    """SIGHUP, then wait until ``arm`` serves something other than ``changed_from``."""
    client.process.send_signal(signal.SIGHUP)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while models(client).get(arm, None) in (changed_from, None):
        assert time.monotonic() < deadline, client.get("/ready").text
        time.sleep(0.2)
    return models(client)[arm]


def test_serve_monitor_retrain_challenge_and_promote_without_a_restart(tmp_path: Path, built_project):
    repo = copy_project(built_project[0], tmp_path / "project")  # reproduced and committed: v1
    assert yaml.safe_load((repo / "params.yaml").read_text())["simulate"]["term_sessions"] == TERM
    sh(repo, "mlpipe", "register", "--version", "v1.0.0")
    sh(repo, "mlpipe", "promote", "v1.0.0")
    first_term = yaml.safe_load((repo / "params.yaml").read_text())["simulate"]["n_sessions"]
    log = repo / "predictions.jsonl"
    arguments = ["--stage", "prod", "--challenger-stage", "challenger", "--challenger-share", "0.5"]
    with serving(*arguments, "--repo", str(repo), "--log", str(log)) as client:
        v1 = models(client)["champion"]
        assert list(models(client)) == ["champion"]  # the challenger stage holds nothing yet

        set_params(repo, simulate={"later_terms": 1})  # a new term: night, harder topics
        sh(repo, "dvc", "repro", "--single-item", "simulate")
        sh(repo, "git", "commit", "-qam", "term 2 arrives")
        replay(repo, client, first_term + 1, first_term + TERM)

        alert = sh(repo, "mlpipe", "monitor", str(log), check=False)
        assert alert.returncode == 2, alert.stderr
        drift = next(line for line in alert.stderr.splitlines() if "alert: drift over PSI 0.2" in line)
        assert "time_of_day" in drift and "difficulty_level" in drift
        assert json.loads((repo / "metrics" / "monitor.json").read_text())["verdict"] == "alert"
        sh(repo, "git", "add", "metrics/monitor.json", "metrics/monitor")
        sh(repo, "git", "commit", "-qm", "monitor: alert")

        retrained = sh(repo, "mlpipe", "retrain")
        assert f"retraining study-time: monitoring alerted and {TERM} new rows" in retrained.stderr
        assert "registered study-time@v1.1.0 in challenger" in retrained.stderr
        assert "retrain study-time" in sh(repo, "git", "log", "-1", "--format=%s").stdout
        v2 = reload(client, "challenger", None)
        assert v2 != v1 and models(client)["champion"] == v1

        set_params(repo, simulate={"later_terms": 2})  # the next term: neither model saw it
        sh(repo, "dvc", "repro", "--single-item", "simulate")
        sh(repo, "git", "commit", "-qam", "term 3 arrives")
        replay(repo, client, first_term + TERM + 1, first_term + 2 * TERM)

        judged = sh(repo, "mlpipe", "monitor", str(log), check=False)
        comparison = json.loads((repo / "metrics" / "monitor.json").read_text())["comparison"]
        assert comparison["verdict"] == "promote", (judged.stderr, comparison)
        assert "challenger vs champion: promote" in judged.stderr
        refused = sh(repo, "mlpipe", "promote", "v1.0.0", "--live", "metrics/monitor.json", check=False)
        assert refused.returncode == 1 and "v1.0.0 is not the version in challenger" in refused.stderr
        sh(repo, "mlpipe", "promote", "v1.1.0", "--live", "metrics/monitor.json")
        assert reload(client, "champion", v1) == v2
        replay(repo, client, 1, 10)  # answered by v1.1.0 in both arms now

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    arms = {(line["arm"], line["version"]) for line in lines}
    assert arms == {("champion", v1), ("challenger", v2), ("champion", v2)}

    # Term 3's rows are new to the snapshot; a model that fails the gate is not registered.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["package"]["gate"]["max"]["rmse"] = 0.001
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(repo, "git", "commit", "-qam", "an impossible gate")
    tags = sh(repo, "git", "tag").stdout
    failed = sh(repo, "mlpipe", "retrain", check=False)
    assert failed.returncode == 1, failed.stderr
    assert f"and {TERM} new rows since the snapshot" in failed.stderr
    assert "the retrained model failed the gate, not registering: rmse" in failed.stderr
    assert "(see metrics/package.json)" in failed.stderr
    assert sh(repo, "git", "tag").stdout == tags
    assert sh(repo, "git", "log", "-1", "--format=%s").stdout.strip() == "an impossible gate"
    assert json.loads((repo / "metrics" / "package.json").read_text())["passed"] is False
