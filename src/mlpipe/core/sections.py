"""The sections of ``params.yaml`` that the stages read, one per stage in stage order.

Each is a frozen pydantic model that forbids unknown keys and has no silent defaults for what
changes results, so a typo such as ``dvc exp run -S train.learning_rat=0.1`` (which DVC itself
accepts, treeverse/dvc#5477) stops the stage at start-up with the key's full name.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlpipe.core.errors import PipelineError

Fraction = Annotated[float, Field(gt=0, lt=1)]  # strictly between 0 and 1


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseParams(Section):
    """Settings shared by every stage."""

    seed: int


class SimulateParams(Section):
    """Size and noise of the built-in demo data."""

    n_students: int
    n_topics: int
    n_sessions: int
    noise_sd: float
    start_date: str
    days: int
    dropout_label_noise: float
    later_terms: Annotated[int, Field(ge=0)] = 0
    term_sessions: Annotated[int, Field(ge=1)] = 2000

    @model_validator(mode="after")
    def _positive(self) -> SimulateParams:
        for name in ("n_students", "n_topics", "n_sessions", "days"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.noise_sd >= 0:
            raise ValueError("noise_sd must be >= 0")
        if not 0 <= self.dropout_label_noise < 0.5:
            raise ValueError("dropout_label_noise must be in [0, 0.5)")
        return self


class IngestParams(Section):
    """Where the raw table comes from: a SQLAlchemy URL (no password) and a query, or a file path."""

    url: str
    query: str | None
    key: str | None = None  # a column that grows with new rows (id or date): the snapshot's extent


class ColumnRule(Section):
    """The data contract of one column of the raw table."""

    dtype: Literal["int", "float", "str", "date"]
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ColumnRule:
        if self.allowed is not None and self.dtype != "str":
            raise ValueError("allowed applies only to dtype str")
        if (self.min is not None or self.max is not None) and self.dtype not in ("int", "float"):
            raise ValueError("min/max apply only to dtype int or float")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class ValidateParams(Section):
    """The schema the raw snapshot must meet, and how many bad rows are tolerated."""

    max_invalid_share: float
    columns: dict[str, ColumnRule]

    @field_validator("max_invalid_share")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError("must be in [0, 1)")
        return value

    @field_validator("columns")
    @classmethod
    def _some_columns(cls, value: dict[str, ColumnRule]) -> dict[str, ColumnRule]:
        if not value:
            raise ValueError("declare at least one column")
        return value


class CyclicalFeature(Section):
    """A categorical that lives on a circle (hour of day): each level maps to a position."""

    period: float
    values: dict[str, float]


class ImputeParams(Section):
    """How missing values are filled, with statistics of the training split (``none``: refused)."""

    numeric: Literal["none", "mean", "median"]
    categorical: Literal["none", "most_frequent"]


class PreprocessParams(Section):
    """The task, column roles, derived features, imputation, the split, and the unknown-category policy."""

    task: Literal["regression", "binary", "multiclass"]
    positive_class: str | int | bool | None
    target: str
    group: str | None = None  # None: a table of independent rows, split row by row
    ids: list[str]
    numeric: list[str]
    categorical: list[str]
    cyclical: dict[str, CyclicalFeature]
    derived: dict[str, str]
    impute: ImputeParams
    max_levels: int
    val_share: float
    test_share: float
    unknown_category: Literal["ignore", "error"]

    @model_validator(mode="after")
    def _roles(self) -> PreprocessParams:
        if self.positive_class is not None and self.task != "binary":
            raise ValueError("positive_class applies only to task binary")
        if self.max_levels < 2:
            raise ValueError("max_levels must be at least 2")
        if not (0 < self.val_share < 1 and 0 < self.test_share < 1):
            raise ValueError("val_share and test_share must be in (0, 1)")
        if self.val_share + self.test_share >= 0.9:
            raise ValueError("val_share + test_share leaves under 10% of students for training")
        seen: dict[str, str] = {}
        roles = {
            "target": [self.target],
            "ids": self.ids,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "cyclical": list(self.cyclical),
            "derived": list(self.derived),
        }
        for role, names in roles.items():
            for name in names:
                if name in seen:
                    raise ValueError(f"column {name!r} is declared both {seen[name]} and {role}")
                seen[name] = role
        if not (self.numeric or self.categorical or self.cyclical or self.derived):
            raise ValueError("declare at least one feature column")
        return self


class TrainParams(Section):
    """The network, its optimiser and its training schedule."""

    units: list[int]
    dropout: list[float]
    activation: Literal["relu", "gelu", "tanh", "elu"]
    learning_rate: float
    weight_decay: float
    batch_size: int
    epoch_rows: int
    epochs: int
    patience: int
    lr_factor: float
    lr_patience: int
    min_lr: float
    class_weight: Literal["none", "balanced"]

    @model_validator(mode="after")
    def _consistent(self) -> TrainParams:
        if not self.units or any(u < 1 for u in self.units):
            raise ValueError("units must be a non-empty list of positive layer sizes")
        if len(self.dropout) != len(self.units):
            raise ValueError(f"dropout has {len(self.dropout)} entries but units has {len(self.units)}")
        if any(not 0 <= d < 1 for d in self.dropout):
            raise ValueError("each dropout rate must be in [0, 1)")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError("learning_rate must be positive")
        if not 0 < self.min_lr < self.learning_rate:
            raise ValueError(
                f"min_lr ({self.min_lr}) must be below learning_rate ({self.learning_rate}),"
                " or ReduceLROnPlateau can never act"
            )
        if not 0 <= self.weight_decay < 1:
            raise ValueError("weight_decay must be in [0, 1)")
        if not 0 < self.lr_factor < 1:
            raise ValueError("lr_factor must be in (0, 1)")
        if self.batch_size < 1 or self.epochs < 1 or self.patience < 1 or self.lr_patience < 1:
            raise ValueError("batch_size, epochs, patience and lr_patience must be at least 1")
        if self.epoch_rows < self.batch_size:
            raise ValueError(f"epoch_rows ({self.epoch_rows}) must be at least batch_size")
        return self


class HistGradientBoostingParams(Section):
    """The gradient-boosting baseline's hyperparameters."""

    max_iter: int
    learning_rate: float
    max_leaf_nodes: int


