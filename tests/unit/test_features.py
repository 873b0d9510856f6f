import math

import numpy as np
import pandas as pd
import pytest

from mlpipe.core.errors import PipelineError
from mlpipe.features import fitting, formulas, preprocessor


def test_expression_reads_columns_and_computes():
    text = "difficulty_level / (avg_focus_duration / 60) - -1"
    assert formulas.columns("r", text) == ["difficulty_level", "avg_focus_duration"]
    cols = {"difficulty_level": np.array([6.0, 3.0]), "avg_focus_duration": np.array([30.0, 60.0])}
    np.testing.assert_allclose(formulas.evaluate("r", text, cols), [13.0, 4.0])


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
        formulas.parse("bad", text)


def test_fit_transform_scales_on_train_and_encodes(valid_frame, params):
    prep = fitting.fit(valid_frame, params.preprocess)
    x = preprocessor.transform(valid_frame, prep)
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
    prep = fitting.fit(valid_frame, params.preprocess)
    frame = valid_frame.head(3).assign(time_of_day=["morning", "night", "afternoon"])
    x = preprocessor.transform(frame, prep)
    sin, cos = (prep.feature_names.index(f"time_of_day_{f}") for f in ("sin", "cos"))
    points = x[:, [sin, cos]]

    def chord(hours: float) -> float:
        return 2 * math.sin(math.pi * hours / 24)

    # 23h -> 9h is 10 hours round the clock (a linear hour would say 14); 14h -> 23h is 9 hours.
    assert np.linalg.norm(points[0] - points[1]) == pytest.approx(chord(10), rel=1e-5)
    assert np.linalg.norm(points[2] - points[1]) == pytest.approx(chord(9), rel=1e-5)
    assert math.isclose(points[0][0], math.sin(2 * math.pi * 9 / 24), rel_tol=1e-6)


def test_unknown_category_policy(valid_frame, params):
    prep = fitting.fit(valid_frame, params.preprocess)
    odd = valid_frame.head(2).assign(subject=["astrology", "physics"])
    x = preprocessor.transform(odd, prep)
    block = [prep.feature_names.index(f"subject={level}") for level in prep.categories["subject"]]
    assert x[0, block].sum() == 0 and x[1, block].sum() == 1
    strict = fitting.fit(valid_frame, params.preprocess.model_copy(update={"unknown_category": "error"}))
    with pytest.raises(PipelineError, match="column 'subject' has unknown category 'astrology' at row 0"):
        preprocessor.transform(odd, strict)


def no_imputation(params):
    return params.preprocess.model_copy(
        update={
            "impute": params.preprocess.impute.model_copy(update={"numeric": "none", "categorical": "none"})
        }
    )


def test_transform_errors_name_the_column(valid_frame, params):
    prep = fitting.fit(valid_frame, no_imputation(params))
    with pytest.raises(PipelineError, match="column 'age' is missing"):
        preprocessor.transform(valid_frame.drop(columns=["age"]), prep)
    with pytest.raises(PipelineError, match="column 'age' has 1 missing"):
        preprocessor.transform(valid_frame.head(3).assign(age=[20, None, 30]), prep)
    with pytest.raises(PipelineError, match="column 'subject' has 1 missing"):
        preprocessor.transform(valid_frame.head(3).assign(subject=["physics", None, "history"]), prep)
    zero = valid_frame.head(2).assign(avg_focus_duration=[0.0, 30.0])
    with pytest.raises(PipelineError, match="derived feature 'difficulty_focus_ratio'.*first at row 0"):
        preprocessor.transform(zero, prep)
    with pytest.raises(PipelineError, match="column 'time_of_day' has unknown level 'dawn'"):
        preprocessor.transform(valid_frame.head(1).assign(time_of_day="dawn"), prep)


def test_json_round_trip_gives_identical_output(valid_frame, params):
    import json

    prep = fitting.fit(valid_frame, params.preprocess)
    again = preprocessor.Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    np.testing.assert_array_equal(
        preprocessor.transform(valid_frame, prep), preprocessor.transform(valid_frame, again)
    )
    with pytest.raises(PipelineError, match="not a version-1 preprocessor"):
        preprocessor.Preprocessor.from_dict({"version": 99})


