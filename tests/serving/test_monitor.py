"""``mlpipe monitor`` on logs written the way the server writes them, against outcomes in SQLite."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tests.serving.bundles import another_version, refresh_checksums

from mlpipe.cli import main as cli
from mlpipe.core import files
from mlpipe.serving.http.bodies import log_lines
from mlpipe.serving.predictor import Predictor

DAY = "2026-12-01T10:00:00.000+00:00"


def records_of(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.drop(columns=["session_date"]).to_json(orient="records"))


def write_log(path: Path, folder: Path, records: list[dict], arm: str = "champion", time: str = DAY) -> None:
    """Append the predictions of the bundle at ``folder`` as ``mlpipe serve --log`` does."""
    predictor = Predictor(folder)
    answers = predictor.predict_records(records).answers()
    results = [{**a, "model": predictor.name, "version": predictor.version, "arm": arm} for a in answers]
    with path.open("a", encoding="utf-8") as log:
        log.write(log_lines(results, records, time))


def outcomes_db(path: Path, ids: list[int], durations: list[float]) -> str:
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE study_sessions (session_id INTEGER PRIMARY KEY, actual_duration REAL)")
        con.executemany("INSERT INTO study_sessions VALUES (?, ?)", list(zip(ids, durations, strict=True)))
    con.close()
    return f"sqlite:///{path}"


def monitor_params(built: Path, tmp_path: Path, url: str, **changes) -> Path:
    data = yaml.safe_load((built / "params.yaml").read_text())
    data["monitor"].update(url=url, **changes)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def monitor(tmp_path: Path, params: Path, bundle: Path, *logs: Path) -> int:
    out = tmp_path / "out"
    return cli.main(
        ["monitor", *map(str, logs), "--bundle", str(bundle), "--params", str(params)]
        + ["--metrics", str(out / "monitor.json"), "--plots", str(out / "monitor")]
    )


def result(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "monitor.json").read_text())


@pytest.fixture
def setting(built: Path, test_frame: pd.DataFrame, tmp_path: Path):
    """The test split's outcomes in a database, and params pointing the monitor at it. The tiny test
    split holds a handful of students, whose columns differ from training's by chance: drift is
    judged on the training split's rows instead (max_psi is out of reach here)."""
    url = outcomes_db(
        tmp_path / "outcomes.db", test_frame["session_id"].tolist(), test_frame["actual_duration"].tolist()
    )
    return monitor_params(built, tmp_path, url, max_psi=100, min_drift_rows=1), records_of(test_frame)


def test_the_test_split_served_and_labelled_gives_the_test_metrics_and_no_drift(
    built: Path, tmp_path: Path, setting, capsys
):
    params, records = setting
    log = tmp_path / "predictions.jsonl"
    write_log(log, built / "bundle", records)
    assert monitor(tmp_path, params, built / "bundle", log) == 0
    out = result(tmp_path)
    version = Predictor(built / "bundle").version
    live = out["live"]["champion"][version]
    assert live["predictions"] == live["labelled"] == len(records)
    assert live["ratio"]["mae"] == pytest.approx(1, abs=1e-6)  # what evaluate measured, through serving
    assert live["ratio"]["rmse"] == pytest.approx(1, abs=1e-6)
    assert out["drift"]["prediction"]["psi"] == 0.0
    assert out["verdict"] == "healthy" and out["alerts"] == []
    assert out["window"] == {"start": "2026-11-02", "end": "2026-12-01", "days": 30}
    plots = tmp_path / "out" / "monitor"
    assert json.loads((plots / "error.json").read_text())[0]["mae"] == pytest.approx(live["mae"])
    assert len(json.loads((plots / "drift.json").read_text())) == len(out["drift"]["inputs"]) + 1
    assert "study-time" in (plots / "report.html").read_text()
    assert "healthy" in capsys.readouterr().err

    training = tmp_path / "training.jsonl"  # the reference's own rows: no drift at all
    write_log(training, built / "bundle", records_of(files.read_parquet(built / "splits" / "train.parquet")))
    assert monitor(tmp_path, params, built / "bundle", training) == 3  # none of them labelled
    assert {d["psi"] for d in result(tmp_path)["drift"]["inputs"].values()} == {0.0}