class EvaluateParams(Section):
    """Baselines and diagnostics computed on the test split."""

    linear_alpha: float
    hgb: HistGradientBoostingParams
    permutation_repeats: int
    threshold: Fraction
    baseline_rows: int
    importance_rows: int
    plot_rows: int

    @field_validator("permutation_repeats", "baseline_rows", "importance_rows", "plot_rows")
    @classmethod
    def _repeats(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value


class GateParams(Section):
    """What the model must achieve on the test split before it is packaged."""

    metric: str
    min_improvement: dict[str, float]
    max: dict[str, float]
    min: dict[str, float]
    parity_tolerance: Fraction

    _metric_known = field_validator("metric")(classmethod(lambda cls, value: known_metric(value)))


class PackageParams(Section):
    """The packaged model's name and description, and the quality gate in front of it."""

    name: str
    description: str
    gate: GateParams

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", value):
            raise ValueError("must be lower-case letters, digits and dashes (a GTO artifact name)")
        return value


def known_metric(value: str) -> str:
    """A metric whose better direction is known (the one table of :mod:`mlpipe.core.decisions`)."""
    from mlpipe.core import decisions

    try:
        decisions.lower_is_better(value)
    except PipelineError as exc:
        raise ValueError(str(exc)) from None
    return value


def describe(error: ValidationError) -> str:
    """A validation error as one line naming every unknown, missing or invalid key."""
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"])
        if item["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            parts.append(f"unknown key {key!r}")
        elif item["type"] in ("missing", "missing_argument"):
            parts.append(f"missing key {key!r}")
        else:
            message = item["msg"].removeprefix("Value error, ")
            parts.append(f"{key or 'params'}: {message}" if key else message)
    return "; ".join(parts)
