import pandas as pd
import pytest
import yaml

from mlpipe import validate
from mlpipe.core.errors import PipelineError
from mlpipe.core.stage import run


def test_clean_table_passes_with_contract_dtypes(raw_frame, params):
    valid, quarantine, metrics = validate.split_valid(raw_frame, params.validate)
    assert len(valid) == len(raw_frame) and quarantine.empty
    assert metrics["rows_quarantined"] == 0
    assert str(valid["age"].dtype) == "Int64"
    assert str(valid["session_date"].dtype) == "datetime64[ns]"


def test_bad_rows_are_quarantined_with_reasons(raw_frame, params):
    frame = raw_frame.copy()
    frame["extra"] = 1
    frame.loc[3, "age"] = 99
    frame.loc[5, "subject"] = "astrology"
    frame.loc[7, "session_date"] = "not a date"
    frame.loc[9, "actual_duration"] = None
    frame.loc[9, "energy_level"] = 0
    valid, quarantine, metrics = validate.split_valid(frame, params.validate)
    assert quarantine["row"].tolist() == [3, 5, 7, 9]
    reasons = dict(zip(quarantine["row"], quarantine["reasons"], strict=True))
    assert reasons[3] == "age: less_than_or_equal_to(35.0)"
    assert reasons[5].startswith("subject: isin(")
    assert reasons[7] == "session_date: is_date"
    assert reasons[9] == "actual_duration: not_nullable; energy_level: greater_than_or_equal_to(1.0)"
    assert len(valid) == len(frame) - 4 and "extra" not in valid.columns
    assert metrics["dropped_columns"] == ["extra"]
    assert metrics["failures"]["session_date: is_date"] == 1


def test_missing_column_fails_naming_it(raw_frame, params):
    with pytest.raises(PipelineError, match="column 'age' is missing"):
        validate.split_valid(raw_frame.drop(columns=["age"]), params.validate)


def test_wrong_type_fails_naming_column(raw_frame, params):
    frame = raw_frame.assign(difficulty_level=raw_frame["difficulty_level"].astype(str) + "x")
    with pytest.raises(PipelineError, match="column 'difficulty_level': expected int"):
        validate.split_valid(frame, params.validate)
    frame = raw_frame.assign(subject=7)
    with pytest.raises(PipelineError, match="column 'subject': expected str"):
        validate.split_valid(frame, params.validate)


def test_too_many_bad_rows_fail_the_stage(raw_frame, params):
    frame = raw_frame.copy()
    frame.loc[: len(frame) // 10, "time_of_day"] = "midnight"
    with pytest.raises(PipelineError, match=r"above validate.max_invalid_share=0.05.*time_of_day: isin"):
        validate.split_valid(frame, params.validate)


def test_empty_table_fails(raw_frame, params):
    with pytest.raises(PipelineError, match="no rows"):
        validate.split_valid(raw_frame.iloc[:0], params.validate)


def test_main_writes_nothing_on_schema_break(tmp_path, raw_frame, params_dict, capsys):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_dict))
    raw_frame.drop(columns=["subject"]).to_parquet(tmp_path / "raw.parquet")
    outs = [tmp_path / "v" / "valid.parquet", tmp_path / "v" / "q.parquet", tmp_path / "m.json"]
    argv = ["--params", str(tmp_path / "params.yaml"), "--data", str(tmp_path / "raw.parquet")]
    argv += ["--out", str(outs[0]), "--quarantine", str(outs[1]), "--metrics", str(outs[2])]
    assert run(validate.main, argv) == 1
    assert (
        capsys.readouterr().err.strip()
        == "mlpipe.validate: error: column 'subject' is missing from the table"
    )
    assert not any(p.exists() for p in outs)
    raw_frame.to_parquet(tmp_path / "raw.parquet")
    assert run(validate.main, argv) == 0
    assert len(pd.read_parquet(outs[0])) == len(raw_frame)
