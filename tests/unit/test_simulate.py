import math
import sqlite3

import numpy as np
import pandas as pd

from mlpipe import simulate
from mlpipe.demo import synthetic


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


def test_a_later_term_follows_the_first_unchanged_and_moves_as_documented(tmp_path, params):
    first = params.simulate.model_copy(update={"n_sessions": 3000, "n_students": 200, "noise_sd": 0.0})
    later = first.model_copy(update={"later_terms": 1, "term_sessions": 3000})
    simulate.simulate(str(tmp_path / "one.db"), first, seed=4)
    metrics = simulate.simulate(str(tmp_path / "two.db"), later, seed=4)
    one, two = read(tmp_path / "one.db", "study_sessions"), read(tmp_path / "two.db", "study_sessions")
    assert two.iloc[:3000].equals(one)  # the first term's rows are the same
    assert read(tmp_path / "one.db", "student_outcomes").equals(read(tmp_path / "two.db", "student_outcomes"))
    term = two.iloc[3000:]
    assert term["session_id"].tolist() == list(range(3001, 6001)) and metrics["later_sessions"] == 3000
    assert term["session_date"].min() > one["session_date"].max()
    night = [(frame["time_of_day"] == "night").mean() for frame in (one, term)]
    assert abs(night[0] - 0.15) < 0.03 and abs(night[1] - 0.45) < 0.03
    topics = read(tmp_path / "two.db", "topics").set_index("topic_id")
    hardness = [topics.loc[frame["topic_id"], "difficulty_level"].mean() for frame in (one, term)]
    assert hardness[1] > hardness[0] + 1
    # noise-free: each later session's duration is the formula with 0.3 h per break
    students = read(tmp_path / "two.db", "students").set_index("student_id")
    signal = synthetic.true_signal(term, students, topics, breaks_coefficient=0.3)
    expected = np.round(np.maximum(signal, synthetic.MIN_DURATION), 4)
    assert np.allclose(term["actual_duration"].to_numpy(), expected, atol=1e-4)
