"""What is wrong with a record: one problem per field and row, named, never echoed whole."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlpipe.core.errors import PipelineError

MAX_REPORTED = 20


@dataclass(frozen=True)
class FieldError:
    """One problem with one record: ``row`` counts from 0 within the batch (None: every row)."""

    row: int | None
    field: str | None
    message: str

    def located(self, where: str) -> str:
        """The problem with its place spelled out, e.g. ``line 4, field 'age': ...``."""
        return f"{where}, field {self.field!r}: {self.message}" if self.field else f"{where}: {self.message}"

    def __str__(self) -> str:
        return self.located("all rows" if self.row is None else f"row {self.row}")


def quoted(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: a bad value is named, never echoed whole."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def summarise(problems: Sequence[str], total: int | None = None) -> str:
    """The first problems joined on one line, and how many more there are (of ``total``, when
    only the first ones were given)."""
    more = (len(problems) if total is None else total) - MAX_REPORTED
    return "; ".join(problems[:MAX_REPORTED]) + (f"; and {more} more" if more > 0 else "")


class RecordError(PipelineError):
    """Records that do not match the bundle's input schema."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__(summarise([str(e) for e in self.errors[:MAX_REPORTED]], len(self.errors)))
