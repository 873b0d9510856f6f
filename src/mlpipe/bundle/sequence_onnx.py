"""The dual-branch early-warning network as one standard ONNX graph, raw weekly history in.

Inputs: ``static`` ``[N, S]`` and ``sequence`` ``[N, W, C]`` (double; a null channel value is NaN)
and ``mask`` ``[N, W]`` (bool, the observed weeks, a prefix). The graph applies
:func:`mlpipe.features.point_in_time.lower_history` (NaN as 0, ``log1p``, standardise, padded
weeks 0; the same definition numpy and the SavedModel run), then the network with ONNX's own
``GRU``/``LSTM`` operator (time-major, ``sequence_lens`` from the mask; no custom domain), and gives
``probability`` ``[N, 1]``.

Keras and ONNX write the same recurrences; only the weights' layout differs: kernels are
transposed, LSTM gates reordered from Keras' (i, f, c, o) to ONNX's (i, o, f, c), and a GRU with
``reset_after`` (Keras' default) is ONNX's ``linear_before_reset=1`` with both biases.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from mlpipe.bundle.onnx_graph import OPSET, DenseLayer, Graph, OnnxOps, Tensor, dense_nodes
from mlpipe.features.point_in_time import SequenceScale, lower_history

OUTPUT = "probability"


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
    """The graph for a trained :func:`mlpipe.training.sequence.build` network and its scale: the
    history lowered by :func:`mlpipe.features.point_in_time.lower_history` in ONNX nodes, then the
    recurrent branch, the static branch and the layers after the merge."""
    _, weeks, channels = network.inputs[1].shape
    n_static = network.inputs[0].shape[1]
    cell = next(layer for layer in network.layers if type(layer).__name__ in ("GRU", "LSTM"))
    op, (w, r, b), units = recurrent_weights(cell)
    graph = Graph()
    fixed, scaled = lower_history(
        OnnxOps(graph), Tensor(graph, "static"), Tensor(graph, "sequence"), Tensor(graph, "mask"), scale
    )
    time_major = graph.op("Transpose", [scaled.name], perm=[1, 0, 2])  # ONNX Runtime's layout
    mask = graph.op("Cast", ["mask"], to=TensorProto.INT32)
    lengths = graph.op("ReduceSum", [mask, graph.const([1], np.int64, "axes")], keepdims=0)
    weights = [graph.const(v, np.float32, k) for k, v in (("W", w), ("R", r), ("B", b))]
    state = "state"
    graph.nodes.append(
        helper.make_node(
            op,
            [time_major, *weights, lengths],
            ["", state],
            name=state,
            hidden_size=units,
            **({"linear_before_reset": 1} if op == "GRU" else {}),
        )
    )
    recurrent = graph.op("Reshape", [state, graph.const([-1, units], np.int64, "state_shape")])
    static = dense_nodes(graph, fixed.name, [layer(network, "static_dense", "relu")])
    merged = graph.op("Concat", [static, recurrent], axis=1)
    tail = [layer(network, "merged_dense", "relu"), layer(network, "probability", "sigmoid")]
    graph.nodes.append(
        helper.make_node("Identity", [dense_nodes(graph, merged, tail)], [OUTPUT], name=OUTPUT)
    )
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            name,
            [
                helper.make_tensor_value_info("static", TensorProto.DOUBLE, [None, n_static]),
                helper.make_tensor_value_info("sequence", TensorProto.DOUBLE, [None, weeks, channels]),
                helper.make_tensor_value_info("mask", TensorProto.BOOL, [None, weeks]),
            ],
            [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, 1])],
            initializer=graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    onnx.checker.check_model(model)
    return model


def layer(network: Any, name: str, activation: str) -> DenseLayer:
    """The Keras layer ``name``'s kernel and bias, with its activation."""
    kernel, bias = network.get_layer(name).get_weights()
    return DenseLayer(kernel, bias, activation)
