import math

import numpy as np
import pandas as pd
import pytest

from mlpipe import features
from mlpipe.errors import PipelineError


def test_expression_reads_columns_and_computes():
    text = "difficulty_level / (avg_focus_duration / 60) - -1"
    assert features.expression_columns("r", text) == ["difficulty_level", "avg_focus_duration"]
    cols = {"difficulty_level": np.array([6.0, 3.0]), "avg_focus_duration": np.array([30.0, 60.0])}
    np.testing.assert_allclose(features.evaluate_expression("r", text, cols), [13.0, 4.0])


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "age.real",
        "age ** 2",
        "abs(age)",
        "age if 1 else 2",
        "'a'",
    ],
)
def test_expression_refuses_anything_but_arithmetic(text):
    with pytest.raises(PipelineError, match=r"preprocess\.derived\.bad"):
        features.parse_expression("bad", text)


def test_fit_transform_scales_on_train_and_encodes(valid_frame, params):
    prep = features.fit(valid_frame, params.preprocess)
    x = features.transform(valid_frame, prep)
    names = prep.feature_names
    assert x.shape == (len(valid_frame), len(names)) and x.dtype == np.float32
    numeric = len(prep.numeric) + len(prep.derived)
    np.testing.assert_allclose(x[:, :numeric].mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(x[:, :numeric].std(axis=0), 1, atol=1e-3)
    for column, levels in prep.categories.items():
        block = [names.index(f"{column}={level}") for level in levels]
        assert (x[:, block].sum(axis=1) == 1).all()
    ratio = names.index("difficulty_focus_ratio")
    expected = valid_frame["difficulty_level"] / (valid_frame["avg_focus_duration"] / 60)
    np.testing.assert_allclose(
        x[:, ratio] * prep.scale["difficulty_focus_ratio"] + prep.mean["difficulty_focus_ratio"],
        expected,
        rtol=1e-4,
    )


def test_cyclical_distance_goes_round_the_clock(valid_frame, params):
    prep = features.fit(valid_frame, params.preprocess)
    frame = valid_frame.head(3).assign(time_of_day=["morning", "night", "afternoon"])
    x = features.transform(frame, prep)
    sin, cos = (prep.feature_names.index(f"time_of_day_{f}") for f in ("sin", "cos"))
    points = x[:, [sin, cos]]

    def chord(hours: float) -> float:
        return 2 * math.sin(math.pi * hours / 24)

    # 23h -> 9h is 10 hours round the clock (a linear hour would say 14); 14h -> 23h is 9 hours.
    assert np.linalg.norm(points[0] - points[1]) == pytest.approx(chord(10), rel=1e-5)
    assert np.linalg.norm(points[2] - points[1]) == pytest.approx(chord(9), rel=1e-5)
    assert math.isclose(points[0][0], math.sin(2 * math.pi * 9 / 24), rel_tol=1e-6)


def test_unknown_category_policy(valid_frame, params):
    prep = features.fit(valid_frame, params.preprocess)
    odd = valid_frame.head(2).assign(subject=["astrology", "physics"])
    x = features.transform(odd, prep)
    block = [prep.feature_names.index(f"subject={level}") for level in prep.categories["subject"]]
    assert x[0, block].sum() == 0 and x[1, block].sum() == 1
    strict = features.fit(valid_frame, params.preprocess.model_copy(update={"unknown_category": "error"}))
    with pytest.raises(PipelineError, match="column 'subject' has unknown category 'astrology' at row 0"):
        features.transform(odd, strict)


def test_transform_errors_name_the_column(valid_frame, params):
    prep = features.fit(valid_frame, params.preprocess)
    with pytest.raises(PipelineError, match="column 'age' is missing"):
        features.transform(valid_frame.drop(columns=["age"]), prep)
    with pytest.raises(PipelineError, match="column 'age' has 1 missing"):
        features.transform(valid_frame.head(3).assign(age=[20, None, 30]), prep)
    zero = valid_frame.head(2).assign(avg_focus_duration=[0.0, 30.0])
    with pytest.raises(PipelineError, match="derived feature 'difficulty_focus_ratio'.*first at row 0"):
        features.transform(zero, prep)
    with pytest.raises(PipelineError, match="column 'time_of_day' has unknown level 'dawn'"):
        features.transform(valid_frame.head(1).assign(time_of_day="dawn"), prep)


def test_json_round_trip_gives_identical_output(valid_frame, params):
    import json

    prep = features.fit(valid_frame, params.preprocess)
    again = features.Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    np.testing.assert_array_equal(
        features.transform(valid_frame, prep), features.transform(valid_frame, again)
    )
    with pytest.raises(PipelineError, match="not a version-1 preprocessor"):
        features.Preprocessor.from_dict({"version": 99})


def test_fit_checks_roles_against_data(valid_frame, params):
    with pytest.raises(PipelineError, match=r"preprocess\.numeric: column 'age' is not in the data"):
        features.fit(valid_frame.drop(columns=["age"]), params.preprocess)
    derived = params.preprocess.model_copy(update={"derived": {"x": "age / height"}})
    with pytest.raises(PipelineError, match=r"preprocess\.derived\.x: column 'height' is not in the data"):
        features.fit(valid_frame, derived)
    with pytest.raises(PipelineError, match="training split is empty"):
        features.fit(valid_frame.iloc[:0], params.preprocess)


def test_target(valid_frame, params):
    prep = features.fit(valid_frame, params.preprocess)
    assert features.target(valid_frame, prep).dtype == np.float32
    x, y = features.matrices(valid_frame, prep)
    assert x.shape[0] == y.shape[0] == len(valid_frame)
    with pytest.raises(PipelineError, match="target column 'actual_duration' is missing"):
        features.target(pd.DataFrame({"a": [1]}), prep)
