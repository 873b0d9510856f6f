"""The feature plan's three compilers agree: numpy, ONNX Runtime and the SavedModel, searched for a
disagreement with generated records (nulls, "", unknown levels, range ends, infinities, a division
by zero, column names TensorFlow must rename), for regression, binary and multiclass models."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlpipe.bundle import onnx_graph, savedmodel
from mlpipe.core.errors import PipelineError
from mlpipe.core.params import PreprocessParams
from mlpipe.evaluation.gate import parity_difference
from mlpipe.features import fitting, plan, preprocessor
from mlpipe.training.model import dense_weights, predict

RECORDS_PER_TASK = 2000
BATCH = 40
RANGES = {"mean radius": (0.0, 30.0), "count": (0.0, 10.0), "divisor": (-2.0, 2.0)}
LEVELS = {"colour": ["blue", "green", "red"], "size": ["L", "M", "S"]}
HOURS = {"night": 0, "morning": 6, "noon": 12, "evening": 18}


def preprocess_params(task: str, unknown: str) -> PreprocessParams:
    return PreprocessParams(
        task=task,
        positive_class=None,
        target="y",
        group="g",
        ids=[],
        numeric=["mean radius", "count"],
        categorical=["colour", "size"],
        cyclical={"time of day": {"period": 24, "values": HOURS}},
        derived={"ratio": "count / divisor"},
        impute={"numeric": "median", "categorical": "most_frequent"},
        max_levels=10,
        val_share=0.2,
        test_share=0.2,
        unknown_category=unknown,
    )


def training_frame(task: str) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 60
    targets = {
        "regression": rng.normal(size=n),
        "binary": rng.integers(0, 2, n),
        "multiclass": rng.choice(["a", "b", "c"], n),
    }
    return pd.DataFrame(
        {
            "mean radius": rng.uniform(*RANGES["mean radius"], n),
            "count": rng.integers(0, 10, n).astype(float),
            "divisor": rng.choice([-1.5, -0.5, 0.5, 1.5], n),
            "colour": rng.choice(LEVELS["colour"], n),
            "size": rng.choice(LEVELS["size"], n),
            "time of day": rng.choice(list(HOURS), n),
            "g": np.arange(n),
            "y": targets[task],
        }
    )


def network(width: int, task: str, n_features: int) -> keras.Model:
    activation = {"regression": None, "binary": "sigmoid", "multiclass": "softmax"}[task]
    inputs = keras.Input(shape=(n_features,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(width, activation=activation)(hidden))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype(np.float32) for w in model.get_weights()])
    return model


class Compiled:
    """One fitted preprocessor and network, compiled three ways."""

    def __init__(self, task: str, unknown: str, nullable: list[str], folder: Path) -> None:
        self.prep = fitting.fit(training_frame(task), preprocess_params(task, unknown), nullable)
        width = 3 if task == "multiclass" else 1
        self.network = network(width, task, len(self.prep.feature_names))
        layers = [onnx_graph.DenseLayer(*w) for w in dense_weights(self.network)]
        graph = onnx_graph.build(self.prep, layers, "parity").SerializeToString()
        self.session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        savedmodel.export(self.network, self.prep, folder / "saved_model")
        self.signature = savedmodel.load_signature(folder / "saved_model")
        self.plan = preprocessor.plan_of(self.prep)

    def numpy(self, frame: pd.DataFrame) -> np.ndarray:
        """numpy features (training's path) into Keras; NaN for the rows the plan refuses."""
        lowered = preprocessor.lower(frame, self.prep)
        refused = plan.refused_rows(lowered, preprocessor.NumpyOps())
        output = predict(self.network, np.nan_to_num(lowered.features)).astype(np.float64)
        output = output.reshape(len(frame), -1)
        if refused is not None:
            output[refused[:, 0]] = np.nan
        return output

    def onnx(self, frame: pd.DataFrame) -> np.ndarray:
        feed = preprocessor.plan_inputs(frame, self.plan)
        return self.session.run(None, feed)[0].astype(np.float64)

    def saved_model(self, frame: pd.DataFrame) -> np.ndarray:
        output = self.signature(**savedmodel.feed(frame, self.prep))["prediction"]
        return output.numpy().astype(np.float64)


def agree(compiled: Compiled, frame: pd.DataFrame) -> np.ndarray:
    """Assert the three agree on every row (same refusals, outputs within 1e-5); the refusals."""
    reference = compiled.numpy(frame)
    refused = np.isnan(reference).any(axis=1)
    for name, output in (("onnx", compiled.onnx(frame)), ("saved_model", compiled.saved_model(frame))):
        theirs = ~np.isfinite(output).all(axis=1)
        assert np.array_equal(theirs, refused), (
            f"{name} refuses rows {np.flatnonzero(theirs)}, numpy {np.flatnonzero(refused)}"
        )
        assert parity_difference(output[~refused], reference[~refused]) <= 1e-5, name
    return refused


def numbers(column: str) -> st.SearchStrategy:
    low, high = RANGES[column]
    return st.one_of(
        st.floats(low, high),
        st.sampled_from([low, high, 0.0, math.nan, math.inf, -math.inf]),
        st.none(),
    )


def texts(levels: list[str]) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(levels), st.sampled_from(["", "unseen"]), st.none(), st.text(max_size=2))


