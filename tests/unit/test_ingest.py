import sqlite3

import pandas as pd
import pytest
import yaml

from mlpipe import ingest
from mlpipe.core.errors import PipelineError
from mlpipe.core.stage import run
from mlpipe.sources import reading as sources


def test_url_refuses_password_and_takes_it_from_environment():
    with pytest.raises(PipelineError, match="must not contain a password.*MLPIPE_DB_PASSWORD"):
        sources.database_url("postgresql://analyst:hunter2@db.example/lms", environ={})
    url = sources.database_url(
        "postgresql://analyst@db.example/lms", environ={"MLPIPE_DB_PASSWORD": "s3cret"}
    )
    assert url.password == "s3cret"
    assert "s3cret" not in url.render_as_string(hide_password=True)


def test_url_errors_are_specific(tmp_path):
    with pytest.raises(PipelineError, match="not a valid SQLAlchemy URL"):
        sources.database_url("not a url", environ={})
    with pytest.raises(PipelineError, match="SQLite database file not found"):
        sources.database_url(f"sqlite:///{tmp_path}/missing.db", environ={})


def test_reads_the_joined_table_in_chunks(demo_db, params, tmp_path):
    url = sources.database_url(f"sqlite:///{demo_db}", environ={})
    chunks = list(sources.read_chunks(url, params.ingest.query, chunk_rows=400))
    assert [len(c) for c in chunks] == [400, 400, 400, 300]
    out = tmp_path / "raw.parquet"
    assert ingest.write_snapshot(iter(chunks), out) == {"rows": 1500, "columns": 20}
    assert pd.read_parquet(out)["session_id"].tolist() == list(range(1, 1501))
    extent = ingest.write_snapshot(iter(reversed(chunks)), out, key="session_id")  # newest, in any order
    assert extent == {"rows": 1500, "columns": 20, "key": "session_id", "newest": 1500}
    assert ingest.write_snapshot(iter(chunks), out, key="session_date")["newest"] == max(
        c["session_date"].max() for c in chunks
    )
    with pytest.raises(PipelineError, match="ingest.key 'sesion_id' is not a column of the source"):
        ingest.write_snapshot(iter(chunks), out, key="sesion_id")


def test_bad_query_is_one_clear_line(demo_db):
    url = sources.database_url(f"sqlite:///{demo_db}", environ={})
    with pytest.raises(PipelineError, match="no such table: nope") as info:
        list(sources.read_chunks(url, "SELECT * FROM nope"))
    assert "\n" not in str(info.value)


def test_empty_result_fails(tmp_path, demo_db):
    url = sources.database_url(f"sqlite:///{demo_db}", environ={})
    chunks = sources.read_chunks(url, "SELECT * FROM students WHERE 0")
    with pytest.raises(PipelineError, match="the source has no rows"):
        ingest.write_snapshot(chunks, tmp_path / "x.parquet")


