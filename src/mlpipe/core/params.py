"""Loading ``params.yaml`` into typed sections that fail loudly, naming the key.

The stages' sections are in :mod:`mlpipe.core.sections`; the model's life after packaging
(registry, monitor, retrain) has its sections here, beside :class:`Params`, which holds them all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import (
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mlpipe.core.errors import PipelineError
from mlpipe.core.history_params import HISTORY, EarlyWarningParams
from mlpipe.core.sections import (
    BaseParams,
    ColumnRule,
    CyclicalFeature,
    EvaluateParams,
    GateParams,
    HistGradientBoostingParams,
    ImputeParams,
    IngestParams,
    PackageParams,
    PreprocessParams,
    Section,
    SimulateParams,
    TrainParams,
    ValidateParams,
    describe,
    known_metric,
)

__all__ = [
    "BaseParams", "ColumnRule", "CyclicalFeature", "EvaluateParams", "GateParams",
    "HistGradientBoostingParams", "ImputeParams", "IngestParams", "MonitorParams", "PackageParams",
    "Params", "PreprocessParams", "RegistryParams", "RetrainParams", "SimulateParams", "TrainParams",
    "ValidateParams", "load_params", "parse_params",
]  # fmt: skip


class RegistryParams(Section):
    """What makes one model version better than another, for promotion and ``mlpipe compare``."""

    metric: str  # its direction comes from its name (mlpipe.core.decisions)
    tolerance: Annotated[float, Field(ge=0, lt=1)]

    _metric_known = field_validator("metric")(classmethod(lambda cls, value: known_metric(value)))


class MonitorParams(Section):
    """``mlpipe monitor``: where outcomes arrive, the window judged and the alert thresholds."""

    url: str | None = None  # SQLAlchemy URL of the outcomes; null: ingest.url
    outcomes: str  # SQL returning the id and the target of each record whose outcome is known
    id: str  # the record field (and outcomes column) joining a prediction to its outcome
    window_days: Annotated[int, Field(ge=1)]
    metric: str  # the live metric compared with the bundle's test value
    max_error_ratio: Annotated[float, Field(gt=0)]
    max_psi: Annotated[float, Field(gt=0)]
    min_labelled: Annotated[int, Field(ge=2)]
    min_drift_rows: Annotated[int, Field(ge=1)] = 200  # fewer live values of a column: no PSI

    _metric_known = field_validator("metric")(classmethod(lambda cls, value: known_metric(value)))


class RetrainParams(Section):
    """``mlpipe retrain``: when new data is enough to retrain, and where the result goes."""

    min_new_rows: Annotated[int, Field(ge=1)]
    stage: str  # the GTO stage a retrained version is assigned (it competes live from there)


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


def parse_params(data: object, source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping.

    Raises:
        PipelineError: naming every unknown, missing or invalid key.
    """
    if isinstance(data, dict) and HISTORY in data:
        raise PipelineError(
            f"{source} is an early-warning pipeline's params (it has a {HISTORY!r} section):"
            " its stages are python -m mlpipe.early_warning.<stage>"
        )
    try:
        return TypeAdapter(Params).validate_python(data)
    except ValidationError as exc:
        raise PipelineError(f"{source}: {describe(exc)}") from None


def read_yaml(path: str | os.PathLike[str]) -> object:
    """A params file's content.

    Raises:
        PipelineError: if the file is missing or is not YAML.
    """
    file = Path(path)
    try:
        return yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"params file not found: {file}") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{file}: not valid YAML: {exc}".replace("\n", " ")) from None


def load_params(path: str | os.PathLike[str] = "params.yaml") -> Params:
    """Read and validate ``params.yaml``.

    Raises:
        PipelineError: if the file is missing, is not YAML, or has an unknown, missing or invalid key.
    """
    return parse_params(read_yaml(path), str(path))


def load_early_warning_params(path: str | os.PathLike[str] = "params.yaml") -> EarlyWarningParams:
    """Read and validate an early-warning pipeline's params file (:mod:`mlpipe.core.history_params`).

    Raises:
        PipelineError: naming every unknown, missing or invalid key.
    """
    try:
        return TypeAdapter(EarlyWarningParams).validate_python(read_yaml(path))
    except ValidationError as exc:
        raise PipelineError(f"{path}: {describe(exc)}") from None
