"""``mlpipe init NAME --data STUDENTS --activity ACTIVITY``: an early-warning pipeline for a team's two
tables (one row per student; activity rows with a timestamp), inferred from them, for review.

It writes ``pipelines/NAME/``:

- ``dvc.yaml``: the early-warning pipeline's stages without the demo's ``simulate``; preprocess
  reads the two files, and evaluate has no oracle to compare with;
- ``params.yaml``: the template's network, baselines and package settings, and a ``history``
  section from the tables, each inferred choice with a comment saying why:
  - the key (the column both tables share, unique in the student table), the activity's timestamp
    (its one date or time column), the term's start and the dropout date (the student table's date
    columns: the one without nulls is the start, the one with nulls the outcome), unless given
    with ``--key``, ``--timestamp``, ``--start`` and ``--target``;
  - the static columns (the student table's numeric columns without nulls) and the channels (the
    activity's numeric columns: ``sum`` for counts and amounts, ``mean`` for a column with nulls,
    such as a score);
  - the cutoffs: weeks 2, 4, 6 and 8 that fall inside the term the activity spans.

Nothing is written on an error: a folder that exists, a file missing or outside the repository, a
column that cannot be found or is ambiguous (named, with the flag that settles it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import yaml

from mlpipe.core import files
from mlpipe.core.errors import PipelineError

TEMPLATE = Path("pipelines") / "early_warning"
CUTOFFS = (2, 4, 6, 8)


def dates(frame: pd.DataFrame) -> list[str]:
    """The columns that hold dates or times (typed so, or text that parses as ISO dates)."""
    found = []
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_datetime64_any_dtype(series):
            found.append(name)
        elif series.dtype == object and series.notna().any():
            sample = series.dropna().astype(str).head(50)
            if sample.str.fullmatch(r"\d{4}-\d{2}-\d{2}([ T].*)?").all():
                found.append(name)
    return found


def only(candidates: list[str], what: str, flag: str) -> str:
    if len(candidates) != 1:
        found = ", ".join(candidates) or "none"
        raise PipelineError(f"cannot tell the {what} (candidates: {found}): name it with {flag}")
    return candidates[0]


def infer_columns(students: pd.DataFrame, activity: pd.DataFrame, given: dict[str, str | None]) -> dict:
    """The key, timestamp, start and outcome columns, each given or inferred (see the module)."""
    key = given["key"] or only(
        [c for c in students.columns if c in activity.columns and students[c].is_unique], "key", "--key"
    )
    timestamp = given["timestamp"] or only(
        [c for c in dates(activity) if c != key], "timestamp", "--timestamp"
    )
    student_dates = [c for c in dates(students) if c != key]
    outcome = given["outcome"] or only(
        [c for c in student_dates if students[c].isna().any()], "dropout date (it has nulls)", "--target"
    )
    start = given["start"] or only(
        [c for c in student_dates if c != outcome and students[c].notna().all()],
        "term's start (a date every student has)",
        "--start",
    )
    for table, frame, names in (
        ("student", students, (key, start, outcome)),
        ("activity", activity, (key, timestamp)),
    ):
        for name in names:
            if name not in frame.columns:
                raise PipelineError(f"the {table} table has no column {name!r} ({', '.join(frame.columns)})")
    return {"key": key, "timestamp": timestamp, "start": start, "outcome": outcome}


def numeric(frame: pd.DataFrame, skip: set[str]) -> list[str]:
    return [
        c
        for c in frame.columns
        if c not in skip
        and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]


def history_section(students: pd.DataFrame, activity: pd.DataFrame, columns: dict) -> tuple[dict, dict]:
    """The ``history`` section's values, and a comment for each inferred one."""
    used = set(columns.values())
    static = [c for c in numeric(students, used) if students[c].notna().all()]
    channels = {c: "mean" if activity[c].isna().any() else "sum" for c in numeric(activity, used)}
    if not static or not channels:
        raise PipelineError(
            "no numeric "
            + ("static column in the student table" if not static else "channel in the activity")
        )
    start = pd.to_datetime(students.set_index(columns["key"])[columns["start"]])
    days = (pd.to_datetime(activity[columns["timestamp"]]) - activity[columns["key"]].map(start)).dt.days
    term = int(days.max() // 7 + 1) if days.notna().any() else 0
    cutoffs = [k for k in CUTOFFS if k < term] or [1]
    left = sorted(set(students.columns) - used - set(static))
    why = {
        "key": "in both tables, unique per student",
        "timestamp": "the activity table's date/time column",
        "start": "week 0 begins on this date",
        "outcome": "the date column with nulls: null is still enrolled or completed (the label)",
        "static": "numeric, no nulls" + (f"; left out: {', '.join(left)}" if left else ""),
        "channels": "sum for counts and amounts; mean where a column has nulls (a score)",
        "weeks": "the last cutoff's history: the model reads no longer one",
        "cutoffs": f"weeks {', '.join(map(str, CUTOFFS))} inside the {term}-week term the activity spans",
    }
    values = {
        **columns,
        "static": static,
        "channels": channels,
        "weeks": max(cutoffs),
        "cutoffs": cutoffs,
    }
    return values, why


def repo_file(path: str, root: Path) -> Path:
    found = (root / path).resolve()
    if not found.is_file():
        raise PipelineError(f"{path}: file not found")
    if not found.is_relative_to(root.resolve()):
        raise PipelineError(f"{path}: outside the repository (copy it under data/ so DVC can track it)")
    return found


def pipeline_text(root: Path, folder: Path, students: Path, activity: Path, name: str) -> str:
    """The template's dvc.yaml without ``simulate`` and the oracle, reading the team's files."""
    text = (root / TEMPLATE / "dvc.yaml").read_text(encoding="utf-8")
    text = re.sub(r"\n  simulate:.*?\n(?=  preprocess:)", "\n", text, flags=re.S)
    text = text.replace("\n      --oracle data/source/oracle.parquet", "")
    text = text.replace("\n      - data/source/oracle.parquet", "")
    for demo, own in (("students", students), ("activity", activity)):
        text = text.replace(f"data/source/{demo}.parquet", os.path.relpath(own, folder.resolve()))
    text = text.replace("\n  early-warning:\n", f"\n  {name}:\n")
    text = re.sub(r", oracle, latent_oracle\]", "]", text)
    return re.sub(r"\A(#.*\n)+", f"# {name}: early warning on this team's two tables (mlpipe init).\n", text)


def init_history(
    name: str, students_path: str, activity_path: str, root: Path, given: dict[str, str | None]
) -> Path:
    """Write ``pipelines/NAME/`` for the two tables (module docstring).

    Raises:
        PipelineError: see the module docstring; nothing is written then.
    """
    from mlpipe.cli import writing
    from mlpipe.core.params import load_early_warning_params

    folder = root / "pipelines" / name
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name):
        raise PipelineError(f"{name!r}: a pipeline name is lower-case letters, digits and dashes")
    if folder.exists():
        raise PipelineError(f"{folder}: exists already (choose another name, or remove it)")
    paths = [repo_file(p, root) for p in (students_path, activity_path)]
    from mlpipe.features.point_in_time import read_table

    students, activity = (read_table(p) for p in paths)
    values, why = history_section(students, activity, infer_columns(students, activity, given))
    document = writing.yaml_writer().load((root / TEMPLATE / "params.yaml").read_text(encoding="utf-8"))
    del document["simulate"]
    document.yaml_set_start_comment(
        f"{name}: early warning from this team's two tables, written by `mlpipe init` (review the lines\n"
        f"marked `inferred`). Run it with `dvc repro pipelines/{name}/dvc.yaml` from the repository root."
    )
    section = document["history"]
    for key, value in values.items():
        section[key] = writing.flow(value) if key in ("static", "cutoffs") else value
        if key in why:
            section.yaml_add_eol_comment(f"inferred: {why[key]}", key)
    document["package"]["name"] = name
    with files.atomic_path(folder, directory=True) as tmp:
        text = re.sub(r"(?<=\S) # inferred", "  # inferred", writing.dumps(document))
        (tmp / "params.yaml").write_text(text, encoding="utf-8")
        (tmp / "dvc.yaml").write_text(pipeline_text(root, folder, *paths, name), encoding="utf-8")
        try:
            load_early_warning_params(str(tmp / "params.yaml"))
            yaml.safe_load((tmp / "dvc.yaml").read_text(encoding="utf-8"))
        except (PipelineError, yaml.YAMLError) as exc:
            raise PipelineError(f"{folder} as inferred does not load (please report): {exc}") from None
    return folder
