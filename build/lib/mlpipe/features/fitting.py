"""Fitting the preprocessor on the training split, in streaming passes over bounded batches.

Memory is flat in the number of rows: the statistics are exact and built batch by batch (counts,
level sets, and means and variances merged with Chan's pairwise formula), except a median, which
reads its one column whole (8 bytes a row: 80 MB at ten million rows). With one batch, every
statistic is bit for bit what numpy computes on the whole column.

The source is a :class:`~mlpipe.features.batches.Table`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.core.errors import PipelineError
from mlpipe.core.params import PreprocessParams
from mlpipe.features import formulas, plan
from mlpipe.features.batches import FrameTable, Table
from mlpipe.features.preprocessor import Preprocessor, numbers, numeric_sources, texts


@dataclass
class Moments:
    """Count, mean and variance merged batch by batch (Chan et al.); one batch equals numpy's."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    var: float = 0.0

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        n_b, mean_b, var_b = len(values), float(np.mean(values)), float(np.var(values))
        if self.n == 0:
            self.n, self.mean, self.var, self.m2 = n_b, mean_b, var_b, var_b * n_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += var_b * n_b + delta * delta * self.n * n_b / n
        self.n = n
        self.var = self.m2 / n

    @property
    def std(self) -> float:
        return math.sqrt(self.var)


@dataclass
class _Bad:
    """Missing or non-finite values of one column or feature: how many, and the first row."""

    count: int = 0
    first: int = -1

    def add(self, rows: np.ndarray, offset: int) -> None:
        if len(rows):
            if self.count == 0:
                self.first = offset + int(rows[0])
            self.count += len(rows)


@dataclass
class _Scan:
    moments: dict[str, Moments] = field(default_factory=dict)
    bad: dict[str, _Bad] = field(default_factory=dict)
    levels: dict[str, set[str]] = field(default_factory=dict)


def check_roles(columns: list[str], params: PreprocessParams) -> None:
    """Check that every column a role names exists in the table and derived formulas are valid.

    Raises:
        PipelineError: naming the params key and the missing column.
    """
    present = set(columns)
    roles = {
        "target": [params.target],
        "group": [params.group] if params.group is not None else [],
        "ids": params.ids,
        "numeric": params.numeric,
        "categorical": params.categorical,
        "cyclical": list(params.cyclical),
    }
    for role, names in roles.items():
        for name in names:
            if name not in present:
                raise PipelineError(
                    f"preprocess.{role}: column {name!r} is not in the data (columns: {', '.join(columns)})"
                )
    for name, text in params.derived.items():
        if name in present:
            raise PipelineError(f"preprocess.derived.{name}: a column of that name already exists")
        if not formulas.columns(name, text):
            raise PipelineError(
                f"preprocess.derived.{name}: {text!r} reads no column (a constant is no feature)"
            )
        for column in formulas.columns(name, text):
            if column not in present:
                raise PipelineError(f"preprocess.derived.{name}: column {column!r} is not in the data")


def fill_values(
    table: Table, params: PreprocessParams, nullable: Collection[str] | None = None
) -> dict[str, Any]:
    """What each raw input column's missing entries become, from the training split.

    Numeric columns (and those derived formulas read) take the median or mean; categorical and
    cyclical columns the most frequent level (ties: the first in sorted order). A strategy of
    ``none`` fills nothing, and neither does a column outside ``nullable`` (the data contract's
    nullable columns; None: every column): its missing values are refused, in training and at
    serving alike.
    """
    fill: dict[str, Any] = {}
    may_be_null = (lambda name: True) if nullable is None else set(nullable).__contains__
    if params.impute.numeric != "none":
        for name in filter(may_be_null, numeric_sources(params.numeric, params.derived)):
            if params.impute.numeric == "median":  # exact: the one column, whole
                values = pd.to_numeric(table.column(name), errors="coerce").dropna()
                if len(values):
                    fill[name] = float(values.median())
            else:
                moments = Moments()
                for batch in table.batches([name]):
                    moments.add(pd.to_numeric(batch[name], errors="coerce").dropna().to_numpy(np.float64))
                if moments.n:
                    fill[name] = moments.mean
    if params.impute.categorical != "none":
        names = [n for n in [*params.categorical, *params.cyclical] if may_be_null(n)]
        counts: dict[str, Counter[str]] = {name: Counter() for name in names}
        for batch in table.batches(names) if names else ():
            for name in names:
                values = pd.Series(texts(batch, name))
                counts[name].update(values[values != plan.MISSING_TEXT].value_counts(sort=False).to_dict())
        for name, count in counts.items():
            if count:
                fill[name] = min(count, key=lambda level: (-count[level], level))
    return fill


