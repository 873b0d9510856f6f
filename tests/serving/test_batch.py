"""``mlpipe predict`` on CSV, Parquet and JSON lines: the same predictions as the Python API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlpipe.cli.main import main
from mlpipe.serving.predictor import Predictor

FORMATS = ("csv", "parquet", "jsonl")


def write(frame: pd.DataFrame, path: Path) -> Path:
    kind = path.suffix[1:]
    if kind == "csv":
        frame.to_csv(path, index=False)
    elif kind == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True, date_format="iso")
    return path


def read(path: Path) -> pd.DataFrame:
    kind = path.suffix[1:]
    if kind == "csv":
        return pd.read_csv(path)
    if kind == "parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, lines=True)


@pytest.fixture(scope="module")
def expected(built: Path, test_frame: pd.DataFrame) -> np.ndarray:
    return Predictor(built / "bundle").predict_frame(test_frame).values


@pytest.mark.parametrize("source_kind", FORMATS)
@pytest.mark.parametrize("target_kind", FORMATS)
def test_every_format_in_and_out(built, test_frame, expected, tmp_path, source_kind, target_kind, capsys):
    source = write(test_frame, tmp_path / f"in.{source_kind}")
    target = tmp_path / f"out.{target_kind}"
    assert main(["predict", "--bundle", str(built / "bundle"), str(source), "-o", str(target)]) == 0
    out = read(target)
    assert list(out.columns) == ["session_id", "student_id", "topic_id", "session_date", "prediction"]
    assert out["session_id"].tolist() == test_frame["session_id"].tolist()
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected, rtol=0, atol=1e-9)
    assert f"scored {len(test_frame)} rows (0 skipped)" in capsys.readouterr().err


def test_small_chunks_give_the_same_output(built, test_frame, tmp_path):
    source = write(test_frame, tmp_path / "in.parquet")
    for rows, name in ((100_000, "one.csv"), (37, "many.csv")):
        args = ["predict", "--bundle", str(built / "bundle"), str(source), "-o", str(tmp_path / name)]
        assert main([*args, "--chunk-rows", str(rows)]) == 0
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "many.csv").read_bytes()


def bad_csv(test_frame: pd.DataFrame, path: Path) -> Path:
    frame = test_frame.head(8).astype({"age": "object"}).reset_index(drop=True)
    frame.loc[2, "age"] = "abc"
    frame.loc[5, "energy_level"] = 9
    return write(frame, path)


def test_bad_rows_are_reported_by_line_and_nothing_is_written(built, test_frame, tmp_path, capsys):
    source = bad_csv(test_frame, tmp_path / "bad.csv")
    target = tmp_path / "out.csv"
    assert main(["predict", "--bundle", str(built / "bundle"), str(source), "-o", str(target)]) == 1
    err = capsys.readouterr().err
    # the header is line 1, so data row 2 (from 0) is line 4
    assert "line 4, field 'age': not a number: 'abc'" in err
    assert "line 7, field 'energy_level': 9 is above the maximum 5" in err
    assert not target.exists() and list(tmp_path.iterdir()) == [source]


def test_a_null_text_in_a_number_column_is_named_as_such(built, test_frame, tmp_path, capsys):
    source = tmp_path / "na.csv"
    test_frame.head(3).astype({"age": "object"}).assign(age=["24", "n/a", "25"]).to_csv(source, index=False)
    assert (
        main(["predict", "--bundle", str(built / "bundle"), str(source), "-o", str(tmp_path / "o.csv")]) == 1
    )
    assert "line 3, field 'age': missing value (an empty cell, a null, or a null text such as NA, n/a" in (
        capsys.readouterr().err
    )


def test_skip_invalid_scores_the_rest(built, test_frame, tmp_path, capsys):
    source = bad_csv(test_frame, tmp_path / "bad.csv")
    target = tmp_path / "out.csv"
    args = ["predict", "--bundle", str(built / "bundle"), str(source), "-o", str(target), "--skip-invalid"]
    assert main(args) == 0
    out = pd.read_csv(target)
    assert out["session_id"].tolist() == test_frame.head(8)["session_id"].drop(index=[2, 5]).tolist()
    assert "skipped line 4, field 'age'" in capsys.readouterr().err


def test_json_lines_keep_json_types(built, test_frame, tmp_path, capsys):
    records = [{**r, "session_date": str(r["session_date"])} for r in test_frame.head(3).to_dict("records")]
    records[1]["age"] = str(records[1]["age"])  # "24": fine in a CSV, a wrong type in JSON
    lines = [json.dumps(r) for r in records]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    assert (
        main(["predict", "--bundle", str(built / "bundle"), str(source), "-o", str(tmp_path / "o.csv")]) == 1
    )
    assert "line 2, field 'age': must be a number, got str" in capsys.readouterr().err
    source.write_text(lines[0] + "\n{not json\n")
    assert (
        main(["predict", "--bundle", str(built / "bundle"), str(source), "-o", str(tmp_path / "o.csv")]) == 1
    )
    assert "line 2: not valid JSON" in capsys.readouterr().err


def test_unknown_format_missing_input_and_bad_bundle_are_one_line_errors(built, tmp_path, capsys):
    bundle = str(built / "bundle")
    assert (
        main(["predict", "--bundle", bundle, str(tmp_path / "in.xlsx"), "-o", str(tmp_path / "o.csv")]) == 1
    )
    assert "unknown format '.xlsx'" in capsys.readouterr().err
    assert (
        main(["predict", "--bundle", bundle, str(tmp_path / "none.csv"), "-o", str(tmp_path / "o.csv")]) == 1
    )
    assert "input file not found" in capsys.readouterr().err
    assert main(["predict", "--bundle", str(tmp_path), str(tmp_path / "none.csv"), "-o", "o.csv"]) == 1
    assert "mlpipe: error: SHA256SUMS is missing" in capsys.readouterr().err


def test_the_readmes_example_files_are_scored_as_it_shows(built: Path, tmp_path: Path):
    """``data/examples`` is what the README's predict and curl lines send: it must stay valid."""
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    assert "mlpipe predict data/examples/sessions.csv -o scored.csv" in readme
    curl = "curl -s localhost:8000/predict -H 'content-type: application/json' -d @data/examples/record.json"
    assert curl in readme
    record = json.loads((root / "data" / "examples" / "record.json").read_text())
    sessions = pd.read_csv(root / "data" / "examples" / "sessions.csv")
    assert record == json.loads(sessions.head(1).to_json(orient="records"))[0]
    out = tmp_path / "scored.csv"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlpipe.cli",
            "predict",
            str(root / "data/examples/sessions.csv"),
            "-o",
            str(out),
        ]
        + ["--bundle", str(built / "bundle")],
        check=True,
        capture_output=True,
    )
    scored = pd.read_csv(out)
    assert scored["session_id"].tolist() == sessions["session_id"].tolist()
    one = Predictor(built / "bundle").predict_records([record]).values[0]
    assert scored["prediction"].iloc[0] == pytest.approx(one, abs=1e-6)


