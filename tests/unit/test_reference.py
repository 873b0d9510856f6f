"""Drift measures over sketches: PSI and the chi-square test, on shifts whose size is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlpipe.bundle.reference import Reference, Sketch, chi_square, edges_of, psi, sketch_columns
from mlpipe.core.errors import PipelineError


def number_sketch(values: np.ndarray, edges: list[float]) -> Sketch:
    sketch = Sketch("number", edges, [0] * (len(edges) + 1))
    sketch.add(values)
    return sketch


def test_edges_are_deciles_and_values_on_an_edge_go_above():
    edges = edges_of(np.arange(100, dtype=float))
    assert len(edges) == 9 and edges[0] == pytest.approx(9.9)
    sketch = number_sketch(np.array([9.9, 9.8, np.nan, 1e9]), edges)
    assert sketch.counts[0] == 1 and sketch.counts[1] == 1 and sketch.counts[-1] == 1
    assert sketch.missing == 1 and sketch.total == 4
    assert edges_of(np.ones(50)) == [1.0]  # a constant column: one cut, two bins


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift():
    rng = np.random.default_rng(0)
    training = rng.normal(0, 1, 20_000)
    edges = edges_of(training)
    reference = number_sketch(training, edges)
    same = number_sketch(rng.normal(0, 1, 5_000), edges)
    small = number_sketch(rng.normal(0.3, 1, 5_000), edges)
    large = number_sketch(rng.normal(1.0, 1, 5_000), edges)
    assert psi(reference, same) < 0.01 and 0.03 < psi(reference, small) < 0.2 < psi(reference, large)
    assert chi_square(reference, same) > 0.01 and chi_square(reference, large) < 1e-10


def test_a_new_category_level_and_missing_values_count_as_drift():
    reference = Sketch("category", levels={"a": 500, "b": 500})
    live = reference.empty_like()
    live.add(pd.Series(["a"] * 50 + ["c"] * 40 + [None] * 10))
    assert live.levels == {"a": 50, "b": 0, "c": 40} and live.missing == 10
    assert psi(reference, live) > 1 and chi_square(reference, live) < 1e-10


def test_empty_live_counts_have_no_psi_and_different_bins_are_refused():
    reference = number_sketch(np.arange(10.0), [5.0])
    assert math.isnan(psi(reference, reference.empty_like()))
    with pytest.raises(PipelineError, match="different bins"):
        psi(reference, number_sketch(np.arange(10.0), [4.0]))
    with pytest.raises(PipelineError, match="different bins cannot be merged"):
        reference.merge(number_sketch(np.arange(10.0), [4.0]))
    total = reference.empty_like()
    total.merge(reference)
    total.merge(number_sketch(np.array([1.0, np.nan]), [5.0]))
    assert total.counts == [6, 5] and total.missing == 1


def test_streamed_sketches_equal_one_pass_over_the_whole_table():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=3_000), "c": rng.choice(["p", "q"], 3_000)})
    chunks = [frame.iloc[i : i + 700] for i in range(0, 3_000, 700)]
    sketches = sketch_columns(iter(chunks), len(frame), ["x"], ["c"], lambda: iter(chunks))
    assert sketches["x"].edges == edges_of(frame["x"].to_numpy())
    assert sketches["x"].counts == number_sketch(frame["x"].to_numpy(), sketches["x"].edges).counts
    assert sketches["c"].levels == frame["c"].value_counts().to_dict()


def test_a_malformed_reference_names_its_source():
    with pytest.raises(PipelineError, match="ref.json: not a version-1 reference"):
        Reference.from_dict({"inputs": {}}, "ref.json")
    bad = {"format_version": 1, "inputs": {"x": {"kind": "number", "edges": [1.0], "counts": [1]}}}
    with pytest.raises(PipelineError, match="ref.json: malformed reference"):
        Reference.from_dict({**bad, "prediction": bad["inputs"]["x"]}, "ref.json")
