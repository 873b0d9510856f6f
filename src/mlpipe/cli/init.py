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

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from mlpipe.cli.options import command
from mlpipe.core import files
from mlpipe.core.errors import PipelineError

if TYPE_CHECKING:  # ruamel.yaml and the inference load with `mlpipe init` only, not with serve
    from mlpipe.cli import inference


def checked_source(name: str, data: str, root: Path) -> tuple[str, str]:
    """``ingest.url`` for the new pipeline (a file relative to its folder), and the table as
    ``read_sample`` opens it, after checking the name, the folder and the template.

    Raises:
        PipelineError: for a bad name, a folder that exists, a missing template or file, or a file
            outside the repository.
    """
    from mlpipe.cli import writing
    from mlpipe.sources import reading as sources

    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name):
        raise PipelineError(f"{name!r}: a pipeline name is lower-case letters, digits and dashes")
    folder = root / "pipelines" / name
    if folder.exists():
        raise PipelineError(f"{folder}: exists already (choose another name, or remove it)")
    for needed in (
        root / writing.TEMPLATE / "dvc.yaml",
        root / writing.TEMPLATE / "params.yaml",
        root / "dvc.yaml",
    ):
        if not needed.is_file():
            raise PipelineError(f"{needed}: not found (mlpipe init copies the engine's stages from it)")
    if not sources.is_file_source(data):
        return data, data
    path = (root / data).resolve()  # a relative path is relative to the repository
    if not path.is_file():
        raise PipelineError(f"{data}: file not found")
    if not path.is_relative_to(root.resolve()):
        raise PipelineError(f"{data}: outside the repository (copy it under data/ so DVC can track it)")
    return os.path.relpath(path, folder.resolve()), os.path.relpath(path)


def column_roles(
    sample: pd.DataFrame, target: str, group: str | None, task: str, max_levels: int
) -> list[inference.Column]:
    """Each column's contract and role: the target's and the group's set by the user, the rest inferred."""
    from mlpipe.cli import inference

    columns = []
    for column_name in sample.columns:
        series = sample[column_name]
        if column_name == target:
            rule = inference.infer_column(series, max_levels).rule
            if task != "regression":  # classes: the type only (levels and ranges are the task's)
                rule = {"dtype": rule["dtype"]}
            rule.pop("nullable", None)
            missing = series.isna().sum()
            why = f"{missing} rows without it are quarantined" if missing else "the label"
            columns.append(inference.Column(target, rule, "target", why))
        elif column_name == group:
            rule = inference.infer_column(series, max_levels).rule
            rule.pop("allowed", None)
            rule.pop("max", None)  # new rows bring new groups
            columns.append(inference.Column(group, rule, "group", "--group: no group is in two splits"))
        else:
            columns.append(inference.infer_column(series, max_levels))
    return columns


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
    from mlpipe.cli import inference, writing
    from mlpipe.core.params import load_params
    from mlpipe.sources import reading as sources

    folder = root / "pipelines" / name
    source, shown = checked_source(name, data, root)
    sample = inference.read_sample(shown, query)  # errors name the table as given
    template = yaml.safe_load((root / writing.TEMPLATE / "params.yaml").read_text(encoding="utf-8"))
    max_levels = template["preprocess"]["max_levels"]
    for role, column in (("--target", target), ("--group", group)):
        if column is not None and column not in sample.columns:
            raise PipelineError(f"{role} {column!r} is not a column ({', '.join(map(str, sample.columns))})")
    task = inference.infer_task(sample[target], task, max_levels)
    columns = column_roles(sample, target, group, task, max_levels)
    counts = sample[target].value_counts().sort_values(ascending=False, kind="stable")
    classes = [c.item() if hasattr(c, "item") else c for c in counts.index] if task != "regression" else []
    is_file = sources.is_file_source(data)
    table = writing.Table(source, query, data if is_file else f"{data} (--query)", len(sample), classes)
    params = writing.params_yaml(name, table, task, columns, template)
    dvc_yaml = writing.pipeline_yaml(name, root, source if is_file else None, task)
    with files.atomic_path(folder, directory=True) as tmp:
        (tmp / "params.yaml").write_text(params, encoding="utf-8")
        (tmp / "dvc.yaml").write_text(dvc_yaml, encoding="utf-8")
        try:  # what was inferred must load, or nothing is written
            load_params(tmp / "params.yaml")
        except PipelineError as exc:
            raise PipelineError(
                f"{folder}/params.yaml as inferred does not load (please report): {exc}"
            ) from None
    return folder


def run(args: argparse.Namespace) -> None:
    if args.activity:
        from mlpipe.cli.history_init import init_history

        given = {"key": args.key, "timestamp": args.timestamp, "start": args.start, "outcome": args.target}
        folder = init_history(args.name, args.data, args.activity, Path(args.repo), given)
    elif args.target is None:
        raise PipelineError("--target is needed: the column to predict")
    else:
        folder = init(args.name, args.data, args.target, args.task, args.group, args.query, Path(args.repo))
    print(
        f"mlpipe: wrote {folder}/params.yaml and dvc.yaml: review the lines marked `inferred`, then"
        f" run `dvc repro {folder}/dvc.yaml`",
        file=sys.stderr,
    )


def add(commands: Any) -> None:
    """``mlpipe init``: a pipeline folder for a team's table."""
    init = command(
        commands,
        "init",
        "write pipelines/NAME/ (dvc.yaml, params.yaml) for a table, inferred from its data",
        "Reads a CSV or Parquet file (or a SQLAlchemy URL with --query) as ingest will, infers the data"
        " contract (types, nulls, ranges with a 10% margin, levels), the column roles and the task, and"
        " writes the engine's stages with the plots and gate for that task; every inferred choice is"
        " commented for review. Nothing is written on an error.",
    )
    init.add_argument("name", help="the pipeline's (and model's) name: lower-case letters, digits, dashes")
    init.add_argument(
        "--data",
        required=True,
        help="a CSV or Parquet file in the repository (relative to --repo), or a database URL",
    )
    init.add_argument("--query", help="with a database URL: the SQL that returns the table")
    init.add_argument(
        "--target", help="the column to predict (with --activity: the dropout date; default: inferred)"
    )
    init.add_argument(
        "--task",
        choices=["regression", "binary", "multiclass"],
        help="default: binary for two classes, regression for numbers, multiclass for text",
    )
    init.add_argument("--group", help="rows sharing its value stay in one split (default: none, row by row)")
    init.add_argument("--repo", default=".", help="the project's repository (default: %(default)s)")
    history = init.add_argument_group(
        "early warning", "with --activity, --data is the student table and the pipeline learns from histories"
    )
    history.add_argument("--activity", help="the activity table: rows with a student key and a timestamp")
    history.add_argument("--key", help="the column joining the two tables (default: inferred)")
    history.add_argument("--timestamp", help="the activity's date or time column (default: inferred)")
    history.add_argument("--start", help="the student table's term-start date column (default: inferred)")
    init.set_defaults(run=run)