def classes_of(table: Table, params: PreprocessParams) -> list[Any] | None:
    """The target's classes for classification (binary: negative first, positive last), else None.

    Raises:
        PipelineError: for a target with missing values, one class, or a class count the task
            does not allow, before any training starts.
    """
    if params.task == "regression":
        return None
    seen: set[Any] = set()
    for batch in table.batches([params.target]):
        labels = batch[params.target]
        if labels.isna().any():
            raise PipelineError(f"target {params.target!r} has missing values in the training split")
        seen.update(labels.unique().tolist())
    classes = sorted(seen, key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        raise PipelineError(f"target {params.target!r} has one class ({classes[0]!r}) in the training split")
    if params.task == "binary" and len(classes) != 2:
        raise PipelineError(f"task binary needs 2 classes in {params.target!r}, found {len(classes)}")
    if params.task == "binary" and params.positive_class is not None:
        if params.positive_class not in classes:
            raise PipelineError(
                f"preprocess.positive_class {params.positive_class!r} is not a class of the target"
            )
        classes = [c for c in classes if c != params.positive_class] + [params.positive_class]
    return classes


def _scan_batch(
    scan: _Scan, batch: pd.DataFrame, offset: int, params: PreprocessParams, fill: dict[str, Any]
) -> None:
    """Add one batch: the filled numeric and derived values' moments, the text levels, what is bad."""
    sources = {}
    for name in numeric_sources(params.numeric, params.derived):
        values = numbers(batch, name)
        sources[name] = np.where(np.isnan(values), fill[name], values) if name in fill else values
    values = {name: sources[name] for name in params.numeric}
    for name, text in params.derived.items():
        values[name] = formulas.evaluate(name, text, sources) if len(batch) else np.empty(0)
    for name, array in values.items():
        finite = np.isfinite(array)
        scan.bad.setdefault(name, _Bad()).add(np.flatnonzero(~finite), offset)
        scan.moments.setdefault(name, Moments()).add(array[finite])
    for name in [*params.categorical, *params.cyclical]:
        array = texts(batch, name)
        array = np.where(array == plan.MISSING_TEXT, fill.get(name, plan.MISSING_TEXT), array)
        scan.bad.setdefault(name, _Bad()).add(np.flatnonzero(array == plan.MISSING_TEXT), offset)
        scan.levels.setdefault(name, set()).update(array[array != plan.MISSING_TEXT].tolist())


def _check_scan(scan: _Scan, params: PreprocessParams) -> None:
    """Refuse what the scan found missing or non-finite, naming the column and its first row."""
    for name, bad in scan.bad.items():
        if not bad.count:
            continue
        if name in params.derived:
            subject, what = f"derived feature {name!r} = {params.derived[name]}", "missing or non-finite"
        elif name in params.categorical or name in params.cyclical:
            subject, what = f"column {name!r}", "missing"
        else:
            subject, what = f"column {name!r}", "missing or non-finite"
        raise PipelineError(
            f"{subject} has {bad.count} {what} values in the training split (first at row {bad.first})"
        )


def fit(
    source: pd.DataFrame | Table, params: PreprocessParams, nullable: Collection[str] | None = None
) -> Preprocessor:
    """Learn fill values, scaling statistics, category levels and classes from the training split.

    Args:
        source: The training split: a frame, or a :class:`Table` streamed in batches.
        params: Column roles, formulas, imputation and policies.
        nullable: The columns the data contract lets be null (None: every column); only those get
            a fill value.

    Raises:
        PipelineError: if a declared column is missing, non-numeric where numeric is needed, empty,
            a categorical has more than ``max_levels`` levels, or the target does not fit the task.
    """
    table = FrameTable(source) if isinstance(source, pd.DataFrame) else source
    check_roles(table.columns, params)
    if table.rows == 0:
        raise PipelineError("the training split is empty")
    classes = classes_of(table, params)
    fill = fill_values(table, params, nullable)
    scan = _Scan()
    read = [*numeric_sources(params.numeric, params.derived), *params.categorical, *params.cyclical]
    offset = 0
    for batch in table.batches(read):
        _scan_batch(scan, batch, offset, params, fill)
        offset += len(batch)
    _check_scan(scan, params)
    names = [*params.numeric, *params.derived]
    categories = {}
    for name in params.categorical:
        levels = sorted(scan.levels[name])
        if not levels:
            raise PipelineError(f"categorical column {name!r} has no values in the training split")
        if len(levels) > params.max_levels:
            raise PipelineError(
                f"preprocess.categorical: column {name!r} has {len(levels)} levels in the training split"
                f" (max_levels {params.max_levels}); an id belongs in preprocess.ids"
            )
        categories[name] = levels
    cyclical = {}
    for name, spec in params.cyclical.items():
        unknown = sorted(scan.levels[name] - set(spec.values))
        if unknown:
            raise PipelineError(f"preprocess.cyclical.{name}.values has no position for {unknown[0]!r}")
        cyclical[name] = {"period": spec.period, "values": dict(spec.values)}
    return Preprocessor(
        target=params.target,
        numeric=list(params.numeric),
        derived=dict(params.derived),
        mean={name: scan.moments[name].mean for name in names},
        scale={name: scan.moments[name].std or 1.0 for name in names},
        cyclical=cyclical,
        categories=categories,
        unknown_category=params.unknown_category,
        task=params.task,
        classes=classes,
        fill=fill,
    )
