"""Stage ``validate``: check the raw snapshot against the data contract in params.

Inputs: the raw snapshot from ``ingest``.
Outputs: the validated table (Parquet), the quarantined rows with their reasons (Parquet), and a
metrics file with counts per failed check.
Params: ``validate.columns`` (dtype, nullable, min/max, allowed), ``validate.max_invalid_share``.

Structural problems (a missing column, a column of the wrong type) fail the stage, naming the
column. Row-level problems (a null, a value out of range, an unknown category) move the row to the
quarantine file; if their share exceeds ``validate.max_invalid_share`` the stage fails instead.
The snapshot is read in bounded batches (:data:`mlpipe.core.files.BATCH_ROWS`) and both tables are written
as they go, so memory is flat in its size; a row's number is its position in the snapshot.
Columns outside the contract are dropped. The checks are a pandera schema built from params.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandas.api import types

from mlpipe.core import files
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import ColumnRule, ValidateParams, load_params
from mlpipe.core.stage import run

log = logging.getLogger("mlpipe.validate")

DTYPES = {"int": "Int64", "float": "float64", "str": "str", "date": "datetime64[ns]"}
NOT_A_DATE = "is_date"


def _normalise_column(name: str, column: pd.Series, rule: ColumnRule) -> pd.Series:
    """Give a column the contract's dtype, or raise if its type cannot be that dtype."""
    kind = rule.dtype
    if kind == "int":
        if types.is_integer_dtype(column) or types.is_bool_dtype(column):
            return column.astype("Int64")
        if types.is_float_dtype(column):
            present = column.dropna()
            if (present == present.round()).all():
                return column.astype("Int64")
            raise PipelineError(f"column {name!r}: expected int, found non-integer numbers")
    elif kind == "float":
        if types.is_numeric_dtype(column) and not types.is_bool_dtype(column):
            return column.astype("float64")
    elif kind == "str":
        textual = types.is_string_dtype(column) or types.is_object_dtype(column)
        if textual and column.dropna().map(lambda v: isinstance(v, str)).all():
            return column.astype("str").where(column.notna(), None)
    elif kind == "date":
        if types.is_datetime64_any_dtype(column):
            return column.astype("datetime64[ns]")
        if types.is_string_dtype(column) or types.is_object_dtype(column):
            return pd.to_datetime(column, errors="coerce", format="ISO8601").astype("datetime64[ns]")
    raise PipelineError(f"column {name!r}: expected {kind}, found dtype {column.dtype}")


def normalise(frame: pd.DataFrame, rules: dict[str, ColumnRule]) -> pd.DataFrame:
    """Keep the contract's columns, in its order, each converted to its declared dtype.

    Raises:
        PipelineError: naming the first missing column or the first column of the wrong type.
    """
    missing = [name for name in rules if name not in frame.columns]
    if missing:
        raise PipelineError(
            f"column {missing[0]!r} is missing from the table"
            + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else "")
        )
    return pd.DataFrame({name: _normalise_column(name, frame[name], rule) for name, rule in rules.items()})


def build_schema(rules: dict[str, ColumnRule]) -> pa.DataFrameSchema:
    """The pandera schema of the row-level checks declared in params."""
    columns = {}
    for name, rule in rules.items():
        checks = []
        if rule.min is not None:
            checks.append(pa.Check.ge(rule.min))
        if rule.max is not None:
            checks.append(pa.Check.le(rule.max))
        if rule.allowed is not None:
            checks.append(pa.Check.isin(rule.allowed))
        columns[name] = pa.Column(DTYPES[rule.dtype], checks=checks, nullable=rule.nullable)
    return pa.DataFrameSchema(columns, strict=True, ordered=True)


def row_failures(frame: pd.DataFrame, raw: pd.DataFrame, rules: dict[str, ColumnRule]) -> pd.DataFrame:
    """Each row-level failure as (row, column, check, value), sorted by row.

    Args:
        frame: The normalised table.
        raw: The table before normalisation, to tell an unparsable date from a missing one.
        rules: The contract.

    Raises:
        PipelineError: for a failure that is not tied to a row (a wrong dtype, say).
    """
    try:
        build_schema(rules).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return pd.DataFrame({"row": [], "column": [], "check": [], "value": []})
    structural = cases[cases["index"].isna()]
    if len(structural):
        case = structural.iloc[0]
        column = case["column"] if isinstance(case["column"], str) else case["failure_case"]
        raise PipelineError(f"column {column!r} fails check {case['check']}")
    failures = pd.DataFrame(
        {
            "row": cases["index"].astype("int64").to_numpy(),
            "column": cases["column"].astype("str").to_numpy(),
            "check": cases["check"].astype("str").to_numpy(),
            "value": cases["failure_case"].astype("str").to_numpy(),
        }
    )
    # An unparsable date was turned into NaT: report it as such, with the text that was there.
    for name in (n for n, r in rules.items() if r.dtype == "date"):
        at = (failures["column"] == name) & (failures["check"] == "not_nullable")
        rows = failures.loc[at, "row"]
        unparsable = raw.loc[rows, name].notna().to_numpy()
        fix = at.copy()
        fix[at] = unparsable
        failures.loc[fix, "check"] = NOT_A_DATE
        failures.loc[fix, "value"] = raw.loc[failures.loc[fix, "row"], name].astype("str").to_numpy()
    return failures.sort_values(["row", "column", "check"], kind="stable").reset_index(drop=True)


