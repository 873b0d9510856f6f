import math
import sqlite3

import numpy as np
import pandas as pd

from mlpipe import simulate, synthetic


def read(path, table):
    with sqlite3.connect(path) as con:
        frame = pd.read_sql_query(f"SELECT * FROM {table}", con)
    con.close()
    return frame


def test_same_seed_same_bytes_other_seed_other_data(tmp_path, params):
    small = params.simulate.model_copy(update={"n_sessions": 300, "n_students": 50, "n_topics": 10})
    paths = [tmp_path / f"{i}.db" for i in range(3)]
    simulate.simulate(str(paths[0]), small, seed=1)
    simulate.simulate(str(paths[1]), small, seed=1)
    simulate.simulate(str(paths[2]), small, seed=2)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert not read(paths[0], "study_sessions").equals(read(paths[2], "study_sessions"))


def test_target_is_the_documented_function_plus_noise(tmp_path, params):
    quiet = params.simulate.model_copy(update={"n_sessions": 400, "n_students": 60, "noise_sd": 0.0})
    db = tmp_path / "quiet.db"
    metrics = simulate.simulate(str(db), quiet, seed=3)
    sessions, students, topics = (read(db, t) for t in ("study_sessions", "students", "topics"))
    row = sessions.iloc[0]
    st = students.set_index("student_id").loc[row["student_id"]]
    tp = topics.set_index("topic_id").loc[row["topic_id"]]
    ratio = tp["difficulty_level"] / (st["avg_focus_duration"] / 60)
    by_hand = (
        0.5
        + tp["estimated_base_time"]
        * (0.6 + 0.25 * math.log1p(ratio))
        * math.exp(-0.1 * (row["energy_level"] - row["distraction_level"]))
        * synthetic.TIME_OF_DAY[row["time_of_day"]]
        * synthetic.METHOD[row["study_method"]]
        * synthetic.ENVIRONMENT[row["environment"]]
        * synthetic.CONTENT[tp["content_type"]]
        * (1 + 0.01 * (st["age"] - 25))
        + 0.08 * tp["prerequisites_count"]
        + 0.12 * row["breaks_taken"]
    )
    assert abs(row["actual_duration"] - by_hand) < 1e-3
    assert metrics["noise_floor_rmse"] < 1e-3


def test_noise_floor_matches_noise_sd_and_chunks_join_up(tmp_path, params, monkeypatch):
    monkeypatch.setattr(simulate, "CHUNK_ROWS", 700)  # several chunks
    p = params.simulate.model_copy(update={"n_sessions": 3000, "n_students": 200, "noise_sd": 0.4})
    db = tmp_path / "chunked.db"
    metrics = simulate.simulate(str(db), p, seed=5)
    sessions = read(db, "study_sessions")
    assert sessions["session_id"].tolist() == list(range(1, 3001))
    assert sessions["student_id"].between(1, 200).all()
    assert abs(metrics["noise_floor_rmse"] - 0.4) < 0.03
    ages = read(db, "students")["age"]
    assert ages.between(18, 35).all() and ages.nunique() > 10
    assert np.isclose(metrics["target_mean"], sessions["actual_duration"].mean())


def test_main_writes_database_and_metrics(tmp_path, params_dict):
    import yaml

    small = dict(params_dict)
    small["simulate"] = {**params_dict["simulate"], "n_sessions": 100, "n_students": 20}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small))
    out, metrics = tmp_path / "db" / "study.db", tmp_path / "m.json"
    simulate.main(["--params", str(tmp_path / "params.yaml"), "--out", str(out), "--metrics", str(metrics)])
    assert len(read(out, "study_sessions")) == 100
    assert '"n_sessions": 100' in metrics.read_text()
