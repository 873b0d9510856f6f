import math
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from mlpipe.core import files


def test_atomic_file_left_untouched_on_failure(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), files.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_directory_replaces_whole_folder(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    (target / "stale.txt").write_text("x")
    with files.atomic_path(target, directory=True) as tmp:
        (tmp / "new.txt").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    with pytest.raises(ValueError), files.atomic_path(target, directory=True) as tmp:
        (tmp / "partial.txt").write_text("z")
        raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_json_is_stable_and_strict(tmp_path):
    import numpy as np

    data = {"b": np.float32(0.5), "a": [np.int64(3), math.nan]}
    assert files.dumps_json(data) == '{\n  "a": [\n    3,\n    null\n  ],\n  "b": 0.5\n}\n'
    files.write_json(tmp_path / "m.json", data)
    assert files.read_json(tmp_path / "m.json") == {"a": [3, None], "b": 0.5}
    unsorted = files.dumps_json({"z": 1, "y": 2}, sort_keys=False)
    assert unsorted.index('"z"') < unsorted.index('"y"')


def test_parquet_round_trip_is_byte_stable(tmp_path):
    frame = pd.DataFrame({"x": [1.5, 2.5], "s": ["a", "b"]})
    files.write_parquet(tmp_path / "a.parquet", frame)
    files.write_parquet(tmp_path / "b.parquet", frame)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    pd.testing.assert_frame_equal(files.read_parquet(tmp_path / "a.parquet"), frame)


def test_what_a_killed_run_left_is_removed_and_git_ignored(tmp_path):
    (tmp_path / ".package.k1ll3d").mkdir()  # a folder and a file SIGKILL interrupted
    (tmp_path / ".package.k1ll3d" / "model.onnx").write_bytes(b"half")
    (tmp_path / ".evaluate.json.x9.tmp").write_text("{")
    (tmp_path / ".other.k1ll3d").mkdir()  # another output's: not this one's to remove
    with files.atomic_path(tmp_path / "package", directory=True) as tmp:
        (tmp / "SHA256SUMS").write_text("")
    with files.atomic_path(tmp_path / "evaluate.json") as tmp:
        tmp.write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.k1ll3d", "evaluate.json", "package"]
    root = Path(__file__).resolve().parents[2]
    for name in ("models/.package.k1ll3d/", "metrics/.evaluate.json.x9.tmp", "metrics/.train.abc/"):
        ignored = subprocess.run(["git", "check-ignore", "-q", name], cwd=root)
        assert ignored.returncode == 0, f"{name} is not git-ignored"
    assert subprocess.run(["git", "check-ignore", "-q", "metrics/evaluate.json"], cwd=root).returncode == 1