def check_batch(
    raw: pd.DataFrame, rules: dict[str, ColumnRule], offset: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Check one batch of the snapshot: its valid rows, its quarantined rows, and every failure.

    Args:
        raw: The batch as read.
        rules: The contract.
        offset: The batch's first row in the snapshot: quarantine and failures count rows from it.

    Returns:
        The valid rows (contract dtypes, fresh index), the quarantined raw rows as text with a
        ``row`` number and a ``reasons`` column, and the failures (row, column, check, value).

    Raises:
        PipelineError: on a structural problem (a missing column, a column of the wrong type).
    """
    raw = raw.reset_index(drop=True)
    frame = normalise(raw, rules)
    failures = row_failures(frame, raw, rules)
    bad_rows = sorted(set(failures["row"]))
    reasons: dict[int, list[str]] = {}
    for row, column, check in zip(failures["row"], failures["column"], failures["check"], strict=True):
        reasons.setdefault(int(row), []).append(f"{column}: {check}")
    quarantine = raw.loc[bad_rows].astype("str")
    quarantine["reasons"] = ["; ".join(reasons[row]) for row in bad_rows]
    quarantine.insert(0, "row", [offset + row for row in bad_rows])
    valid = frame.drop(index=bad_rows).reset_index(drop=True)
    failures["row"] += offset
    return valid, quarantine, failures


class Tally:
    """What the batches found, added up: rows in and out, failures per check, the first of each."""

    def __init__(self) -> None:
        self.rows_in = self.rows_valid = self.rows_quarantined = 0
        self.by_check: Counter[str] = Counter()
        self.first: dict[str, tuple[int, str]] = {}
        self.dropped: list[str] = []

    def add(
        self, raw: pd.DataFrame, valid: pd.DataFrame, quarantine: pd.DataFrame, failures: pd.DataFrame
    ) -> None:
        if not self.rows_in:
            self.dropped = sorted(set(raw.columns) - set(valid.columns))
        self.rows_in += len(raw)
        self.rows_valid += len(valid)
        self.rows_quarantined += len(quarantine)
        for row, column, check, value in failures.itertuples(index=False):
            key = f"{column}: {check}"
            self.by_check[key] += 1
            self.first.setdefault(key, (int(row), value))

    def metrics(self, params: ValidateParams) -> dict[str, object]:
        """The counts, once every batch is in.

        Raises:
            PipelineError: for an empty snapshot, no valid row, or too many invalid rows.
        """
        if not self.rows_in:
            raise PipelineError("the snapshot has no rows")
        share = self.rows_quarantined / self.rows_in
        if share > params.max_invalid_share:
            ((worst, count),) = self.by_check.most_common(1)
            row, value = self.first[worst]
            raise PipelineError(
                f"{self.rows_quarantined} of {self.rows_in} rows ({share:.1%}) are invalid, above"
                f" validate.max_invalid_share={params.max_invalid_share}; most common: column"
                f" {worst} in {count} rows (first at row {row}, value {value!r})"
            )
        if not self.rows_valid:
            raise PipelineError("no valid rows are left after validation")
        return {
            "rows_in": self.rows_in,
            "rows_valid": self.rows_valid,
            "rows_quarantined": self.rows_quarantined,
            "invalid_share": share,
            "failures": dict(sorted(self.by_check.items())),
            "dropped_columns": self.dropped,
        }


def split_valid(
    raw: pd.DataFrame, params: ValidateParams
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, object]]:
    """Split a snapshot held in memory into valid and quarantined rows, with counts (one batch).

    Raises:
        PipelineError: on a structural problem, an empty table, or too many invalid rows.
    """
    if raw.empty:
        raise PipelineError("the snapshot has no rows")
    valid, quarantine, failures = check_batch(raw, params.columns)
    tally = Tally()
    tally.add(raw, valid, quarantine, failures)
    return valid, quarantine, tally.metrics(params)


def arrow_schema(rules: dict[str, ColumnRule]) -> Any:
    """The validated table's Arrow schema, from the contract alone (a batch of nulls cannot change it)."""
    import pyarrow as pa

    kinds = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "date": pa.timestamp("ns")}
    return pa.schema([(name, kinds[rule.dtype]) for name, rule in rules.items()])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlpipe.validate", description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--data", required=True, help="raw snapshot (Parquet) to check")
    parser.add_argument("--out", required=True, help="validated table (Parquet) to write")
    parser.add_argument("--quarantine", required=True, help="rejected rows (Parquet) to write")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    args = parser.parse_args(argv)

    params = load_params(args.params).validate
    tally = Tally()
    with files.atomic_path(args.out) as out, files.atomic_path(args.quarantine) as held:
        valid_sink = files.ParquetSink(out, arrow_schema(params.columns))
        held_sink = files.ParquetSink(held)
        empty = None
        for raw in files.iter_parquet(args.data):  # bounded batches: memory flat in the snapshot's size
            valid, quarantine, failures = check_batch(raw, params.columns, tally.rows_in)
            tally.add(raw, valid, quarantine, failures)
            if len(valid):
                valid_sink.write(valid)
            if len(quarantine):
                held_sink.write(quarantine)
            empty = (valid.iloc[:0], quarantine.iloc[:0])
        metrics = tally.metrics(params)  # raises before anything is renamed into place
        valid_sink.close(empty[0])
        held_sink.close(empty[1])
    files.write_json(args.metrics, metrics)
    if metrics["dropped_columns"]:
        log.warning("dropped columns outside the contract: %s", ", ".join(metrics["dropped_columns"]))
    log.info(
        "%d valid rows, %d quarantined (%.2f%%)",
        metrics["rows_valid"],
        metrics["rows_quarantined"],
        100 * metrics["invalid_share"],
    )


if __name__ == "__main__":
    raise SystemExit(run(main))
