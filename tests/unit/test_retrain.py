"""The retraining decision: new rows counted in the source against the snapshot, or an alert."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from mlpipe.core.errors import PipelineError
from mlpipe.core.params import IngestParams
from mlpipe.monitoring.retrain import decide, monitoring_verdict, source_rows


def test_enough_new_rows_or_an_alert_retrains_and_says_why():
    assert decide(50, 50, None).retrain
    assert decide(50, 50, None).reason == "50 new rows since the snapshot (at least 50)"
    assert not decide(49, 50, "healthy").retrain
    assert decide(49, 50, "healthy").reason == "49 new rows (fewer than 50) and no alert"
    alerted = decide(0, 50, "alert")
    assert alerted.retrain and alerted.reason == "monitoring alerted"
    both = decide(100, 50, "alert").reason
    assert both == "monitoring alerted and 100 new rows since the snapshot (at least 50)"


def test_source_rows_are_counted_in_the_database_or_the_file(tmp_path):
    db = tmp_path / "source.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (id INTEGER, y REAL)")
        con.executemany("INSERT INTO t VALUES (?, ?)", [(i, i / 2) for i in range(37)])
    con.close()
    query = "SELECT id, y FROM t WHERE id >= 5"
    assert source_rows(IngestParams(url="sqlite:///source.db", query=query), tmp_path) == 32
    keyed = IngestParams(url="sqlite:///source.db", query=query, key="id")
    assert source_rows(keyed, tmp_path, newer_than=30) == 6  # ids 31-36
    pd.DataFrame({"id": range(9)}).to_csv(tmp_path / "table.csv", index=False)
    assert source_rows(IngestParams(url="table.csv", query=None), tmp_path) == 9
    assert source_rows(IngestParams(url="table.csv", query=None, key="id"), tmp_path, newer_than=6) == 2
    with pytest.raises(
        PipelineError, match="cannot count the source rows at sqlite:///source.db: no such table"
    ):
        source_rows(IngestParams(url="sqlite:///source.db", query="SELECT * FROM nowhere"), tmp_path)


def test_the_monitoring_verdict_is_read_from_its_metrics_file(tmp_path):
    assert monitoring_verdict(tmp_path / "monitor.json") is None
    (tmp_path / "monitor.json").write_text(json.dumps({"verdict": "alert"}))
    assert monitoring_verdict(tmp_path / "monitor.json") == "alert"


def test_replay_reads_the_matching_rows_and_names_an_unreachable_service(tmp_path, params_dict):
    import socket

    from mlpipe.core.params import parse_params
    from mlpipe.monitoring.replay import replay

    db = tmp_path / "source.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (session_id INTEGER, actual_duration REAL)")
        con.executemany("INSERT INTO t VALUES (?, ?)", [(i, 1.0) for i in range(5)])
    con.close()
    data = {**params_dict, "ingest": {"url": "sqlite:///source.db", "query": "SELECT * FROM t"}}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/predict"
    with pytest.raises(PipelineError, match=f"cannot reach the service at {url}"):
        replay(parse_params(data), tmp_path, "session_id >= 3", url)
    with pytest.raises(PipelineError, match="is not an http URL"):
        replay(parse_params(data), tmp_path, "session_id >= 3", "http://127.0.0.1:port/predict")
    with pytest.raises(PipelineError, match="no such column: nowhere"):
        replay(parse_params(data), tmp_path, "nowhere = 1", url)
