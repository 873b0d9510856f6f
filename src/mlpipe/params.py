"""Loading ``params.yaml`` into frozen, typed sections that fail loudly.

Every section is a frozen pydantic model that forbids unknown keys and has no silent defaults for
what changes results, so a typo such as ``dvc exp run -S train.learning_rat=0.1`` (which DVC itself
accepts, treeverse/dvc#5477) stops the stage at start-up with the key's full name.

Longer than the ~300 lines a module is held to, on purpose: it is the schema of the whole
``params.yaml``, one section per stage in stage order, so that every key, its type and its check
are read in one place, next to the cross-section checks that tie them together.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mlpipe.errors import PipelineError

Fraction = Annotated[float, Field(gt=0, lt=1)]  # strictly between 0 and 1


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseParams(_Section):
    """Settings shared by every stage."""

    seed: int


class SimulateParams(_Section):
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


class IngestParams(_Section):
    """Where the raw table comes from: a SQLAlchemy URL (no password) and a query, or a file path."""

    url: str
    query: str | None
    key: str | None = None  # a column that grows with new rows (id or date): the snapshot's extent


class ColumnRule(_Section):
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


class ValidateParams(_Section):
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


class CyclicalFeature(_Section):
    """A categorical that lives on a circle (hour of day): each level maps to a position."""

    period: float
    values: dict[str, float]


class ImputeParams(_Section):
    """How missing values are filled, with statistics of the training split (``none``: refused)."""

    numeric: Literal["none", "mean", "median"]
    categorical: Literal["none", "most_frequent"]


class PreprocessParams(_Section):
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


class TrainParams(_Section):
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


class HistGradientBoostingParams(_Section):
    """The gradient-boosting baseline's hyperparameters."""

    max_iter: int
    learning_rate: float
    max_leaf_nodes: int


class EvaluateParams(_Section):
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


class GateParams(_Section):
    """What the model must achieve on the test split before it is packaged."""

    metric: str
    min_improvement: dict[str, float]
    max: dict[str, float]
    min: dict[str, float]
    parity_tolerance: Fraction

    _metric_known = field_validator("metric")(classmethod(lambda cls, value: _known_metric(value)))


class PackageParams(_Section):
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


class RegistryParams(_Section):
    """What makes one model version better than another, for promotion and ``mlpipe compare``."""

    metric: str  # its direction comes from its name (mlpipe.decisions)
    tolerance: Annotated[float, Field(ge=0, lt=1)]

    _metric_known = field_validator("metric")(classmethod(lambda cls, value: _known_metric(value)))


class MonitorParams(_Section):
    """``mlpipe monitor``: where outcomes arrive, the window judged and the alert thresholds."""

    url: str | None = None  # SQLAlchemy URL of the outcomes; null: ingest.url
    outcomes: str  # SQL returning the id and the target of each record whose outcome is known
    id: str  # the record field (and outcomes column) joining a prediction to its outcome
    window_days: Annotated[int, Field(ge=1)]
    metric: str  # the live metric compared with the bundle's test value
    max_error_ratio: Annotated[float, Field(gt=0)]
    max_psi: Annotated[float, Field(gt=0)]
    min_labelled: Annotated[int, Field(ge=2)]

    _metric_known = field_validator("metric")(classmethod(lambda cls, value: _known_metric(value)))


class RetrainParams(_Section):
    """``mlpipe retrain``: when new data is enough to retrain, and where the result goes."""

    min_new_rows: Annotated[int, Field(ge=1)]
    stage: str  # the GTO stage a retrained version is assigned (it competes live from there)


def _known_metric(value: str) -> str:
    """A metric whose better direction is known (the one table of :mod:`mlpipe.decisions`)."""
    from mlpipe import decisions

    try:
        decisions.lower_is_better(value)
    except PipelineError as exc:
        raise ValueError(str(exc)) from None
    return value


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Params:
    """All of ``params.yaml`` (a dataclass, since ``validate`` would shadow a BaseModel method)."""

    base: BaseParams
    ingest: IngestParams
    validate: ValidateParams
    preprocess: PreprocessParams
    train: TrainParams
    evaluate: EvaluateParams
    package: PackageParams
    registry: RegistryParams
    simulate: SimulateParams | None = None  # only a pipeline with the simulate stage has one
    monitor: MonitorParams | None = None  # only a monitored pipeline has one (`mlpipe monitor`)
    retrain: RetrainParams | None = None  # only a pipeline retrained on new data has one


def _describe(error: ValidationError) -> str:
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


def parse_params(data: object, source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping.

    Raises:
        PipelineError: naming every unknown, missing or invalid key.
    """
    try:
        return TypeAdapter(Params).validate_python(data)
    except ValidationError as exc:
        raise PipelineError(f"{source}: {_describe(exc)}") from None


def load_params(path: str | os.PathLike[str] = "params.yaml") -> Params:
    """Read and validate ``params.yaml``.

    Raises:
        PipelineError: if the file is missing, is not YAML, or has an unknown, missing or invalid key.
    """
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"params file not found: {file}") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{file}: not valid YAML: {exc}".replace("\n", " ")) from None
    return parse_params(data, str(file))
