"""The files ``mlpipe init`` writes, built as YAML documents that carry their comments
(ruamel.yaml): ``params.yaml`` (the template's engine settings and what the data says, each
inferred choice commented) and ``dvc.yaml`` (the template's stages, its comments kept)."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from mlpipe.cli.inference import EPOCHS, Column, sized
from mlpipe.core.errors import PipelineError

TEMPLATE = Path("pipelines") / "dropout"  # the engine's settings and generic stages, copied


GATES = {  # the task's metric and naive baseline; the gate's margins are relative improvements over each
    "regression": ("rmse", "mean"),
    "binary": ("log_loss", "majority"),
    "multiclass": ("log_loss", "majority"),
}


@dataclass
class Table:
    """What :func:`init` read: where from, how it is shown, and what it holds."""

    source: str  # ingest.url, relative to the pipeline folder for a file
    query: str | None
    shown: str  # as the user named it
    rows: int  # in the sample
    classes: list[Any]  # the target's classes, most frequent first (empty for regression)


def yaml_writer() -> YAML:
    """Round-trip YAML that PyYAML (``load_params``) reads back as written: floats spelled as
    PyYAML spells them (``1.0e-05``; a bare ``1e-05`` would be text to it) and ``null`` shown."""
    writer = YAML()
    writer.width = 4096
    writer.indent(mapping=2, sequence=4, offset=2)
    writer.representer.add_representer(
        float,
        lambda r, v: r.represent_scalar(
            "tag:yaml.org,2002:float", yaml.safe_dump(v).removesuffix("\n...\n").strip()
        ),
    )
    writer.representer.add_representer(
        type(None), lambda r, v: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    writer.representer.add_representer(str, text)
    return writer


def text(representer: Any, value: str) -> Any:
    """A string plain where PyYAML reads it back as the same string, else quoted (``"yes"``,
    ``"1.0"``, ``"null"`` would come back as a bool, a float, None)."""
    try:
        same = yaml.safe_load(value) == value
    except yaml.YAMLError:
        same = False
    return representer.represent_scalar("tag:yaml.org,2002:str", value, style=None if same else '"')


def dumps(document: Any) -> str:
    out = io.StringIO()
    yaml_writer().dump(document, out)
    # ruamel puts one space before a comment that follows a flow mapping or list; PEP 8's two, as
    # after every other value
    return re.sub(r"(?<=[}\]]) # ", "  # ", out.getvalue())


def flow(value: Any) -> Any:
    """A list or mapping shown on one line (flow style); a scalar as it is."""
    if isinstance(value, dict):
        value = CommentedMap(value)
    elif isinstance(value, list | tuple):
        value = CommentedSeq(value)
    else:
        return value
    value.fa.set_flow_style()
    return value


def mapping(*entries: tuple[str, Any] | tuple[str, Any, str | None]) -> CommentedMap:
    """A mapping from ``(key, value)`` or ``(key, value, why)`` entries; ``why`` is the line's comment."""
    out = CommentedMap()
    for key, value, *why in entries:
        out[key] = value
        if why and why[0]:
            out.yaml_add_eol_comment(why[0], key)
    return out


def notes_before(document: CommentedMap, lines: list[str], indent: int) -> None:
    """Comment lines above the mapping's first key (e.g. the columns left out, and why)."""
    if lines and document:
        document.yaml_set_comment_before_after_key(
            next(iter(document)), before="\n".join(lines), indent=indent
        )


def train_section(rows: int, template: dict[str, Any]) -> CommentedMap:
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
    return mapping(*((name, flow(value), why.get(name)) for name, value in values.items()))


def gate_section(task: str, rows: int, parity_tolerance: float) -> tuple[CommentedMap, str]:
    """The package gate for the task, its margin against the linear baseline sized to the table,
    and the comment that says why."""
    metric, naive = GATES[task]
    margin = sized(rows).linear_margin
    why = f"at most {-margin:.0%} worse than the linear one" + (
        ": a test split this small moves the metric by more than 5% for one row (the card"
        " names any baseline that beats the model)"
        if margin < -0.05
        else ""
    )
    gate = mapping(
        ("metric", metric),
        ("min_improvement", flow({naive: 0.1, "linear": margin})),
        ("max", flow({})),
        ("min", flow({})),
        ("parity_tolerance", float(parity_tolerance)),
    )
    return gate, f"suited to {task} and {rows} rows: beat the naive baseline by 10%, {why}"


def validate_section(table: Table, columns: list[Column]) -> CommentedMap:
    """The data contract: a rule per column kept, a note per column left out."""
    rules = mapping(
        *(
            (column.name, flow(column.rule), f"inferred: {column.role}; {column.why}")
            for column in columns
            if column.role != "left out"
        )
    )
    notes_before(rules, [f"{c.name}: left out ({c.why})" for c in columns if c.role == "left out"], 4)
    return mapping(
        ("max_invalid_share", 0.05, "rows breaking the contract are quarantined, up to this share"),
        ("columns", rules, f"inferred from {table.rows} rows: review the ranges and levels"),
    )