def test_fit_checks_roles_against_data(valid_frame, params):
    with pytest.raises(PipelineError, match=r"preprocess\.numeric: column 'age' is not in the data"):
        fitting.fit(valid_frame.drop(columns=["age"]), params.preprocess)
    derived = params.preprocess.model_copy(update={"derived": {"x": "age / height"}})
    with pytest.raises(PipelineError, match=r"preprocess\.derived\.x: column 'height' is not in the data"):
        fitting.fit(valid_frame, derived)
    with pytest.raises(PipelineError, match="training split is empty"):
        fitting.fit(valid_frame.iloc[:0], params.preprocess)


def test_target(valid_frame, params):
    prep = fitting.fit(valid_frame, params.preprocess)
    assert preprocessor.target(valid_frame, prep).dtype == np.float32
    x, y = preprocessor.matrices(valid_frame, prep)
    assert x.shape[0] == y.shape[0] == len(valid_frame)
    with pytest.raises(PipelineError, match="target column 'actual_duration' is missing"):
        preprocessor.target(pd.DataFrame({"a": [1]}), prep)


def test_missing_values_are_filled_with_training_statistics(valid_frame, params):
    holes = valid_frame.copy()
    holes.loc[:9, "age"] = None
    holes.loc[:4, "subject"] = None
    holes.loc[5:6, "time_of_day"] = None
    prep = fitting.fit(holes, params.preprocess)
    assert prep.fill["age"] == float(holes["age"].dropna().median())
    assert prep.fill["subject"] == holes["subject"].dropna().value_counts().sort_index().idxmax()
    assert set(prep.fill) == set(prep.input_columns)
    filled = holes.assign(
        age=holes["age"].fillna(prep.fill["age"]),
        subject=holes["subject"].fillna(prep.fill["subject"]),
        time_of_day=holes["time_of_day"].fillna(prep.fill["time_of_day"]),
    )
    np.testing.assert_array_equal(preprocessor.transform(holes, prep), preprocessor.transform(filled, prep))
    mean = fitting.fit(
        holes,
        params.preprocess.model_copy(
            update={"impute": params.preprocess.impute.model_copy(update={"numeric": "mean"})}
        ),
    )
    assert mean.fill["age"] == pytest.approx(float(holes["age"].dropna().mean()))


def test_schema_errors_stop_before_training(valid_frame, params):
    ids_as_category = params.preprocess.model_copy(
        update={"categorical": ["student_id"], "ids": ["session_id"]}
    )
    with pytest.raises(PipelineError, match=r"column 'student_id' has \d+ levels .*max_levels 100"):
        fitting.fit(valid_frame, ids_as_category)
    binary = params.preprocess.model_copy(update={"task": "binary", "target": "environment"})
    with pytest.raises(PipelineError, match="task binary needs 2 classes in 'environment', found 4"):
        fitting.fit(valid_frame, binary.model_copy(update={"categorical": ["subject"]}))
    one_class = valid_frame.assign(label="same")
    single = params.preprocess.model_copy(update={"task": "multiclass", "target": "label"})
    with pytest.raises(PipelineError, match="target 'label' has one class \\('same'\\)"):
        fitting.fit(one_class, single)


def test_classification_targets_become_class_indices(valid_frame, params):
    frame = valid_frame.assign(passed=np.where(valid_frame["energy_level"] >= 3, "yes", "no"))
    binary = params.preprocess.model_copy(
        update={"task": "binary", "target": "passed", "positive_class": "no"}
    )
    prep = fitting.fit(frame, binary)
    assert prep.classes == ["yes", "no"]  # the positive class goes last
    assert preprocessor.target(frame.head(3), prep).tolist() == [
        0 if v == "yes" else 1 for v in frame["passed"][:3]
    ]
    with pytest.raises(PipelineError, match="class 'maybe' at row 0, not seen in training"):
        preprocessor.target(frame.head(2).assign(passed=["maybe", "yes"]), prep)
