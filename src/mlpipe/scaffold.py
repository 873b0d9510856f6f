"""``mlpipe init``: a pipeline folder for a team's table, inferred from the data, for a person to review.

It reads the table the way ingest will read it: a CSV or Parquet file, or a SQLAlchemy URL and a
query, with the same reader and the same missing-value rule. Then it writes ``pipelines/NAME/``:

- ``dvc.yaml``: the dropout pipeline's stages, which are the engine's generic ones, with these changes:
  - ingest depends on the data file;
  - the artifact is named NAME;
  - the outputs are named ``table.parquet``;
  - the plots suit the task: the root pipeline's for regression, the dropout pipeline's for
    classification.
- ``params.yaml``: the engine's settings from the dropout pipeline, plus what the data says:
  - a data contract: each column's type, whether it has nulls, its observed range widened by a
    margin, and the levels seen;
  - column roles: ids, numeric, categorical, and the columns left out;
  - the task, and a gate suited to it;
  - training sized to the table's rows (:data:`SIZES`: the net, dropout, the batch and the rate,
    and the gate's margin against the linear baseline), with an epoch cap that early stopping
    reaches first.

  Each inferred choice carries a comment that says why, so a person can review it.

Everything is checked before anything is written, and nothing is written unless all of it can be.
These stop with one line: a folder that exists, an unreadable source, or a target that cannot be
learned (all null, constant, or more classes than ``preprocess.max_levels``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlpipe import io
from mlpipe.errors import PipelineError

SAMPLE_ROWS = 200_000  # rows read to infer the contract: enough for levels and ranges
MARGIN = 0.1  # observed ranges are widened by this share of their span (new data varies more)
TEMPLATE = Path("pipelines") / "dropout"  # the engine's settings and generic stages, copied
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
GATES = {  # the task's metric and naive baseline; the gate's margins are relative improvements over each
    "regression": ("rmse", "mean"),
    "binary": ("log_loss", "majority"),
    "multiclass": ("log_loss", "majority"),
}


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
    from mlpipe import ingest

    if ingest.is_file_source(data):
        if query is not None:
            raise PipelineError("--query applies to a database URL, not to a file")
        chunks = ingest.read_file_chunks(Path(data))
    else:
        if query is None:
            raise PipelineError(f"{data}: a database URL needs --query (the SQL that returns the table)")
        chunks = ingest.read_chunks(ingest.database_url(data), query)
    frames, rows = [], 0
    for frame in chunks:
        frames.append(io.blank_to_null(frame))
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


def flow(value: Any) -> str:
    """A value in YAML flow style, on one line (a scalar as JSON, which is YAML)."""
    if isinstance(value, dict | list):
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 20).strip()
    if isinstance(value, float):  # YAML's own spelling: PyYAML reads 1e-05 (no dot) as text
        return yaml.safe_dump(value).removesuffix("\n...\n").strip()
    return json.dumps(value)


def key(name: str) -> str:
    """A mapping key in YAML: plain when it can be, quoted (JSON is YAML) otherwise."""
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else json.dumps(name)


def section(name: str, values: dict[str, Any]) -> str:
    return yaml.safe_dump({name: values}, sort_keys=False, default_flow_style=None, width=100)


@dataclass
class Table:
    """What :func:`init` read: where from, how it is shown, and what it holds."""

    source: str  # ingest.url, relative to the pipeline folder for a file
    query: str | None
    shown: str  # as the user named it
    rows: int  # in the sample
    classes: list[Any]  # the target's classes, most frequent first (empty for regression)


def sized(rows: int) -> Size:
    """The training settings for a table of ``rows`` rows."""
    return next(size for size in SIZES if rows <= size.rows)


def train_text(rows: int, template: dict[str, Any]) -> list[str]:
    """The train section for a table of ``rows`` rows: the template's settings, with the net, batch
    and rate sized to the table and an epoch cap that early stopping, not the budget, reaches."""
    size = sized(rows)
    values = {
        **template,
        "units": list(size.units),
        "dropout": [size.dropout] * len(size.units),
        "batch_size": size.batch_size,
        "learning_rate": size.learning_rate,
        "epochs": EPOCHS,
    }
    why = {
        "units": f"inferred: {rows} rows: {size.why}",
        "epochs": "an upper bound: early stopping decides (train warns if a model was still improving)",
    }
    lines = ["train:"]
    for name, value in values.items():
        lines.append(f"  {name}: {flow(value)}" + (f"  # {why[name]}" if name in why else ""))
    return lines


def gate_text(task: str, rows: int) -> list[str]:
    """The package gate for the task, its margin against the linear baseline sized to the table."""
    metric, naive = GATES[task]
    margin = sized(rows).linear_margin
    why = f"at most {-margin:.0%} worse than the linear one" + (
        ": a test split this small moves the metric by more than 5% for one row (the card"
        " names any baseline that beats the model)"
        if margin < -0.05
        else ""
    )
    return [
        f"  gate:  # suited to {task} and {rows} rows: beat the naive baseline by 10%, {why}",
        f"    metric: {metric}",
        f"    min_improvement: {flow({naive: 0.1, 'linear': margin})}",
        "    max: {}",
        "    min: {}",
    ]


def params_text(name: str, table: Table, task: str, columns: list[Column], template: dict) -> str:
    """params.yaml for the pipeline: the template's engine settings and what the data says."""
    target = next(c for c in columns if c.role == "target")
    group = next((c.name for c in columns if c.role == "group"), None)
    ids = [c.name for c in columns if c.role in ("id", "group")]
    numeric = [c.name for c in columns if c.role == "numeric"]
    categorical = [c.name for c in columns if c.role == "categorical"]
    left_out = [c for c in columns if c.role == "left out"]
    if not (numeric or categorical):
        raise PipelineError("no column can be a feature (every column is an id, a date or free text)")
    positive = table.classes[-1] if task == "binary" else None  # the rarer class
    lines = [
        f"# pipelines/{name}: written by `mlpipe init` from {table.shown}. Review each line marked",
        f"# `inferred`, then run from the repository root: dvc repro pipelines/{name}/dvc.yaml",
        "",
        section("base", template["base"]).rstrip(),
        "",
        "ingest:",
        f"  url: {flow(table.source)}",
        f"  query: {flow(table.query)}",
        "  key: null  # a column that grows with new rows (an id or a date) lets `mlpipe retrain` count them",
        "",
        "validate:",
        "  max_invalid_share: 0.05  # rows breaking the contract are quarantined, up to this share",
        f"  columns:  # inferred from {table.rows} rows: review the ranges and levels",
    ]
    for column in columns:
        if column.role == "left out":  # not in the contract: validate drops it from the table
            lines.append(f"    # {column.name}: left out ({column.why})")
        else:
            lines.append(
                f"    {key(column.name)}: {flow(column.rule)}  # inferred: {column.role}; {column.why}"
            )
    prep = template["preprocess"]
    task_why = {
        "regression": "the target holds numbers",
        "binary": f"the target has two classes, {flow(table.classes)}",
        "multiclass": f"the target has {len(table.classes)} classes",
    }[task]
    lines += [
        "",
        "preprocess:",
        f"  task: {task}  # inferred: {task_why}; `mlpipe init --task` chooses",
        f"  positive_class: {flow(positive)}"
        + ("  # inferred: the rarer class; the model reports its probability" if task == "binary" else ""),
        f"  target: {key(target.name)}",
        f"  group: {flow(group)}"
        + ("  # no rows share a group (--group): split row by row" if group is None else "  # --group"),
        f"  ids: {flow(ids)}  # inferred: kept for joins and in the output, never features",
        f"  numeric: {flow(numeric)}",
        f"  categorical: {flow(categorical)}",
    ]
    for column in left_out:
        lines.append(f"  # left out: {column.name} ({column.why})")
    lines += [
        "  cyclical: {}",
        "  derived: {}",
        f"  impute: {flow(prep['impute'])}",
        f"  max_levels: {prep['max_levels']}",
        f"  val_share: {prep['val_share']}",
        f"  test_share: {prep['test_share']}",
        f"  unknown_category: {prep['unknown_category']}",
        "",
        *train_text(table.rows, template["train"]),
        "",
        section("evaluate", template["evaluate"]).rstrip(),
        "",
        "package:",
        f"  name: {name}",
        f"  description: {flow(f'{target.name} ({task}), from {table.shown}')}",
        *gate_text(task, table.rows),
        f"    parity_tolerance: {flow(float(template['package']['gate']['parity_tolerance']))}",
        "",
        "registry:",
        f"  metric: model.{GATES[task][0]}",
        f"  tolerance: {template['registry']['tolerance']}",
        "",
    ]
    return "\n".join(lines)


