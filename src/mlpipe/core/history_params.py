"""The early-warning pipeline's ``params.yaml`` (``pipelines/early_warning/``): the two tables and
how to read them (``history``), the dual-branch network (``train``), the baselines (``evaluate``)
and the bundle (``package``). A params file with a ``history`` section is one of these; that
pipeline's own stages run it (``python -m mlpipe.early_warning.<stage>``), loaded by
:func:`mlpipe.core.params.load_early_warning_params`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mlpipe.core.sections import BaseParams, Fraction, HistGradientBoostingParams, Section

Positive = Annotated[int, Field(ge=1)]
HISTORY = "history"  # the section that makes a params file an early-warning one


class ActivitySimulateParams(Section):
    """The demo cohort (:mod:`mlpipe.demo.activity`): how many students over how many weeks."""

    students: Positive
    weeks: Annotated[int, Field(ge=2)]
    start_date: dt.date
    oracle: bool = True  # also write each student's oracle probability per cutoff (slow at scale)


class HistoryParams(Section):
    """The student table and the activity table: which columns are what, the weekly channels, the
    cutoff weeks, and the split by student."""

    key: str = "student_id"
    timestamp: str = "date"
    start: str = "start_date"
    outcome: str = "dropout_date"
    static: list[str]  # numeric columns of the student table
    channels: dict[str, Literal["sum", "mean", "max", "count"]]
    weeks: Annotated[int, Field(ge=1)]  # the sequence length every history is padded to
    cutoffs: list[int]
    val_share: Fraction
    test_share: Fraction
    batch_rows: Positive = 500_000  # activity rows read at a time

    @model_validator(mode="after")
    def _consistent(self) -> HistoryParams:
        if not self.channels:
            raise ValueError("declare at least one channel")
        if not self.cutoffs or any(not 1 <= k <= self.weeks for k in self.cutoffs):
            raise ValueError(f"cutoffs must be weeks in 1..{self.weeks} (history.weeks)")
        if sorted(set(self.cutoffs)) != self.cutoffs:
            raise ValueError("cutoffs must be ascending, each once")
        if self.val_share + self.test_share >= 1:
            raise ValueError("val_share + test_share must leave a training split")
        return self


class SequenceParams(Section):
    """The recurrent branch."""

    cell: Literal["gru", "lstm"]
    units: Positive


class SequenceTrainParams(Section):
    """The dual-branch network and its training."""

    sequence: SequenceParams
    static_units: Positive
    merged_units: Positive
    learning_rate: Annotated[float, Field(gt=0)]
    batch_size: Positive
    epochs: Positive
    patience: Positive


class WarningEvaluateParams(Section):
    """The baselines fitted on the point-in-time aggregates."""

    linear_alpha: Annotated[float, Field(gt=0)]
    hgb: HistGradientBoostingParams


class WarningPackageParams(Section):
    name: str
    description: str
    threshold: Fraction  # the probability above which a student is flagged
    parity_tolerance: Fraction


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class EarlyWarningParams:
    """All of an early-warning ``params.yaml``."""

    base: BaseParams
    history: HistoryParams
    train: SequenceTrainParams
    evaluate: WarningEvaluateParams
    package: WarningPackageParams
    simulate: ActivitySimulateParams | None = None
