"""The early-warning demo's files: the cohort of :mod:`mlpipe.demo.activity` streamed chunk by chunk
into ``students.parquet``, ``activity.parquet`` (in student order, as the preprocess stage reads it)
and ``oracle.parquet``: for each cutoff, each enrolled student's probability of dropping out after
it given what a model could see (:func:`mlpipe.demo.filtering.observable_oracle`, column
``probability``) and given the latent engagement itself (column ``latent``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlpipe.demo import activity, filtering

STUDENTS, ACTIVITY, ORACLE = "students.parquet", "activity.parquet", "oracle.parquet"


def oracle_rows(chunk: activity.Chunk, cutoff: int, seed: int) -> pd.DataFrame:
    observable = filtering.observable_oracle(chunk, cutoff, seed)
    latent = activity.oracle(chunk, cutoff, seed)
    return pd.DataFrame(
        {
            "student_id": observable["student_id"].to_numpy(),
            "cutoff": cutoff,
            "probability": observable["probability"].to_numpy(),
            "latent": latent["probability"].to_numpy(),
            "dropped_out": observable["dropped_out"].to_numpy(),
        }
    )


def write(cohort: activity.Cohort, folder: Path, cutoffs: list[int], oracle: bool = True) -> dict:
    """Stream the cohort into the three Parquet files in ``folder`` (no oracle file without
    ``oracle``); returns counts for the metrics."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writers: dict[str, pq.ParquetWriter] = {}
    counts = {"students": 0, "activity_rows": 0, "dropped_out": 0}

    def put(name: str, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if name not in writers:
            writers[name] = pq.ParquetWriter(folder / name, table.schema, compression="zstd")
        writers[name].write_table(table)

    try:
        for chunk in activity.chunks(cohort):
            put(STUDENTS, chunk.students)
            put(ACTIVITY, chunk.activity)
            for cutoff in cutoffs if oracle else ():
                put(ORACLE, oracle_rows(chunk, cutoff, cohort.seed))
            counts["students"] += len(chunk.students)
            counts["activity_rows"] += len(chunk.activity)
            counts["dropped_out"] += int((chunk.dropped_week >= 0).sum())
    finally:
        for writer in writers.values():
            writer.close()
    return counts
