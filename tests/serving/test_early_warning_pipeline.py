"""The early-warning pipeline's stages on a tiny cohort, called as DVC calls them, and what they
build: metrics by cutoff week, a verified bundle whose three forms agree, no leak from the future
through the whole chain, the server answering histories, and a cohort scored as of a date."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from tests.serving.conftest import write_lock
from tests.serving.test_server import serving

from mlpipe.bundle import layout
from mlpipe.core.errors import PipelineError
from mlpipe.early_warning import evaluate, package, preprocess, simulate, train
from mlpipe.features import point_in_time
from mlpipe.serving.predictor import Predictor, history_schema

PARAMS = Path(__file__).resolve().parents[2] / "pipelines" / "early_warning" / "params.yaml"
START = dt.date(2026, 9, 7)


def tiny_params(folder: Path) -> Path:
    data = yaml.safe_load(PARAMS.read_text())
    data["simulate"].update(students=700, start_date=START.isoformat())
    data["train"].update(epochs=3, batch_size=128)
    data["evaluate"]["hgb"].update(max_iter=30)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_preprocess(root: Path, params: Path, activity: Path, out: str) -> Path:
    preprocess.main(
        ["--params", str(params), "--students", str(root / "source" / "students.parquet")]
        + ["--activity", str(activity), "--out", str(root / out)]
        + ["--preprocessor", str(root / f"{out}.json"), "--metrics", str(root / f"{out}.metrics.json")]
    )
    return root / out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("early_warning")
    params = tiny_params(root)
    common = ["--params", str(params)]
    simulate.main([*common, "--out", str(root / "source"), "--metrics", str(root / "simulate.json")])
    run_preprocess(root, params, root / "source" / "activity.parquet", "splits")
    splits = ["--splits", str(root / "splits"), "--preprocessor", str(root / "splits.json")]
    train.main([*common, *splits, "--out", str(root / "model"), "--metrics", str(root / "train.json")])
    evaluate.main(
        [
            *common,
            *splits,
            "--model",
            str(root / "model"),
            "--oracle",
            str(root / "source" / "oracle.parquet"),
        ]
        + ["--metrics", str(root / "evaluate.json"), "--plots", str(root / "plots")]
    )
    write_lock(root / "dvc.lock", {"train": root / "model", "evaluate": root / "evaluate.json"})
    package.main(
        [*common, *splits, "--model", str(root / "model"), "--evaluation", str(root / "evaluate.json")]
        + [
            "--lock",
            str(root / "dvc.lock"),
            "--out",
            str(root / "bundle"),
            "--metrics",
            str(root / "package.json"),
        ]
    )
    return root


def records_of(arrays: dict[str, np.ndarray], static: list[str], channels: list[str]) -> list[dict]:
    """Point-in-time rows as the JSON records a client sends: static fields and observed weeks."""
    out = []
    for i in range(len(arrays["ids"])):
        weeks = int(arrays["mask"][i].sum())
        history = [
            {c: float(arrays["sequence"][i, w, j]) for j, c in enumerate(channels)} for w in range(weeks)
        ]
        out.append({**dict(zip(static, arrays["static"][i].tolist(), strict=True)), "history": history})
    return out


def test_metrics_by_cutoff_name_every_judge_and_the_card_names_baseline_wins(built: Path):
    found = json.loads((built / "evaluate.json").read_text())
    assert sorted(found["by_cutoff"], key=int) == ["2", "4", "6", "8"]
    for week, judged in found["by_cutoff"].items():
        assert set(judged) == {"model", "baselines", "oracle", "latent_oracle"}
        assert set(judged["baselines"]) == {"logistic", "hgb"}
        for metrics in (judged["model"], judged["oracle"], *judged["baselines"].values()):
            assert set(metrics) == {"roc_auc", "pr_auc", "log_loss", "brier", "recall_at_10pct", "rows"}
            assert 0.5 < metrics["roc_auc"] <= 1
        # the latent oracle knows the engagement itself: no one ranks better at any week
        assert judged["latent_oracle"]["roc_auc"] >= judged["oracle"]["roc_auc"] - 0.02, week
        wins = [n for n, b in judged["baselines"].items() if b["roc_auc"] > judged["model"]["roc_auc"]]
        assert found["baseline_wins"].get(week, []) == sorted(wins)
    plot = pd.read_csv(built / "plots" / "auc_by_week.csv")
    assert plot["week"].tolist() == [2, 4, 6, 8]
    assert plot["model"].tolist() == [found["by_cutoff"][str(w)]["model"]["roc_auc"] for w in (2, 4, 6, 8)]
    card = (built / "bundle" / layout.CARD).read_text()
    for week, names in found["baseline_wins"].items():
        assert f"At week {week}, {' and '.join(names)} ranked students better" in card
    if not found["baseline_wins"]:
        assert "No baseline ranked students better" in card


def test_the_bundle_verifies_and_its_three_forms_agree_on_raw_records(built: Path):
    parity = json.loads((built / "package.json").read_text())["parity"]
    assert parity["onnx"] < 1e-5 and parity["saved_model"] < 1e-5
    verified = layout.verify(built / "bundle")
    assert verified.metadata["history"]["cutoffs"] == [2, 4, 6, 8]
    prep = json.loads((built / "splits.json").read_text())
    test = point_in_time.load(built / "splits", "test")
    predictor = Predictor(built / "bundle", threads=1)
    records = records_of(test, prep["static"], list(prep["channels"]))
    from mlpipe.training import sequence
    from mlpipe.training.model import load_model

    scale = point_in_time.SequenceScale.from_dict(prep["scale"])
    keras_out = sequence.predict(
        load_model(built / "model"), scale.apply(test["static"], test["sequence"], test["mask"])
    )
    served = predictor.predict_records(records).values
    np.testing.assert_allclose(served, keras_out, atol=1e-5)
    one_by_one = [predictor.predict_records([r]).values[0] for r in records[:40]]
    assert one_by_one == served[:40].tolist()  # padding in a batch changes no answer
    with pytest.raises(PipelineError, match="reads a weekly history"):
        predictor.predict_frame(pd.DataFrame({"prior_gpa": [3.0]}))


def test_changing_or_deleting_the_future_changes_nothing_at_the_cutoff_and_the_day_before_does(built: Path):
    params = built / "params.yaml"
    activity = pd.read_parquet(built / "source" / "activity.parquet")
    cutoff = 4
    first_day = pd.Timestamp(START) + pd.Timedelta(days=7 * cutoff)
    future = pd.to_datetime(activity["date"]) >= first_day
    changed = activity[~future | (np.arange(len(activity)) % 3 == 0)].copy()  # a third kept, changed
    changed.loc[pd.to_datetime(changed["date"]) >= first_day, ["minutes", "clicks"]] = 9999
    changed.to_parquet(built / "future.parquet", index=False)
    altered = run_preprocess(built, params, built / "future.parquet", "future")
    predictor = Predictor(built / "bundle", threads=1)
    for split in point_in_time.SPLITS:
        before, after = point_in_time.load(built / "splits", split), point_in_time.load(altered, split)
        rows, rows_after = before["cutoff"] == cutoff, after["cutoff"] == cutoff
        for key in point_in_time.ARRAYS:
            np.testing.assert_array_equal(before[key][rows], after[key][rows_after], err_msg=f"{split} {key}")
        inputs = [
            {"static": a["static"][r], "sequence": a["sequence"][r].astype(np.float64), "mask": a["mask"][r]}
            for a, r in ((before, rows), (after, rows_after))
        ]
        served = [
            predictor.predict_columns(i, int(r.sum())).values
            for i, r in zip(inputs, (rows, rows_after), strict=True)
        ]
        np.testing.assert_array_equal(*served)
        later = before["cutoff"] == 6
        assert not np.array_equal(before["sequence"][later], after["sequence"][after["cutoff"] == 6])
    # the test can fail: the same change from the day before the cutoff reaches the cutoff's rows
    last_day = pd.to_datetime(activity["date"]) == first_day - pd.Timedelta(days=1)
    early = activity.copy()
    early.loc[last_day, "minutes"] = 9999
    early.to_parquet(built / "early.parquet", index=False)
    moved = point_in_time.load(run_preprocess(built, params, built / "early.parquet", "early"), "train")
    base = point_in_time.load(built / "splits", "train")
    assert not np.array_equal(
        base["sequence"][base["cutoff"] == cutoff], moved["sequence"][moved["cutoff"] == cutoff]
    )


def test_predict_as_of_a_date_scores_the_enrolled_cohort_as_the_cutoff_rows_and_reads_no_later_activity(
    built: Path, tmp_path: Path
):
    as_of = START + dt.timedelta(days=7 * 4 + 3)  # a Thursday of week 4: weeks 0-3 are complete
    source = built / "source"

    def score(activity: Path, out: Path) -> pd.DataFrame:
        subprocess.run(
            [sys.executable, "-m", "mlpipe.cli", "predict", str(source / "students.parquet")]
            + ["--activity", str(activity), "--as-of", as_of.isoformat(), "--bundle", str(built / "bundle")]
            + ["-o", str(out), "--chunk-rows", "5000"],
            check=True,
            capture_output=True,
            text=True,
        )
        return pd.read_parquet(out)

    scored = score(source / "activity.parquet", tmp_path / "scored.parquet")
    students = pd.read_parquet(source / "students.parquet")
    gone = pd.to_datetime(students["dropout_date"]) <= pd.Timestamp(as_of)
    assert sorted(scored["student_id"]) == sorted(students.loc[~gone, "student_id"])
    assert set(scored["cutoff_week"]) == {4}
    test = point_in_time.load(built / "splits", "test")
    rows = test["cutoff"] == 4
    expected = Predictor(built / "bundle", threads=1).predict_columns(
        {
            "static": test["static"][rows],
            "sequence": test["sequence"][rows].astype(np.float64),
            "mask": test["mask"][rows],
        },
        int(rows.sum()),
    )
    by_id = scored.set_index("student_id")["probability"]
    enrolled = np.isin(test["ids"][rows], by_id.index)
    np.testing.assert_allclose(
        by_id.reindex(test["ids"][rows][enrolled]), expected.values[enrolled], atol=1e-6
    )
    activity = pd.read_parquet(source / "activity.parquet")
    later = pd.to_datetime(activity["date"]) >= pd.Timestamp(START + dt.timedelta(days=28))
    activity.loc[later, "minutes"] = 0  # activity in week 4 (before the date too) and after it
    activity.to_parquet(tmp_path / "changed.parquet", index=False)
    again = score(tmp_path / "changed.parquet", tmp_path / "again.parquet")
    pd.testing.assert_frame_equal(scored, again)


def test_the_server_answers_histories_and_names_the_week_and_field_of_a_bad_one(built: Path):
    prep = json.loads((built / "splits.json").read_text())
    test = point_in_time.load(built / "splits", "test")
    records = records_of(test, prep["static"], list(prep["channels"]))[:6]
    expected = Predictor(built / "bundle", threads=1).predict_records(records).values
    with serving("--bundle", str(built / "bundle"), "--max-batch", "50") as client:
        batch = client.post("/predict", json=records).json()["predictions"]
        assert [p["probabilities"]["1"] for p in batch] == pytest.approx(expected.tolist(), abs=1e-6)
        one = client.post("/predict", json=records[1]).json()
        assert one["probabilities"]["1"] == pytest.approx(expected[1], abs=1e-6)
        assert one["label"] == int(expected[1] >= 0.5)
        bad = dict(records[0], history=[{"minutes": "lots"}, {"clicks": 3, "likes": 1}])
        answer = client.post("/predict", json=bad)
        assert answer.status_code == 422
        fields = {p["field"] for p in answer.json()["detail"]}
        assert fields == {"history[0].minutes", "history[1]"}
        assert "unknown channel 'likes'" in answer.json()["detail"][1]["message"]
        too_long = dict(records[0], history=[{}] * 9)
        answer = client.post("/predict", json=too_long)
        assert (
            answer.status_code == 422 and "more than the model's 8" in answer.json()["detail"][0]["message"]
        )


def test_a_history_bundle_whose_graph_reads_flat_columns_is_refused():
    meta = {"inputs": {"age": {"type": "number"}}, "history": {"channels": {"minutes": "sum"}, "weeks": 4}}
    assert history_schema(
        meta, {"static": "tensor(double)", "sequence": "tensor(double)", "mask": "tensor(bool)"}
    )
    with pytest.raises(layout.BundleError, match="an early-warning model reads"):
        history_schema(meta, {"age": "tensor(double)"})


def test_monitor_cohort_joins_scores_made_as_of_a_date_with_later_outcomes_and_measures_channel_drift(
    built: Path, tmp_path: Path
):
    from mlpipe.evaluation.early_warning import cutoff_metrics

    source, bundle = built / "source", built / "bundle"
    as_of = (START + dt.timedelta(days=7 * 4)).isoformat()

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mlpipe.cli", *args], capture_output=True, text=True)

    def scored_and_judged(activity: Path, name: str) -> tuple[pd.DataFrame, dict, int]:
        scored = tmp_path / f"{name}.scored.parquet"
        done = cli(
            "predict", str(source / "students.parquet"), "--activity", str(activity), "-o", str(scored)
        )
        assert done.returncode == 1 and "--as-of and --activity go together" in done.stderr
        done = cli(
            *("predict", str(source / "students.parquet"), "--activity", str(activity), "--as-of", as_of),
            *("--bundle", str(bundle), "-o", str(scored)),
        )
        assert done.returncode == 0, done.stderr
        judged = cli(
            *("monitor-cohort", str(scored), "--students", str(source / "students.parquet")),
            *(
                "--activity",
                str(activity),
                "--bundle",
                str(bundle),
                "--metrics",
                str(tmp_path / f"{name}.json"),
            ),
        )
        assert judged.returncode in (0, 2), judged.stderr
        return pd.read_parquet(scored), json.loads((tmp_path / f"{name}.json").read_text()), judged.returncode

    scored, summary, status = scored_and_judged(source / "activity.parquet", "same")
    students = pd.read_parquet(source / "students.parquet").set_index("student_id")
    label = students["dropout_date"].reindex(scored["student_id"]).notna().to_numpy().astype(int)
    expected = cutoff_metrics(label, scored["probability"].to_numpy())
    assert summary["live"]["4"]["roc_auc"] == pytest.approx(expected["roc_auc"], abs=1e-12)
    assert summary["live"]["4"]["test"]["roc_auc"] > 0.5 and "log_loss_ratio" in summary["live"]["4"]
    assert set(summary["drift"]) == {"prior_gpa", "age", "part_time", "prediction"} | {
        f"history.{c}" for c in ("minutes", "clicks", "submissions", "score")
    }
    assert max(v["psi"] for v in summary["drift"].values()) < 0.2
    assert status == 0 and summary["verdict"] == "healthy"
    assert summary["drift"]["prediction"]["n"] == len(scored)
    shifted = pd.read_parquet(source / "activity.parquet")
    shifted["minutes"] = shifted["minutes"] * 5  # a platform that now counts time five times over
    shifted.to_parquet(tmp_path / "shifted.parquet", index=False)
    _, summary, status = scored_and_judged(tmp_path / "shifted.parquet", "shifted")
    assert summary["drift"]["history.minutes"]["psi"] > 0.2
    assert summary["drift"]["history.clicks"]["psi"] < 0.2
    assert status == 2 and any("history.minutes" in a for a in summary["alerts"])