@pytest.mark.parametrize(
    ("url", "query", "message"),
    [
        ("sqlite:///{tmp}/absent.db", None, "SQLite database file not found"),
        ("nosuchdriver://host/db", None, "nosuchdriver"),
        ("sqlite:///{db}", "SELECT * FROM study_sessions WHERE session_id < 0", "the source has no rows"),
    ],
)
def test_main_fails_with_one_line_and_no_output(tmp_path, demo_db, params_dict, capsys, url, query, message):
    data = dict(params_dict)
    data["ingest"] = {
        "url": url.format(tmp=tmp_path, db=demo_db),
        "query": query or params_dict["ingest"]["query"],
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    out = tmp_path / "raw" / "sessions.parquet"
    argv = [
        "--params",
        str(tmp_path / "params.yaml"),
        "--out",
        str(out),
        "--metrics",
        str(tmp_path / "m.json"),
    ]
    assert run(ingest.main, argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists() and not (tmp_path / "m.json").exists()
    assert not list(out.parent.glob("*")) if out.parent.exists() else True


def test_sqlite_needs_no_password_even_when_one_is_set(tmp_path, monkeypatch):
    db = tmp_path / "x.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (a INTEGER)")
        con.execute("INSERT INTO t VALUES (1)")
    con.close()
    monkeypatch.setenv("MLPIPE_DB_PASSWORD", "for-the-server-database")
    url = sources.database_url(f"sqlite:///{db}")
    assert url.password is None
    assert len(next(sources.read_chunks(url, "SELECT a FROM t"))) == 1


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_csv_or_parquet_file_is_a_source_too(tmp_path, raw_frame, params_dict, suffix):
    source = tmp_path / f"own{suffix}"
    frame = raw_frame.head(500)
    if suffix == ".csv":
        frame.to_csv(source, index=False)
    else:
        frame.to_parquet(source, index=False)
    data = dict(params_dict)
    data["ingest"] = {"url": str(source), "query": None}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    out = tmp_path / "raw.parquet"
    ingest.main(
        ["--params", str(tmp_path / "params.yaml"), "--out", str(out), "--metrics", str(tmp_path / "m.json")]
    )
    snapshot = pd.read_parquet(out)
    assert list(snapshot.columns) == list(frame.columns) and len(snapshot) == 500
    assert snapshot["actual_duration"].tolist() == frame["actual_duration"].tolist()


def test_file_sources_refuse_a_query_and_a_missing_file(tmp_path, params_dict, capsys):
    data = dict(params_dict)
    for url, query, message in (
        (str(tmp_path / "own.csv"), "SELECT 1", "ingest.query applies to databases"),
        (str(tmp_path / "absent.csv"), None, "ingest.url: file not found"),
        ("sqlite:///x.db", None, "ingest.query is required for a database URL"),
    ):
        (tmp_path / "own.csv").write_text("a\n1\n")
        data["ingest"] = {"url": url, "query": query}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
        argv = [
            "--params",
            str(tmp_path / "params.yaml"),
            "--out",
            str(tmp_path / "o.parquet"),
            "--metrics",
            "m.json",
        ]
        assert run(ingest.main, argv) == 1
        assert message in capsys.readouterr().err


def test_ingest_and_predict_read_the_same_cells_as_missing(tmp_path):
    """One rule for both readers (tables.CSV_NULLS): an empty cell or a null-like text in a CSV, a null
    or an empty text in Parquet or SQL, is missing for ingest's snapshot and for mlpipe predict."""
    from mlpipe.serving import batch

    source = tmp_path / "team.csv"
    source.write_text("row_id,topic,hours\n1,,2.5\n2,algebra,\n3,NA,1.0\n4,geometry,n/a\n5,algebra,3.0\n")
    snapshot = tmp_path / "raw.parquet"
    ingest.write_snapshot(sources.read_file_chunks(source), snapshot)
    ingested = pd.read_parquet(snapshot)
    assert ingested["topic"].isna().tolist() == [True, False, True, False, False]  # not the text ""
    assert ingested["hours"].isna().tolist() == [False, True, False, True, False]
    (chunk,) = batch.read_chunks(source, ["row_id", "topic", "hours"], text=["topic", "hours"])
    scored = chunk.rows
    assert scored["topic"].isna().tolist() == ingested["topic"].isna().tolist()
    assert scored["hours"].isna().tolist() == ingested["hours"].isna().tolist()
    assert scored["topic"].dropna().tolist() == ingested["topic"].dropna().tolist()

    parquet = tmp_path / "team.parquet"
    pd.DataFrame({"row_id": [1, 2, 3], "topic": ["", None, "NA"]}).to_parquet(parquet)
    ingest.write_snapshot(sources.read_file_chunks(parquet), snapshot)
    topic = pd.read_parquet(snapshot)["topic"]
    assert topic.isna().tolist() == [True, True, False] and topic[2] == "NA"  # "NA" is Parquet text
