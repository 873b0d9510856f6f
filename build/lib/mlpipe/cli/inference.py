"""What a team's table says about itself: each column's contract (type, nulls, widened range,
levels), its role, the task its target implies, and training sized to its rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.core.errors import PipelineError

SAMPLE_ROWS = 200_000  # rows read to infer the contract: enough for levels and ranges


MARGIN = 0.1  # observed ranges are widened by this share of their span (new data varies more)


@dataclass
class Column:
    """One column as the data shows it: its contract, its role and why."""

    name: str
    rule: dict[str, Any]
    role: str  # target, group, id, numeric, categorical, left out
    why: str


def read_sample(data: str, query: str | None) -> pd.DataFrame:
    """The table's first :data:`SAMPLE_ROWS` rows, read as ingest reads them.

    Raises:
        PipelineError: if the source cannot be read or has no rows.
    """
    from mlpipe.sources import csv_text as tables
    from mlpipe.sources import reading as sources

    if sources.is_file_source(data):
        if query is not None:
            raise PipelineError("--query applies to a database URL, not to a file")
        chunks = sources.read_file_chunks(Path(data))
    else:
        if query is None:
            raise PipelineError(f"{data}: a database URL needs --query (the SQL that returns the table)")
        chunks = sources.read_chunks(sources.database_url(data), query)
    frames, rows = [], 0
    for frame in chunks:
        frames.append(tables.blank_to_null(frame))
        rows += len(frame)
        if rows >= SAMPLE_ROWS:
            break
    sample = pd.concat(frames, ignore_index=True).head(SAMPLE_ROWS) if frames else pd.DataFrame()
    if sample.empty:
        raise PipelineError(f"{data}: no rows to learn from")
    return sample


def widened(values: pd.Series, integer: bool) -> dict[str, float]:
    """The observed range, widened by :data:`MARGIN` of its span (never below 0 if nothing was)."""
    low, high = float(values.min()), float(values.max())
    margin = MARGIN * (high - low) or MARGIN * max(abs(high), 1.0)
    lo, hi = low - margin, high + margin
    if low >= 0:
        lo = max(lo, 0.0)
    if integer:
        return {"min": int(np.floor(lo)), "max": int(np.ceil(hi))}
    return {"min": float(f"{lo:.6g}"), "max": float(f"{hi:.6g}")}


def infer_task(target: pd.Series, task: str | None, max_levels: int) -> str:
    """The task for the target, checked against what it holds.

    Raises:
        PipelineError: naming the target, if it is all null, constant, or not what the task needs.
    """
    values = target.dropna()
    name = target.name
    if values.empty:
        raise PipelineError(f"--target {name!r}: every value is missing")
    levels = values.nunique()
    if levels < 2:
        only = values.iloc[0].item() if hasattr(values.iloc[0], "item") else values.iloc[0]
        raise PipelineError(f"--target {name!r}: one value only ({only!r}): nothing to learn")
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if task is None:
        task = "binary" if levels == 2 else "regression" if numeric else "multiclass"
    if task == "regression" and not numeric:
        raise PipelineError(f"--target {name!r}: holds text, not numbers: use --task binary or multiclass")
    if task == "binary" and levels != 2:
        raise PipelineError(f"--target {name!r}: {levels} classes, not 2: use --task multiclass")
    if task == "multiclass" and levels > max_levels:
        raise PipelineError(
            f"--target {name!r}: {levels} classes, more than preprocess.max_levels ({max_levels})"
        )
    return task


def infer_column(series: pd.Series, max_levels: int) -> Column:
    """A feature column's contract and role (the target and group are set by the caller)."""
    name = str(series.name)
    values = series.dropna()
    nullable = bool(series.isna().any())
    rule: dict[str, Any] = {}
    missing = f"{series.isna().mean():.1%} missing" if nullable else "no nulls"
    named_like_id = (
        name.lower() in ("id", "uuid") or name.lower().endswith("_id") or name.endswith(("Id", "ID"))
    )
    if pd.api.types.is_bool_dtype(values):
        return Column(name, {"dtype": "str", "nullable": True}, "left out", "true/false: write it as 0/1")
    if pd.api.types.is_datetime64_any_dtype(values):
        rule = {"dtype": "date"}
        return Column(
            name, rule | ({"nullable": True} if nullable else {}), "left out", "a date: derive features"
        )
    if pd.api.types.is_integer_dtype(values) or pd.api.types.is_float_dtype(values):
        integer = pd.api.types.is_integer_dtype(values)
        rule = {"dtype": "int" if integer else "float", **({"nullable": True} if nullable else {})}
        if values.empty:
            return Column(name, rule, "left out", "every value is missing")
        rule |= widened(values, integer)
        seen = f"observed {values.min():g} to {values.max():g}, widened {MARGIN:.0%}; {missing}"
        unique = integer and values.is_unique and len(values) == len(series)
        if named_like_id or unique:
            why = "named like an id" if named_like_id else "a different whole number in every row"
            rule = {k: v for k, v in rule.items() if k != "max"}  # new rows bring larger ids
            return Column(name, rule, "id", f"{why}: kept for joins, never a feature; {missing}")
        return Column(name, rule, "numeric", seen)
    text = values.astype(str)
    rule = {"dtype": "str", **({"nullable": True} if nullable else {})}
    levels = text.nunique()
    if named_like_id:
        return Column(name, rule, "id", "named like an id: kept for joins, never a feature")
    if levels > max_levels:
        why = f"{levels} distinct texts, more than preprocess.max_levels ({max_levels}): free text or an id"
        return Column(name, rule, "left out", why)
    rule["allowed"] = sorted(text.unique().tolist())
    return Column(name, rule, "categorical", f"{levels} levels seen; {missing}")


EPOCHS = 1000  # an upper bound only: early stopping (train.patience) decides when training ends


@dataclass(frozen=True)
class Size:
    """Training settings, and the gate's margin against the linear baseline, for tables of up to
    ``rows`` rows."""

    rows: float
    units: tuple[int, ...]
    dropout: float
    batch_size: int
    learning_rate: float
    linear_margin: float  # package.gate.min_improvement.linear: how much worse than linear may pass
    why: str


SIZES = (  # the first whose rows the table does not pass
    Size(
        2_000,
        (32, 16),
        0.2,
        32,
        0.001,
        -0.25,
        "a small net with dropout (few rows to fit, and to overfit), small batches (enough steps per epoch)",
    ),
    Size(50_000, (64, 32, 16), 0.0, 64, 0.001, -0.05, "the dropout model's net and batches (3,000 rows)"),
    Size(
        float("inf"),
        (128, 64, 32, 16),
        0.0,
        256,
        0.001,
        -0.05,
        "the study-time model's net and batches (1-1,000,000 rows, README: Scale)",
    ),
)


def sized(rows: int) -> Size:
    """The training settings for a table of ``rows`` rows."""
    return next(size for size in SIZES if rows <= size.rows)
