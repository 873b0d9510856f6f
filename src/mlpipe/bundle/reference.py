"""What drift is measured against: the bundle's ``reference.json``, and the measures that compare.

The package stage writes, from the training split, a sketch of every input column (numbers: the
counts in bins cut at training deciles, plus the missing count; categories: the count of each
level, plus the missing count) and, from the test split, the same sketch of the model's
prediction (the predicted number, or the predicted label). Monitoring counts live values into the
same bins and compares with :func:`psi` (the population stability index) and :func:`chi_square`
(Pearson's goodness-of-fit test of the live counts against the reference shares).

Sketches are built in streamed passes over Parquet (bounded memory): the bin edges come from a
deterministic stride sample of at most :data:`SAMPLE` values per column, the counts from every row.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.core.errors import PipelineError

FILE = "reference.json"
FORMAT_VERSION = 1
BINS = 10  # deciles: bins of equal training share
SAMPLE = 100_000  # values per column the bin edges are cut from
FLOOR = 1e-4  # a share below this is taken as this in PSI (an empty bin would make it infinite)


@dataclass
class Sketch:
    """One column's distribution: counts per numeric bin (``edges`` cut them; values equal to an edge
    go to the bin above) or per category level, and the missing count."""

    kind: str  # "number" or "category"
    edges: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    levels: dict[str, int] = field(default_factory=dict)
    missing: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts) + sum(self.levels.values()) + self.missing

    def empty_like(self) -> Sketch:
        """A sketch with the same bins and no counts (what live values are counted into)."""
        return Sketch(self.kind, list(self.edges), [0] * len(self.counts), dict.fromkeys(self.levels, 0))

    def add(self, values: Any) -> None:
        """Count ``values`` (an array or Series) into this sketch's bins; a category level not in the
        reference is counted under its own name."""
        series = pd.Series(values)
        present = series.notna()
        self.missing += int((~present).sum())
        if self.kind == "number":
            numbers = pd.to_numeric(series[present], errors="coerce").to_numpy(np.float64)
            self.missing += int(np.isnan(numbers).sum())
            numbers = numbers[~np.isnan(numbers)]
            bins = np.searchsorted(np.asarray(self.edges, np.float64), numbers, side="right")
            counts = np.bincount(bins, minlength=len(self.edges) + 1)
            self.counts = [a + int(b) for a, b in zip(self.counts, counts, strict=True)]
        else:
            for level, count in Counter(series[present].astype(str).tolist()).items():
                self.levels[level] = self.levels.get(level, 0) + count

    def merge(self, other: Sketch) -> None:
        """Add ``other``'s counts (a sketch with the same bins) to this one's."""
        if self.kind != other.kind or self.edges != other.edges:
            raise PipelineError("two sketches with different bins cannot be merged")
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        for level, count in other.levels.items():
            self.levels[level] = self.levels.get(level, 0) + count
        self.missing += other.missing

    def shares(self, other: Sketch) -> tuple[np.ndarray, np.ndarray]:
        """This sketch's and ``other``'s counts over the union of their cells (bins or levels, then
        missing), aligned."""
        if self.kind != other.kind or self.edges != other.edges:
            raise PipelineError("two sketches with different bins cannot be compared")
        if self.kind == "number":
            cells_a, cells_b = list(self.counts), list(other.counts)
        else:
            names = sorted(set(self.levels) | set(other.levels))
            cells_a = [self.levels.get(n, 0) for n in names]
            cells_b = [other.levels.get(n, 0) for n in names]
        return np.array([*cells_a, self.missing], np.float64), np.array([*cells_b, other.missing], np.float64)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "number":
            return {"kind": "number", "edges": self.edges, "counts": self.counts, "missing": self.missing}
        return {"kind": "category", "levels": dict(sorted(self.levels.items())), "missing": self.missing}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sketch:
        kind = data.get("kind")
        if kind == "number":
            edges, counts = list(data["edges"]), [int(c) for c in data["counts"]]
            if len(counts) != len(edges) + 1:
                raise PipelineError("a number sketch needs one more count than edges")
            return cls("number", [float(e) for e in edges], counts, missing=int(data["missing"]))
        if kind == "category":
            levels = {str(k): int(v) for k, v in dict(data["levels"]).items()}
            return cls("category", levels=levels, missing=int(data["missing"]))
        raise PipelineError(f"unknown sketch kind {kind!r}")


def psi(reference: Sketch, live: Sketch) -> float:
    """Population stability index of ``live`` against ``reference``: sum of (live share - reference
    share) x ln(live share / reference share) over the cells, shares floored at :data:`FLOOR`.
    0 means the same distribution; above 0.2 is the usual threshold of a material shift."""
    expected, actual = reference.shares(live)
    if expected.sum() == 0 or actual.sum() == 0:
        return math.nan
    p = np.maximum(expected / expected.sum(), FLOOR)
    q = np.maximum(actual / actual.sum(), FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def chi_square(reference: Sketch, live: Sketch) -> float:
    """The p-value of Pearson's chi-square test that the live counts follow the reference shares
    (cells the reference never saw get the floor share, so a new level lowers it)."""
    from scipy import stats

    expected, actual = reference.shares(live)
    if expected.sum() == 0 or actual.sum() == 0:
        return math.nan
    shares = np.maximum(expected / expected.sum(), FLOOR)
    shares /= shares.sum()
    if len(shares) < 2:
        return 1.0
    return float(stats.chisquare(actual, shares * actual.sum()).pvalue)


def edges_of(sample: np.ndarray, bins: int = BINS) -> list[float]:
    """Interior cut points at the sample's ``1/bins ... (bins-1)/bins`` quantiles, without repeats."""
    if len(sample) == 0:
        return []
    cuts = np.quantile(sample, np.arange(1, bins) / bins)
    return [float(c) for c in np.unique(cuts)]