def test_a_shifted_period_alerts_naming_the_error_and_the_drifted_columns(
    built: Path, tmp_path: Path, capsys
):
    train = files.read_parquet(built / "splits" / "train.parquet")  # the reference's rows, then shifted
    night = [{**r, "time_of_day": "night", "difficulty_level": 10} for r in records_of(train)]
    log = tmp_path / "predictions.jsonl"
    write_log(log, built / "bundle", night)
    later = (train["actual_duration"] + 1.0).tolist()
    params = monitor_params(
        built, tmp_path, outcomes_db(tmp_path / "later.db", train["session_id"].tolist(), later)
    )
    assert monitor(tmp_path, params, built / "bundle", log) == 2
    out = result(tmp_path)
    assert out["verdict"] == "alert"
    err = capsys.readouterr().err
    assert "mlpipe: alert: live mae" in err and "(max 1.2x)" in err
    drift_line = next(a for a in out["alerts"] if a.startswith("drift"))
    named = [part.split(" (")[0] for part in drift_line.split(": ", 1)[1].split(", ")]
    assert set(named) == {"time_of_day", "difficulty_level", "prediction"}
    assert named[0] == "time_of_day"  # the largest shift first


def test_one_prediction_raises_no_drift_alarm_and_the_report_shows_too_few_and_n(
    built: Path, tmp_path: Path, test_frame: pd.DataFrame, capsys
):
    url = outcomes_db(tmp_path / "none.db", [], [])
    log = tmp_path / "predictions.jsonl"
    write_log(log, built / "bundle", records_of(test_frame)[:1])  # one `curl`
    params = monitor_params(built, tmp_path, url)  # the committed min_drift_rows: 200
    assert monitor(tmp_path, params, built / "bundle", log) == 3  # not enough data, not an alert
    out = result(tmp_path)
    assert out["drift"]["too_few"] == sorted([*out["drift"]["inputs"], "prediction"])
    assert {v["n"] for v in out["drift"]["inputs"].values()} == {1}
    assert not any(a.startswith("drift") for a in out["alerts"])
    assert "too few" in (tmp_path / "out" / "monitor" / "report.html").read_text()
    assert "drift not judged, too few values (n = 1 < monitor.min_drift_rows 200)" in capsys.readouterr().err
    # the gate is what keeps it quiet: judged on one row, every column alarms
    assert (
        monitor(tmp_path, monitor_params(built, tmp_path, url, min_drift_rows=1), built / "bundle", log) == 2
    )
    assert any(a.startswith("drift over PSI") for a in result(tmp_path)["alerts"])


def test_too_few_labelled_predictions_cannot_be_judged(built: Path, tmp_path: Path, setting, capsys):
    params, records = setting
    log = tmp_path / "predictions.jsonl"
    write_log(log, built / "bundle", [{**r, "session_id": 10**9 + i} for i, r in enumerate(records)])
    write_log(log, built / "bundle", records[:10])
    assert monitor(tmp_path, params, built / "bundle", log) == 3
    assert result(tmp_path)["verdict"] == "not enough data"
    assert "10 labelled predictions" in capsys.readouterr().err


def test_the_window_ends_at_the_newest_prediction_or_until(built: Path, tmp_path: Path, setting):
    params, records = setting
    log = tmp_path / "predictions.jsonl"
    write_log(log, built / "bundle", records[:100], time="2026-10-01T08:00:00+00:00")
    write_log(log, built / "bundle", records[100:], time=DAY)
    version = Predictor(built / "bundle").version
    assert monitor(tmp_path, params, built / "bundle", log) == 0
    assert result(tmp_path)["live"]["champion"][version]["predictions"] == len(records) - 100
    assert len(json.loads((tmp_path / "out" / "monitor" / "error.json").read_text())) == 2
    out = tmp_path / "out"
    code = cli.main(
        [
            "monitor",
            str(log),
            "--bundle",
            str(built / "bundle"),
            "--params",
            str(params),
            "--until",
            "2026-10-15",
        ]
        + ["--metrics", str(out / "monitor.json"), "--plots", str(out / "monitor")]
    )
    assert code == 0 and result(tmp_path)["live"]["champion"][version]["predictions"] == 100


