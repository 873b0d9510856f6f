"""The early-warning network in ONNX Runtime and as a SavedModel gives Keras' answers (within 1e-5)
on any history: any length, an empty one, a single week, padding, nulls in a channel; GRU and LSTM.
All three read the history through the one ``lower_history``, each in its own backend."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlpipe.bundle import sequence_onnx
from mlpipe.training import sequence

WEEKS, CHANNELS, STATIC = 6, 3, 2


@pytest.fixture(scope="module", params=["gru", "lstm"])
def compiled(request, tmp_path_factory):
    rng = np.random.default_rng(0)
    spec = sequence.SequenceSpec(cell=request.param, units=5, static_units=4, merged_units=3)
    network = sequence.build(STATIC, WEEKS, CHANNELS, spec, seed=3)
    for layer in network.layers:  # weights away from their initial values, biases included
        layer.set_weights([w + rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in layer.get_weights()])
    seq = rng.gamma(2.0, 10.0, (200, WEEKS, CHANNELS))
    scale = sequence.SequenceScale.fit(rng.normal(3, 1, (200, STATIC)), seq, np.ones((200, WEEKS), bool))
    model = sequence_onnx.build(network, scale)
    from mlpipe.bundle import sequence_bundle
    from mlpipe.bundle.savedmodel import load_signature

    folder = tmp_path_factory.mktemp(request.param) / "saved_model"
    sequence_bundle.export(network, scale, folder)
    return (
        network,
        scale,
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]),
        model,
        load_signature(folder),
    )


histories = st.integers(1, 8).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.float64, (n, STATIC), elements=st.floats(-50, 50)),
        hnp.arrays(np.float64, (n, WEEKS, CHANNELS), elements=st.one_of(st.floats(0, 1e4), st.just(np.nan))),
        st.lists(st.integers(0, WEEKS), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(histories)
def test_onnx_runtime_and_the_saved_model_give_keras_answers_on_any_history(compiled, history):
    import tensorflow as tf

    network, scale, session, _, signature = compiled
    static, seq, lengths = history
    mask = np.arange(WEEKS)[None, :] < np.array(lengths)[:, None]
    keras_out = network.predict(scale.apply(static, seq, mask), verbose=0)
    onnx_out = session.run(None, {"static": static, "sequence": seq, "mask": mask})[0]
    np.testing.assert_allclose(onnx_out, keras_out, atol=1e-5, rtol=0)
    inputs = {"static": tf.constant(static), "sequence": tf.constant(seq), "mask": tf.constant(mask)}
    saved = signature(**inputs)["probability"].numpy()
    np.testing.assert_allclose(saved, keras_out, atol=1e-5, rtol=0)


def test_the_graph_is_standard_onnx_and_padding_is_ignored(compiled):
    _, _, session, model, _ = compiled
    assert {o.domain for o in model.opset_import} == {""}
    assert {node.op_type for node in model.graph.node} & {"GRU", "LSTM"}
    rng = np.random.default_rng(1)
    static, seq = rng.normal(size=(4, STATIC)), rng.gamma(2.0, 5.0, (4, WEEKS, CHANNELS))
    mask = np.arange(WEEKS)[None, :] < np.array([[0], [1], [3], [6]])
    padded = np.where(mask[..., None], seq, 1e6)
    run = lambda s: session.run(None, {"static": static, "sequence": s, "mask": mask})[0]  # noqa: E731
    np.testing.assert_array_equal(run(seq), run(padded))


def test_a_batch_of_histories_of_different_lengths_answers_as_each_alone(compiled):
    from mlpipe.serving.history import HistorySchema

    _, _, session, _, _ = compiled
    schema = HistorySchema(("a", "b"), ("x", "y", "z"), WEEKS)
    rng = np.random.default_rng(2)
    records = [
        {"a": float(rng.normal()), "b": 1.0, "history": [{"x": 3.0, "y": None, "z": 1.0}] * length}
        for length in (0, 1, 4, WEEKS)
    ]
    together = session.run(None, schema.parse(records))[0]
    alone = np.concatenate([session.run(None, schema.parse([r]))[0] for r in records])
    np.testing.assert_allclose(together, alone, atol=1e-6, rtol=0)