def sketch_columns(
    chunks: Iterable[pd.DataFrame],
    rows: int,
    numbers: Sequence[str],
    categories: Sequence[str],
    again: Callable[[], Iterable[pd.DataFrame]],
) -> dict[str, Sketch]:
    """Sketches of ``numbers`` and ``categories`` over a table streamed as ``chunks`` (``rows`` in
    all); ``again()`` streams it a second time, to count numbers into the edges the first pass cut."""
    stride = max(1, math.ceil(rows / SAMPLE))
    samples: dict[str, list[np.ndarray]] = {c: [] for c in numbers}
    sketches = {c: Sketch("category") for c in categories}
    offset = 0
    for chunk in chunks:
        picked = (np.arange(offset, offset + len(chunk)) % stride) == 0
        for column in numbers:
            values = pd.to_numeric(chunk[column], errors="coerce").to_numpy(np.float64)[picked]
            samples[column].append(values[~np.isnan(values)])
        for column in categories:
            sketches[column].add(chunk[column])
        offset += len(chunk)
    numeric = {c: Sketch("number", edges_of(np.concatenate(samples[c] or [np.empty(0)]))) for c in numbers}
    for sketch in numeric.values():
        sketch.counts = [0] * (len(sketch.edges) + 1)
    if numbers:
        for chunk in again():
            for column in numbers:
                numeric[column].add(chunk[column])
    return {c: (numeric[c] if c in numeric else sketches[c]) for c in [*numbers, *categories]}


def prediction_sketch(values: Iterable[Any], task: str) -> Sketch:
    """The sketch of a model's predictions: numbers in deciles (regression), else label counts."""
    collected = [np.asarray(v) for v in values]
    if task != "regression":
        sketch = Sketch("category")
        for labels in collected:
            sketch.add(labels)
        return sketch
    everything = np.concatenate(collected) if collected else np.empty(0)
    sketch = Sketch("number", edges_of(everything))
    sketch.counts = [0] * (len(sketch.edges) + 1)
    sketch.add(everything)
    return sketch


def document(inputs: Mapping[str, Sketch], prediction: Sketch, train_rows: int, test_rows: int) -> dict:
    """``reference.json``'s content."""
    return {
        "format_version": FORMAT_VERSION,
        "inputs": {name: sketch.to_dict() for name, sketch in inputs.items()},
        "prediction": prediction.to_dict(),
        "rows": {"train": train_rows, "test": test_rows},
    }


@dataclass(frozen=True)
class Reference:
    """A bundle's reference, read back."""

    inputs: dict[str, Sketch]
    prediction: Sketch

    @classmethod
    def from_dict(cls, data: Any, source: str) -> Reference:
        """Raises: PipelineError naming ``source``, if ``data`` is not a reference of this format."""
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            raise PipelineError(f"{source}: not a version-{FORMAT_VERSION} reference file")
        try:
            inputs = {str(k): Sketch.from_dict(v) for k, v in data["inputs"].items()}
            return cls(inputs, Sketch.from_dict(data["prediction"]))
        except (KeyError, TypeError, ValueError, AttributeError, PipelineError) as exc:
            raise PipelineError(f"{source}: malformed reference: {exc}") from None