def test_the_live_comparison_promotes_a_better_challenger_and_keeps_an_equal_one(
    built: Path, tmp_path: Path, test_frame: pd.DataFrame
):
    v2 = another_version(built / "bundle", tmp_path / "v2", shift=0.5)
    records = records_of(test_frame)
    half = len(records) // 2
    log = tmp_path / "predictions.jsonl"
    write_log(log, built / "bundle", records[:half])
    write_log(log, v2, records[half:], arm="challenger")
    # the world moved by +0.5 h: the challenger (raised by 0.5) is right, the champion is not
    truth = (test_frame["actual_duration"] + 0.5).tolist()
    params = monitor_params(
        built, tmp_path, outcomes_db(tmp_path / "o.db", test_frame["session_id"].tolist(), truth)
    )
    monitor(tmp_path, params, built / "bundle", log)
    comparison = result(tmp_path)["comparison"]
    assert comparison["verdict"] == "promote" and comparison["ci95_high"] < 0
    assert (
        comparison["champion_labelled"] == half and comparison["challenger_labelled"] == len(records) - half
    )

    log2 = tmp_path / "same.jsonl"
    write_log(log2, built / "bundle", records[:half])
    write_log(log2, built / "bundle", records[half:], arm="challenger")
    params = monitor_params(
        built,
        tmp_path,
        outcomes_db(
            tmp_path / "p.db", test_frame["session_id"].tolist(), test_frame["actual_duration"].tolist()
        ),
    )
    monitor(tmp_path, params, built / "bundle", log2)
    comparison = result(tmp_path)["comparison"]
    assert comparison["verdict"] == "keep" and comparison["ci95_low"] < 0 < comparison["ci95_high"]

    params = monitor_params(built, tmp_path, outcomes_db(tmp_path / "q.db", [], []), min_labelled=5)
    monitor(tmp_path, params, built / "bundle", log)
    assert result(tmp_path)["comparison"]["verdict"] == "not enough data"


def test_bad_input_is_one_line_naming_the_line_column_or_file_and_nothing_is_written(
    built: Path, tmp_path: Path, setting, capsys
):
    params, records = setting
    log = tmp_path / "predictions.jsonl"
    write_log(log, built / "bundle", records[:5])

    def refused(message: str, *logs: Path, bundle: Path | None = None, params: Path = params) -> None:
        assert monitor(tmp_path, params, bundle or built / "bundle", *logs) == 1
        err = capsys.readouterr().err
        assert err.startswith("mlpipe: error: ") and message in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "out").exists()

    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(log.read_bytes() + b'{"time": "2026-12-01", "mod\n')
    refused("broken.jsonl: line 6: not a JSON object", broken)
    other = tmp_path / "other.jsonl"
    other.write_text(log.read_text().replace('"model":"study-time"', '"model":"dropout"'))
    refused("other.jsonl: line 1: a prediction of model 'dropout', not 'study-time'", other)
    stamp = tmp_path / "stamp.jsonl"
    stamp.write_text(log.read_text().replace(DAY, "yesterday"))
    refused("stamp.jsonl: line 1: 'time' is not an ISO date-time", stamp)
    refused("missing.jsonl: cannot read the prediction log", tmp_path / "missing.jsonl")

    no_id = monitor_params(
        built, tmp_path, params_url(params), outcomes="SELECT actual_duration FROM study_sessions"
    )
    refused(
        "returns no column 'session_id', the id (monitor.id); it returns: actual_duration", log, params=no_id
    )

    old = Path(shutil.copytree(built / "bundle", tmp_path / "old"))
    (old / "reference.json").unlink()
    refresh_checksums(old)
    refused("no reference.json (a bundle packaged before reference statistics)", log, bundle=old)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    refused("the prediction log holds no predictions", empty)


def params_url(params: Path) -> str:
    return yaml.safe_load(params.read_text())["monitor"]["url"]


def test_streamed_chunks_give_the_same_result_as_one(built: Path, tmp_path: Path, setting):
    from mlpipe.core.params import load_params
    from mlpipe.monitoring import scan, verdict
    from mlpipe.sources.reading import database_url

    params, records = setting
    log = tmp_path / "predictions.jsonl"
    write_log(log, built / "bundle", records)
    served = verdict.served_by(built / "bundle")
    loaded = load_params(params).monitor
    outcomes = scan.Outcomes(database_url(loaded.url), loaded.outcomes, loaded.id, served.target)
    whole = scan.scan([log], served, outcomes, loaded.id, chunk_lines=10**6)
    parts = scan.scan([log], served, outcomes, loaded.id, chunk_lines=97)
    day = next(iter(whole.days))
    assert whole.days[day].sums.keys() == parts.days[day].sums.keys()
    for key, sums in whole.days[day].sums.items():
        assert parts.days[day].sums[key].labelled == sums.labelled
        assert parts.days[day].sums[key].sums["abs_error"] == pytest.approx(sums.sums["abs_error"], rel=1e-12)
    for column, sketch in whole.days[day].inputs.items():
        assert parts.days[day].inputs[column].to_dict() == sketch.to_dict()
    assert whole.lines == parts.lines and whole.digest == parts.digest
    outcomes.close()