def pipeline_yaml(name: str, root: Path, data_dep: str | None, task: str) -> str:
    """dvc.yaml for the pipeline: the template's stages, this table's dependency, the task's plots."""
    pipeline = yaml.safe_load((root / TEMPLATE / "dvc.yaml").read_text(encoding="utf-8"))
    deps = pipeline["stages"]["ingest"]["deps"]
    deps[:] = [d for d in deps if d.startswith("../../src/")]
    if data_dep is not None:
        deps.insert(0, data_dep)
    else:  # DVC cannot track a database: read the table on every repro (what follows re-runs only
        # if the snapshot's bytes changed)
        pipeline["stages"]["ingest"]["always_changed"] = True
    artifact = next(iter(pipeline["artifacts"].values()))
    pipeline["artifacts"] = {name: {**artifact, "desc": f"{name} model", "labels": [task]}}
    if task == "regression":
        plots = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["plots"]
        pipeline["plots"] = [p for p in plots if "metrics/monitor/" not in json.dumps(p)]
    text = yaml.safe_dump(pipeline, sort_keys=False, width=100).replace("students.parquet", "table.parquet")
    header = (
        f"# pipelines/{name}: the engine's stages (as pipelines/dropout), written by `mlpipe init`.\n"
        f"# Run from the repository root: dvc repro pipelines/{name}/dvc.yaml\n"
        + (
            ""
            if data_dep
            else "# ingest is always_changed: DVC cannot see a database change, so each repro reads the\n"
            "# table again, and the stages after it re-run only when the snapshot's bytes differ.\n"
        )
    )
    return header + text


