"""Batch scoring on a Dask cluster of worker processes on 127.0.0.1: the single-process output."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from tests.serving.test_batch import read, write

from mlpipe.cli.main import main
from mlpipe.core.errors import PipelineError
from mlpipe.serving import cluster as scoring
from mlpipe.serving.batch import predict_file
from mlpipe.serving.predictor import Predictor

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread each on loopback, stopped after the module."""
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as local,
        distributed.Client(local) as client,
    ):
        yield client


@pytest.fixture
def parts(tmp_path: Path, test_frame: pd.DataFrame) -> Path:
    """The test split as four parts in three formats."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i, (chunk, kind) in enumerate(
        zip(
            [test_frame.iloc[i::4].reset_index(drop=True) for i in range(4)],
            ["parquet", "csv", "jsonl", "parquet"],
            strict=True,
        )
    ):
        write(chunk, folder / f"part-{i}.{kind}")
    (folder / "README.txt").write_text("not a part")
    return folder


def test_cluster_output_equals_single_process_output_part_by_part(built, parts, tmp_path, cluster):
    found = scoring.input_parts(str(parts))
    assert [p.name for p in found] == ["part-0.parquet", "part-1.csv", "part-2.jsonl", "part-3.parquet"]
    reports, failed = scoring.score_parts(cluster, built / "bundle", found, tmp_path / "out")
    assert failed == [] and len(reports) == 4
    assert os.getpid() not in {r.worker for r in reports}  # scored in the worker processes
    local = Predictor(built / "bundle").load()
    for part in found:
        single = tmp_path / "single" / f"{part.stem}.parquet"
        single.parent.mkdir(exist_ok=True)
        predict_file(local, part, single, progress=False)
        pd.testing.assert_frame_equal(read(tmp_path / "out" / f"{part.stem}.parquet"), read(single))
    assert sum(r.scored for r in reports) == sum(len(read(p)) for p in found)


def test_a_bad_row_fails_its_part_only_with_the_single_process_error(
    built, parts, tmp_path, cluster, test_frame
):
    bad = test_frame.head(5).astype({"age": "object"})
    bad.loc[3, "age"] = "old"
    write(bad, parts / "part-9.csv")
    with pytest.raises(PipelineError) as single:
        predict_file(Predictor(built / "bundle").load(), parts / "part-9.csv", tmp_path / "x.parquet")
    found = scoring.input_parts(str(parts / "part-*"))
    reports, failed = scoring.score_parts(cluster, built / "bundle", found, tmp_path / "out", "csv")
    assert [(p.name, error) for p, error in failed] == [("part-9.csv", str(single.value))]
    assert "line 5" in str(single.value) and "age" in str(single.value)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"part-{i}.csv" for i in range(4)]
    assert len(reports) == 4


def test_cli_scores_a_folder_on_a_scheduler_and_exits_1_naming_failed_parts(
    built, parts, tmp_path, cluster, capsys
):
    address = cluster.scheduler.address
    args = ["predict", str(parts), "-o", str(tmp_path / "out"), "--bundle", str(built / "bundle")]
    assert main([*args, "--scheduler", address]) == 0
    err = capsys.readouterr().err
    assert "in 4 of 4 parts" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"part-{i}.parquet" for i in range(4)], (
        err
    )
    (parts / "part-5.parquet").write_bytes(b"not parquet")
    assert main([*args, "--scheduler", address]) == 1
    assert "1 of 5 parts failed" in capsys.readouterr().err
    assert main([*args, "--scheduler", address, "--cluster", "local"]) == 1
    assert "not both" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "empty*"), "-o", str(tmp_path / "o"), "--cluster", "local"]) == 1
    assert "no .csv, .parquet or .jsonl files" in capsys.readouterr().err


def test_a_worker_refuses_a_bundle_whose_version_differs(built):
    with pytest.raises(PipelineError, match="the client verified 000000000000"):
        scoring.worker_predictor(str(built / "bundle"), "000000000000", 1)
