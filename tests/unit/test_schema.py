"""The one schema check: the same verdict for a value whatever shape or batch size it comes in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipe.bundle import layout as bundle
from mlpipe.serving.schema import Schema

INPUTS = {
    "age": {"type": "integer", "min": 16, "max": 35},
    "hours": {"type": "number", "min": 0, "fill": 1.5},
    "subject": {"type": "string", "categories": ["maths", "physics"], "unknown": "error"},
    "time": {"type": "string", "categories": ["day", "night"], "unknown": "error", "fill": "day"},
    "style": {"type": "string", "categories": ["visual"], "unknown": "ignore"},
    "place": {"type": "string", "categories": ["home"], "unknown": "ignore", "allowed": ["home", "cafe"]},
}
GOOD = {"age": 20, "hours": 2.0, "subject": "maths", "time": "night", "style": "visual", "place": "home"}
SCHEMA = Schema.from_metadata(INPUTS)


def problems_in(record: dict, copies: int) -> dict[str, set]:
    """Problems of ``record`` among ``copies - 1`` good records, as records and as a frame."""
    batch = [GOOD] * (copies - 1) + [record]
    _, from_records = SCHEMA.check_records(batch)
    _, from_frame = SCHEMA.check_frame(pd.DataFrame(batch))
    return {
        "records": {(e.row, e.field) for e in from_records},
        "frame": {(e.row, e.field) for e in from_frame},
    }


@pytest.mark.parametrize("copies", [1, 16, 17, 200])
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": "astrology"}, "subject"),  # unknown category under the policy "error"
        ({"time": "dawn"}, "time"),
        ({"age": 40}, "age"),
        ({"age": 20.5}, "age"),
        ({"hours": -1.0}, "hours"),
        ({"subject": None}, "subject"),  # not nullable
        ({"subject": ""}, "subject"),  # the empty string is a missing value too
        ({"age": None}, "age"),
        ({"place": "moon"}, "place"),  # unseen levels are ignored, but not one the contract refuses
    ],
)
def test_a_bad_value_is_refused_alike_in_every_shape_and_batch_size(change, field, copies):
    found = problems_in({**GOOD, **change}, copies)
    assert found == {"records": {(copies - 1, field)}, "frame": {(copies - 1, field)}}


@pytest.mark.parametrize("copies", [1, 16, 17, 200])
@pytest.mark.parametrize("missing", [None, ""])
def test_null_and_empty_text_are_accepted_alike_where_the_field_is_nullable(missing, copies):
    batch = [GOOD] * (copies - 1) + [{**GOOD, "time": missing, "hours": None}]
    for columns, errors in (SCHEMA.check_records(batch), SCHEMA.check_frame(pd.DataFrame(batch))):
        assert errors == []
        assert columns["time"][-1, 0] == ""  # the plan's sentinel: the model fills it
        assert np.isnan(columns["hours"][-1, 0])


def test_an_unknown_category_under_ignore_passes_and_messages_name_the_value():
    batch = [
        {**GOOD, "style": "auditory", "place": "cafe"},
        {**GOOD, "subject": "astrology", "place": "moon"},
    ]
    _, errors = SCHEMA.check_records(batch)
    assert [str(e) for e in errors] == [
        "row 1, field 'subject': unknown category 'astrology' (known: maths, physics)",
        "row 1, field 'place': 'moon' is not allowed (the data contract allows: cafe, home)",
    ]
    _, errors = SCHEMA.check_records([{**GOOD, "age": 40}, {**GOOD, "hours": -1.0}, {**GOOD, "age": "20"}])
    assert [str(e) for e in errors] == [
        "row 0, field 'age': 40 is above the maximum 35",
        "row 1, field 'hours': -1.0 is below the minimum 0",
        "row 2, field 'age': must be a number, got str",
    ]


def test_checksums_naming_a_path_outside_the_bundle_are_refused():
    digest = "0" * 64
    assert bundle.parse_checksums(f"{digest}  model.onnx\n") == {"model.onnx": digest}
    for name in ("../model.onnx", "/etc/passwd", "saved_model/../../x"):
        with pytest.raises(bundle.BundleError, match="SHA256SUMS line 1 is malformed"):
            bundle.parse_checksums(f"{digest}  {name}\n")
