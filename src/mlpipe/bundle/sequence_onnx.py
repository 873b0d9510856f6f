"""The dual-branch early-warning network as one standard ONNX graph, raw weekly history in.

Inputs: ``static`` ``[N, S]`` and ``sequence`` ``[N, W, C]`` (double; a null channel value is NaN)
and ``mask`` ``[N, W]`` (bool, the observed weeks, a prefix). The graph applies
:class:`mlpipe.features.point_in_time.SequenceScale` (NaN as 0, ``log1p``, standardise, padded weeks 0),
then the network with ONNX's own ``GRU``/``LSTM`` operator (time-major, ``sequence_lens`` from the
mask; no custom domain), and gives ``probability`` ``[N, 1]``.

Keras and ONNX write the same recurrences; only the weights' layout differs: kernels are
transposed, LSTM gates reordered from Keras' (i, f, c, o) to ONNX's (i, o, f, c), and a GRU with
``reset_after`` (Keras' default) is ONNX's ``linear_before_reset=1`` with both biases.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mlpipe.features.point_in_time import SequenceScale

OPSET = 21


def recurrent_weights(layer: Any) -> tuple[str, list[np.ndarray], int]:
    """The ONNX operator, its ``W``, ``R``, ``B`` (with the direction axis) and hidden size."""
    kind = type(layer).__name__
    weights = layer.get_weights()
    units = layer.units
    if kind == "GRU":
        kernel, recurrent, bias = weights
        bias = bias.reshape(-1) if bias.ndim == 2 else np.r_[bias, np.zeros_like(bias)]
        return "GRU", [kernel.T[None], recurrent.T[None], bias[None]], units
    if kind == "LSTM":
        kernel, recurrent, bias = weights
        order = [0, 3, 1, 2]  # Keras i, f, c, o -> ONNX i, o, f, c
        pick = lambda m: np.concatenate([m[..., g * units : (g + 1) * units] for g in order], axis=-1)  # noqa: E731
        onnx_bias = np.r_[pick(bias), np.zeros(4 * units, bias.dtype)]
        return "LSTM", [pick(kernel).T[None], pick(recurrent).T[None], onnx_bias[None]], units
    raise ValueError(f"no ONNX form for a {kind} layer")


def build(network: Any, scale: SequenceScale, name: str = "early_warning") -> onnx.ModelProto:
    """The graph for a trained :func:`mlpipe.training.sequence.build` network and its scale."""
    _, weeks, channels = network.inputs[1].shape
    n_static = network.inputs[0].shape[1]
    cell = next(layer for layer in network.layers if type(layer).__name__ in ("GRU", "LSTM"))
    op, (w, r, b), units = recurrent_weights(cell)
    consts = {
        "channel_mean": scale.channel_mean,
        "channel_std": scale.channel_std,
        "static_mean": scale.static_mean,
        "static_std": scale.static_std,
        "W": w,
        "R": r,
        "B": b,
        "zero": np.zeros(1),
        "one": np.ones(1),
        "state_shape": np.array([-1, units], np.int64),
    }
    for layer in ("static_dense", "merged_dense", "probability"):
        kernel, bias = network.get_layer(layer).get_weights()
        consts[f"{layer}_kernel"], consts[f"{layer}_bias"] = kernel, bias
    initializers = [
        numpy_helper.from_array(np.asarray(v, np.int64 if k == "state_shape" else np.float32), k)
        for k, v in consts.items()
    ]
    nodes = scoring_nodes(op, units)
    initializers += [
        numpy_helper.from_array(np.array([2], np.int64), "axis_two"),
        numpy_helper.from_array(np.array([1], np.int64), "axis_one"),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info("static", TensorProto.DOUBLE, [None, n_static]),
            helper.make_tensor_value_info("sequence", TensorProto.DOUBLE, [None, weeks, channels]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, [None, weeks]),
        ],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [None, 1])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


def scoring_nodes(op: str, units: int) -> list[onnx.NodeProto]:
    """Scale the history and the static row, run the recurrent branch and the dense layers."""
    n = helper.make_node
    return [
        n("Cast", ["sequence"], ["seq_f"], to=TensorProto.FLOAT),
        n("IsNaN", ["seq_f"], ["seq_nan"]),
        n("Where", ["seq_nan", "zero", "seq_f"], ["seq_filled"]),
        n("Max", ["seq_filled", "zero"], ["seq_pos"]),
        n("Add", ["seq_pos", "one"], ["seq_plus"]),
        n("Log", ["seq_plus"], ["seq_log"]),
        n("Sub", ["seq_log", "channel_mean"], ["seq_centred"]),
        n("Div", ["seq_centred", "channel_std"], ["seq_scaled"]),
        n("Unsqueeze", ["mask", "axis_two"], ["mask_3d"]),
        n("Where", ["mask_3d", "seq_scaled", "zero"], ["seq_masked"]),
        n("Transpose", ["seq_masked"], ["seq_in"], perm=[1, 0, 2]),  # time-major: ONNX Runtime's layout
        n("Cast", ["mask"], ["mask_int"], to=TensorProto.INT32),
        n("ReduceSum", ["mask_int", "axis_one"], ["lengths"], keepdims=0),
        n(
            op,
            ["seq_in", "W", "R", "B", "lengths"],
            ["", "state"],
            hidden_size=units,
            **({"linear_before_reset": 1} if op == "GRU" else {}),
        ),
        n("Reshape", ["state", "state_shape"], ["recurrent"]),
        n("Cast", ["static"], ["static_f"], to=TensorProto.FLOAT),
        n("Sub", ["static_f", "static_mean"], ["static_centred"]),
        n("Div", ["static_centred", "static_std"], ["static_scaled"]),
        *dense("static_scaled", "static_dense", "Relu"),
        n("Concat", ["static_dense", "recurrent"], ["merged"], axis=1),
        *dense("merged", "merged_dense", "Relu"),
        *dense("merged_dense", "probability", "Sigmoid"),
    ]


def dense(source: str, layer: str, activation: str) -> list[onnx.NodeProto]:
    """``activation(source @ kernel + bias)`` for the Keras layer ``layer``; its output is named so."""
    return [
        helper.make_node("MatMul", [source, f"{layer}_kernel"], [f"{layer}_product"]),
        helper.make_node("Add", [f"{layer}_product", f"{layer}_bias"], [f"{layer}_linear"]),
        helper.make_node(activation, [f"{layer}_linear"], [layer]),
    ]
