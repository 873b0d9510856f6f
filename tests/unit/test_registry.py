from __future__ import annotations

import pytest

from mlpipe.core.params import RegistryParams
from mlpipe.registry import comparison
from mlpipe.registry import tags as registry
from mlpipe.registry.repository import Project, RegistryError

SETTINGS = RegistryParams(metric="model.rmse", tolerance=0.02)


def test_judge_allows_a_small_regression_within_tolerance():
    assert not comparison.judge(0.400, 0.405, SETTINGS).worse  # +1.25%
    worse = comparison.judge(0.400, 0.420, SETTINGS)
    assert worse.worse and worse.change == pytest.approx(0.05)
    assert worse.describe() == "model.rmse: 0.4 -> 0.42 (5.00% worse, beyond the tolerance of 2.00%)"
    assert (
        comparison.judge(0.400, 0.405, SETTINGS)
        .describe()
        .endswith("(1.25% worse, within the tolerance of 2.00%)")
    )
    assert comparison.judge(0.400, 0.398, SETTINGS).describe() == "model.rmse: 0.4 -> 0.398 (0.50% better)"


def test_judge_respects_the_direction_of_the_metric():
    higher = SETTINGS.model_copy(update={"metric": "model.r2"})
    assert comparison.judge(0.90, 0.80, higher).worse
    assert not comparison.judge(0.80, 0.90, higher).worse


def test_metric_value_must_be_found_exactly_once():
    metrics = {"metrics/evaluate.json": {"model.rmse": 0.4}, "metrics/train.json": {"loss": 1.0}}
    assert comparison.metric_value(metrics, "model.rmse", "HEAD") == 0.4
    with pytest.raises(RegistryError, match="found in no metrics file at v1"):
        comparison.metric_value(metrics, "model.mape", "v1")


def test_the_gate_verdict_is_read_from_the_path_the_package_stage_declares():
    dvc_yaml = (
        "stages:\n  package:\n    cmd: x\n    metrics:\n"
        "      - metrics/verdict.json:\n          cache: false\n"
    )
    assert comparison.gate_path(dvc_yaml) == "metrics/verdict.json"
    assert comparison.gate_path(dvc_yaml, "pipelines/dropout") == "pipelines/dropout/metrics/verdict.json"
    with pytest.raises(RegistryError, match="pipelines/x/dvc.yaml has no package stage"):
        comparison.gate_path("stages:\n  train:\n    cmd: x\n", "pipelines/x")
    with pytest.raises(RegistryError, match="must declare one metrics file"):
        comparison.gate_path("stages:\n  package:\n    cmd: x\n")
    assert comparison.flatten({"a": {"b": 1, "c": {"d": 2}}}) == {"a.b": 1, "a.c.d": 2}


def test_a_metric_of_unknown_direction_is_refused_at_start_up():
    with pytest.raises(ValueError, match="metric 'model.rmsle': unknown direction"):
        RegistryParams(metric="model.rmsle", tolerance=0.02)


def test_version_tags_follow_gto(params, tmp_path):
    root = Project(tmp_path, "", params)
    assert root.artifact == "study-time"
    assert registry.version_tag(root, "v1.2.3") == "study-time@v1.2.3"
    assert registry.version_tag(root, "HEAD") == "HEAD"
    sub = Project(tmp_path, "pipelines/dropout", params)
    assert sub.artifact == "pipelines/dropout:study-time"  # DVC's name for an artifact in a subfolder
    assert registry.version_tag(sub, "v2.0.0") == "pipelines/dropout=study-time@v2.0.0"  # GTO's tag
