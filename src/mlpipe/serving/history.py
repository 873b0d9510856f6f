"""A student's history in a request, checked and turned into the early-warning graph's inputs.

A record holds the static fields and ``history``: a list of weekly rows, oldest first (week 0 is
the term's first week), each a mapping of channel to a number or null (a null counts as no
activity, as in training). A batch of records with histories of different lengths is padded to
the model's weeks and masked, so each record's answer is the one it gets alone.

Every problem is named by row and field, ``history[3].minutes`` for a week's channel: a field that
is missing or not a number, a week that is not an object, an unknown channel (named in the message,
cut to 80 characters, under the week's field ``history[3]``), or more weeks than the model reads (a
history that runs past the cutoff it was trained for).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpipe.serving.problems import FieldError, RecordError, quoted


def number(value: Any) -> str | None:
    """Why ``value`` is not a finite JSON number, or None if it is one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number, got {type(value).__name__}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be finite, got {quoted(value)}"
    return None


@dataclass(frozen=True)
class HistorySchema:
    """What an early-warning model reads: numeric static fields, weekly channels, at most ``weeks``."""

    static: tuple[str, ...]
    channels: tuple[str, ...]
    weeks: int

    def parse(self, records: Sequence[Any]) -> dict[str, np.ndarray]:
        """The graph's inputs for ``records``.

        Raises:
            RecordError: naming every problem by row and field.
        """
        n = len(records)
        inputs = {
            "static": np.zeros((n, len(self.static))),
            "sequence": np.zeros((n, self.weeks, len(self.channels))),
            "mask": np.zeros((n, self.weeks), bool),
        }
        errors: list[FieldError] = []
        for row, record in enumerate(records):
            if not isinstance(record, dict):
                errors.append(FieldError(row, None, f"must be a JSON object, got {type(record).__name__}"))
                continue
            errors += self.read_static(row, record, inputs["static"])
            errors += self.read_history(row, record.get("history"), inputs)
        if errors:
            raise RecordError(errors)
        return inputs

    def read_static(self, row: int, record: dict, out: np.ndarray) -> list[FieldError]:
        errors = []
        for j, name in enumerate(self.static):
            problem = "is missing" if name not in record else number(record[name])
            if problem:
                errors.append(FieldError(row, name, problem))
            else:
                out[row, j] = record[name]
        return errors

    def read_history(self, row: int, history: Any, inputs: dict[str, np.ndarray]) -> list[FieldError]:
        if not isinstance(history, list):
            return [FieldError(row, "history", f"must be a list of weeks, got {type(history).__name__}")]
        if len(history) > self.weeks:
            return [FieldError(row, "history", f"{len(history)} weeks, more than the model's {self.weeks}")]
        errors = []
        for week, values in enumerate(history):
            where = f"history[{week}]"
            if not isinstance(values, dict):
                errors.append(
                    FieldError(row, where, f"must be an object of channels, got {type(values).__name__}")
                )
                continue
            unknown = sorted(set(values) - set(self.channels))
            if unknown:  # named in the message, cut: a field (and a metrics label) stays bounded
                known = ", ".join(self.channels)
                errors.append(
                    FieldError(row, where, f"unknown channel {quoted(unknown[0])} (known: {known})")
                )
            for j, channel in enumerate(self.channels):
                value = values.get(channel)
                problem = None if value is None else number(value)
                if problem:
                    errors.append(FieldError(row, f"{where}.{channel}", problem))
                else:
                    inputs["sequence"][row, week, j] = np.nan if value is None else value
        inputs["mask"][row, : len(history)] = True
        return errors
