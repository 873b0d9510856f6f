"""A history in a request: read into padded, masked arrays, or refused naming the row and field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlpipe.serving.history import HistorySchema
from mlpipe.serving.problems import RecordError

SCHEMA = HistorySchema(static=("prior_gpa", "age"), channels=("minutes", "score"), weeks=3)


def test_histories_of_any_length_are_padded_and_masked():
    inputs = SCHEMA.parse(
        [
            {"prior_gpa": 3.1, "age": 20, "history": [{"minutes": 30, "score": None}, {"minutes": 5}]},
            {"prior_gpa": 2.0, "age": 41, "history": []},
            {"prior_gpa": 2.5, "age": 19, "history": [{"minutes": 1, "score": 80.5}] * 3, "student_id": 7},
        ]
    )
    assert inputs["static"].tolist() == [[3.1, 20], [2.0, 41], [2.5, 19]]
    assert inputs["mask"].tolist() == [[True, True, False], [False] * 3, [True] * 3]
    first = inputs["sequence"][0]
    assert first[0, 0] == 30 and math.isnan(first[0, 1]) and first[1, 0] == 5 and math.isnan(first[1, 1])
    assert (first[2] == 0).all() and (inputs["sequence"][1] == 0).all()


@pytest.mark.parametrize(
    ("record", "field", "message"),
    [
        ({"age": 20, "history": []}, "prior_gpa", "is missing"),
        ({"prior_gpa": "3", "age": 20, "history": []}, "prior_gpa", "must be a number, got str"),
        ({"prior_gpa": 3, "age": True, "history": []}, "age", "must be a number, got bool"),
        ({"prior_gpa": 3, "age": 20}, "history", "must be a list of weeks, got NoneType"),
        ({"prior_gpa": 3, "age": 20, "history": [{}] * 4}, "history", "4 weeks, more than the model's 3"),
        ({"prior_gpa": 3, "age": 20, "history": [{}, 5]}, "history[1]", "must be an object of channels"),
        ({"prior_gpa": 3, "age": 20, "history": [{"clicks": 2}]}, "history[0]", "unknown channel 'clicks'"),
        ({"prior_gpa": 3, "age": 20, "history": [{}, {"minutes": "9"}]}, "history[1].minutes", "got str"),
        (
            {"prior_gpa": 3, "age": 20, "history": [{"score": float("inf")}]},
            "history[0].score",
            "must be finite",
        ),
    ],
)
def test_each_problem_is_named_by_row_and_field(record, field, message):
    good = {"prior_gpa": 3.0, "age": 22, "history": [{"minutes": 3}]}
    with pytest.raises(RecordError) as caught:
        SCHEMA.parse([good, record])
    (error,) = caught.value.errors
    assert (error.row, error.field) == (1, field) and message in error.message


def test_every_problem_of_a_batch_is_reported_and_a_non_object_is_named():
    with pytest.raises(RecordError) as caught:
        SCHEMA.parse([[], {"history": [{"minutes": None}]}])
    assert [(e.row, e.field) for e in caught.value.errors] == [(0, None), (1, "prior_gpa"), (1, "age")]
    assert np.isnan(
        SCHEMA.parse([{"prior_gpa": 1, "age": 2, "history": [{"minutes": None}]}])["sequence"][0, 0, 0]
    )


def test_an_unknown_channel_of_any_length_is_named_in_at_most_80_characters():
    with pytest.raises(RecordError) as caught:
        SCHEMA.parse([{"prior_gpa": 3, "age": 20, "history": [{"x" * 900_000: 1}]}])
    (error,) = caught.value.errors
    assert error.field == "history[0]" and len(error.message) < 200 and "'xxx" in error.message