def bad_files(good: bytes, latin1: bytes) -> dict[str, tuple[bytes, str]]:
    """Each file a careless export makes, and the one line mlpipe predict answers it with."""
    header, first, second = good.splitlines(keepends=True)[:3]
    return {
        "truncated.csv": (header + first + second[:20], "line 3: "),
        "short_row.csv": (header + first[:15] + b"\n" + second, "line 2: "),
        "empty.csv": (b"", "empty file (no header line)"),
        "no_newline.csv": (header.rstrip(b"\n"), "line 1: a header and no rows"),
        "utf16.csv": (good.decode().encode("utf-16"), "UTF-16 text: save it as UTF-8"),
        "latin1.csv": (latin1, "line 3: not UTF-8"),
        "binary.csv": (bytes(range(256)) * 8, "a binary file, not CSV text"),
        "latin1.jsonl": ('{"topic": "\xe9"}\n'.encode("latin-1"), "line 1: not UTF-8 text"),
        "deep.jsonl": (b"[" * 100_000 + b"]" * 100_000 + b"\n", "line 1: JSON nested too deeply"),
        "text.parquet": (good, "not a Parquet file"),
    }


def test_every_bad_file_is_one_line_naming_the_file_and_line_and_nothing_is_written(
    built, test_frame, tmp_path, capsys
):
    good = write(test_frame.head(5), tmp_path / "good.csv").read_bytes()
    inputs = json.loads((built / "bundle" / "metadata.json").read_text())["inputs"]
    text = next(name for name, spec in inputs.items() if spec["type"] == "string")  # a category
    frame = test_frame.head(5).astype({text: object})
    frame.loc[frame.index[1], text] = "caf\xe9"
    latin1 = frame.to_csv(index=False).encode("latin-1")
    for name, (content, reason) in bad_files(good, latin1).items():
        source, target = tmp_path / name, tmp_path / f"out-{name}.csv"
        source.write_bytes(content)
        assert main(["predict", "--bundle", str(built / "bundle"), str(source), "-o", str(target)]) == 1, name
        err = capsys.readouterr().err
        assert err.startswith(f"mlpipe: error: {source}: ") and reason in err, (name, err)
        if name in ("truncated.csv", "short_row.csv"):
            assert "fields, the header has" in err
        assert err.count("\n") == 1 and "Traceback" not in err, (name, err)
        assert not target.exists(), name