def init(
    name: str,
    data: str,
    target: str,
    task: str | None = None,
    group: str | None = None,
    query: str | None = None,
    root: Path = Path("."),
) -> Path:
    """Write ``pipelines/NAME/`` (dvc.yaml and params.yaml) for the table at ``data``.

    Raises:
        PipelineError: for a folder that exists, an unreadable source, an unusable target or group;
            nothing is written then.
    """
    from mlpipe.params import load_params

    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name):
        raise PipelineError(f"{name!r}: a pipeline name is lower-case letters, digits and dashes")
    folder = root / "pipelines" / name
    if folder.exists():
        raise PipelineError(f"{folder}: exists already (choose another name, or remove it)")
    for needed in (root / TEMPLATE / "dvc.yaml", root / TEMPLATE / "params.yaml", root / "dvc.yaml"):
        if not needed.is_file():
            raise PipelineError(f"{needed}: not found (mlpipe init copies the engine's stages from it)")
    from mlpipe import ingest

    is_file = ingest.is_file_source(data)
    if is_file:
        path = (root / data).resolve()  # a relative path is relative to the repository
        if not path.is_file():
            raise PipelineError(f"{data}: file not found")
        if not path.is_relative_to(root.resolve()):
            raise PipelineError(f"{data}: outside the repository (copy it under data/ so DVC can track it)")
        source = os.path.relpath(path, (root / "pipelines" / name).resolve())
    else:
        source = data
    sample = read_sample(os.path.relpath(path) if is_file else data, query)  # errors name it as given
    template = yaml.safe_load((root / TEMPLATE / "params.yaml").read_text(encoding="utf-8"))
    max_levels = template["preprocess"]["max_levels"]
    for role, column in (("--target", target), ("--group", group)):
        if column is not None and column not in sample.columns:
            raise PipelineError(f"{role} {column!r} is not a column ({', '.join(map(str, sample.columns))})")
    task = infer_task(sample[target], task, max_levels)
    columns = []
    for column_name in sample.columns:
        series = sample[column_name]
        if column_name == target:
            rule = infer_column(series, max_levels).rule
            if task != "regression":  # classes: the type only (levels and ranges are the task's)
                rule = {"dtype": rule["dtype"]}
            rule.pop("nullable", None)
            why = (
                f"{series.isna().sum()} rows without it are quarantined"
                if series.isna().any()
                else "the label"
            )
            columns.append(Column(target, rule, "target", why))
        elif column_name == group:
            rule = infer_column(series, max_levels).rule
            rule.pop("allowed", None)
            rule.pop("max", None)  # new rows bring new groups
            columns.append(Column(group, rule, "group", "--group: no group is in two splits"))
        else:
            columns.append(infer_column(series, max_levels))
    counts = sample[target].value_counts().sort_values(ascending=False, kind="stable")
    classes = [c.item() if hasattr(c, "item") else c for c in counts.index] if task != "regression" else []
    table = Table(source, query, data if is_file else f"{data} (--query)", len(sample), classes)
    params = params_text(name, table, task, columns, template)
    dvc_yaml = pipeline_yaml(name, root, source if is_file else None, task)
    with io.atomic_path(folder, directory=True) as tmp:
        (tmp / "params.yaml").write_text(params, encoding="utf-8")
        (tmp / "dvc.yaml").write_text(dvc_yaml, encoding="utf-8")
        try:  # what was inferred must load, or nothing is written
            load_params(tmp / "params.yaml")
        except PipelineError as exc:
            raise PipelineError(
                f"{folder}/params.yaml as inferred does not load (please report): {exc}"
            ) from None
    return folder