def preprocess_section(table: Table, task: str, columns: list[Column], template: dict) -> CommentedMap:
    """Roles, the task and the split: what the data says, with the template's other settings."""
    target = next(c for c in columns if c.role == "target")
    group = next((c.name for c in columns if c.role == "group"), None)
    numeric = [c.name for c in columns if c.role == "numeric"]
    categorical = [c.name for c in columns if c.role == "categorical"]
    if not (numeric or categorical):
        raise PipelineError("no column can be a feature (every column is an id, a date or free text)")
    task_why = {
        "regression": "the target holds numbers",
        "binary": f"the target has two classes, {json.dumps(table.classes)}",
        "multiclass": f"the target has {len(table.classes)} classes",
    }[task]
    binary = task == "binary"
    section = mapping(
        ("task", task, f"inferred: {task_why}; `mlpipe init --task` chooses"),
        (
            "positive_class",
            table.classes[-1] if binary else None,
            "inferred: the rarer class" if binary else None,
        ),
        ("target", target.name),
        ("group", group, "no rows share a group (--group): split row by row" if group is None else "--group"),
        (
            "ids",
            flow([c.name for c in columns if c.role in ("id", "group")]),
            "inferred: kept for joins and in the output, never features",
        ),
        ("numeric", flow(numeric)),
        ("categorical", flow(categorical)),
        ("cyclical", flow({})),
        ("derived", flow({})),
        *((name, flow(template[name])) for name in ("impute", "max_levels", "val_share", "test_share")),
        ("unknown_category", template["unknown_category"]),
    )
    left_out = [f"left out: {c.name} ({c.why})" for c in columns if c.role == "left out"]
    if left_out:
        section.yaml_set_comment_before_after_key("cyclical", before="\n".join(left_out), indent=2)
    return section


def params_yaml(name: str, table: Table, task: str, columns: list[Column], template: dict) -> str:
    """params.yaml for the pipeline: the template's engine settings and what the data says."""
    target = next(c for c in columns if c.role == "target")
    gate, gate_why = gate_section(task, table.rows, template["package"]["gate"]["parity_tolerance"])
    document = mapping(
        ("base", CommentedMap(template["base"])),
        (
            "ingest",
            mapping(
                ("url", table.source),
                ("query", table.query),
                (
                    "key",
                    None,
                    "a column that grows with new rows (an id or a date) lets `mlpipe retrain` count them",
                ),
            ),
        ),
        ("validate", validate_section(table, columns)),
        ("preprocess", preprocess_section(table, task, columns, template["preprocess"])),
        ("train", train_section(table.rows, template["train"])),
        ("evaluate", CommentedMap(template["evaluate"])),
        (
            "package",
            mapping(
                ("name", name),
                ("description", f"{target.name} ({task}), from {table.shown}"),
                ("gate", gate, gate_why),
            ),
        ),
        (
            "registry",
            mapping(("metric", f"model.{GATES[task][0]}"), ("tolerance", template["registry"]["tolerance"])),
        ),
    )
    document.yaml_set_start_comment(
        f"pipelines/{name}: written by `mlpipe init` from {table.shown}. Review each line marked\n"
        f"`inferred`, then run from the repository root: dvc repro pipelines/{name}/dvc.yaml"
    )
    for key in list(document)[1:]:
        document.yaml_set_comment_before_after_key(key, before="\n")
    return dumps(document)


def pipeline_yaml(name: str, root: Path, data_dep: str | None, task: str) -> str:
    """dvc.yaml for the pipeline: the template's stages (its comments kept), this table's
    dependency, the task's plots."""
    pipeline = yaml_writer().load((root / TEMPLATE / "dvc.yaml").read_text(encoding="utf-8"))
    ingest = pipeline["stages"]["ingest"]
    ingest["deps"] = CommentedSeq(
        ([data_dep] if data_dep is not None else [])
        + [d for d in ingest["deps"] if d.startswith("../../src/")]
    )
    if data_dep is None:
        ingest["always_changed"] = True
        ingest.yaml_add_eol_comment(
            "DVC cannot see a database change: each repro reads the table again, and the stages"
            " after it re-run only when the snapshot's bytes differ",
            "always_changed",
        )
    artifact = next(iter(pipeline["artifacts"].values()))
    artifact.update({"desc": f"{name} model", "labels": flow([task])})
    pipeline["artifacts"] = CommentedMap({name: artifact})
    if task == "regression":
        plots = yaml_writer().load((root / "dvc.yaml").read_text(encoding="utf-8"))["plots"]
        pipeline["plots"] = CommentedSeq(p for p in plots if "metrics/monitor/" not in json.dumps(p))
    pipeline.yaml_set_start_comment(
        f"pipelines/{name}: the engine's stages (as {TEMPLATE.as_posix()}), written by `mlpipe init`.\n"
        f"Run from the repository root: dvc repro pipelines/{name}/dvc.yaml"
    )
    return dumps(pipeline).replace("students.parquet", "table.parquet")