COLUMNS = [*RANGES, *LEVELS, "time of day"]
VALID = {
    "mean radius": 12.0,
    "count": 3.0,
    "divisor": 1.5,
    "colour": "red",
    "size": "M",
    "time of day": "noon",
}
RECORD = st.fixed_dictionaries(
    {
        **{column: numbers(column) for column in RANGES},
        **{column: texts(levels) for column, levels in LEVELS.items()},
        "time of day": texts(list(HOURS)),
    }
)

# Regression with every column nullable; binary refusing unknown levels and nothing nullable but two
# columns; multiclass with text nullable only.
CASES = {
    "regression": ("ignore", [*RANGES, *LEVELS, "time of day"]),
    "binary": ("error", ["count", "size"]),
    "multiclass": ("ignore", [*LEVELS, "time of day"]),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def compiled(request, tmp_path_factory) -> Compiled:
    unknown, nullable = CASES[request.param]
    return Compiled(request.param, unknown, nullable, tmp_path_factory.mktemp(request.param))


def test_the_three_compilers_agree_on_generated_records(compiled: Compiled):
    seen = {"records": 0, "refused": 0}

    @settings(
        max_examples=RECORDS_PER_TASK // BATCH,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    # Hypothesis draws on constants it finds in the imported modules, so what it generates moves with
    # the code base: one batch of valid records keeps the "both outcomes" check below meaningful.
    @example([VALID] * BATCH)
    @given(st.lists(RECORD, min_size=BATCH, max_size=BATCH))
    def check(records: list[dict]) -> None:
        refused = agree(compiled, pd.DataFrame.from_records(records, columns=COLUMNS))
        seen["records"] += len(records)
        seen["refused"] += int(refused.sum())

    check()
    assert seen["records"] >= RECORDS_PER_TASK
    assert 0 < seen["refused"] < seen["records"]  # the search reached both outcomes


def one(compiled: Compiled, **changes) -> pd.DataFrame:
    return pd.DataFrame([{**VALID, **changes}])


def test_an_unknown_cyclical_level_is_refused_by_all_three(compiled: Compiled):
    assert agree(compiled, one(compiled, **{"time of day": "dawn"})).tolist() == [True]
    with pytest.raises(PipelineError, match="column 'time of day' has unknown level 'dawn' at row 0"):
        preprocessor.transform(one(compiled, **{"time of day": "dawn"}), compiled.prep)


def test_unknown_category_follows_the_policy_in_all_three(compiled: Compiled):
    refused = agree(compiled, one(compiled, colour="purple")).tolist()
    assert refused == [compiled.prep.unknown_category == "error"]


def test_an_empty_string_is_a_missing_value_in_all_three(compiled: Compiled):
    empty, null = one(compiled, size=""), one(compiled, size=None)
    assert np.array_equal(compiled.numpy(empty), compiled.numpy(null), equal_nan=True)
    refused = agree(compiled, empty).tolist()
    assert refused == ["size" not in compiled.prep.fill]
    if "size" in compiled.prep.fill:  # imputed with the mode, not taken for a level of its own
        filled = one(compiled, size=compiled.prep.fill["size"])
        assert np.array_equal(compiled.numpy(empty), compiled.numpy(filled))


def test_a_null_text_reaches_the_saved_model_as_missing_not_as_nan(compiled: Compiled):
    frame = one(compiled, colour=None)
    assert (
        savedmodel.feed(frame, compiled.prep)[savedmodel.signature_names(["colour"])["colour"]].numpy()[0]
        == b""
    )
    agree(compiled, frame)


def test_a_division_by_zero_is_refused_by_all_three(compiled: Compiled):
    assert agree(compiled, one(compiled, divisor=0.0)).tolist() == [True]


def test_a_formula_reading_no_column_is_refused_before_any_export():
    params = preprocess_params("regression", "ignore").model_copy(update={"derived": {"two": "1 + 1"}})
    with pytest.raises(PipelineError, match=r"preprocess.derived.two: '1 \+ 1' reads no column"):
        fitting.fit(training_frame("regression"), params)


def test_the_plan_round_trips_through_json(compiled: Compiled):
    again = plan.Plan.from_dict(compiled.plan.to_dict())
    assert again == compiled.plan
    assert again.feature_names == compiled.prep.feature_names
    with pytest.raises(PipelineError, match="malformed feature plan"):
        plan.Plan.from_dict({"inputs": [], "blocks": [{"block": "bucketize"}]})


def test_signature_names_never_collide():
    names = savedmodel.signature_names(["a b", "a_b", "a-b", "_x", "/y"])
    assert len(set(names.values())) == 5
    assert names["a b"] == "a_b" and names["a_b"] == "a_b_"
    assert all(n[0].isalnum() or n[0] == "." for n in names.values())
