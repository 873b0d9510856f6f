"""Compile the fitted preprocessor and the trained network into one ONNX graph: raw records in.

The graph has one input per raw column the preprocessor reads, shaped ``[N, 1]``: ``double`` for
numeric columns, ``string`` for categorical and cyclical ones. It computes exactly what
:func:`mlpipe.features.transform` computes, in the same order and precision (float64 until the
feature matrix is cast to float32), then the network's Dense layers, and outputs ``prediction``:
``[N, 1]`` for regression and binary classification (the last class's probability), ``[N, k]``
class probabilities for multiclass. Derived formulas go through
:func:`mlpipe.features.fold_expression`, the same tree walk that computes them in training. Only
standard ONNX operators are used (no custom domains), so the graph runs anywhere ONNX Runtime does
and nothing in it executes code on load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mlpipe import features
from mlpipe.errors import PipelineError

OPSET = 21
IR_VERSION = 10
OUTPUT = "prediction"
ACTIVATIONS = ("linear", "relu", "gelu", "tanh", "elu", "sigmoid", "softmax")
# ONNX operator for each activation that maps to one (linear: none; gelu and elu take attributes)
_ACTIVATION_OPS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}


@dataclass(frozen=True)
class DenseLayer:
    """One trained Dense layer: ``activation(x @ kernel + bias)``."""

    kernel: np.ndarray
    bias: np.ndarray
    activation: str


class _Graph:
    """Nodes and constants of the graph being built, named deterministically in creation order."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: Any, dtype: Any, hint: str = "const") -> str:
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs: Any) -> str:
        out = self._name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


class _Double:
    """A float64 tensor of the graph whose Python arithmetic adds graph nodes (for formulas)."""

    def __init__(self, graph: _Graph, name: str) -> None:
        self.graph, self.name = graph, name

    def _binary(self, op_type: str, other: Any, reverse: bool = False) -> _Double:
        other_name = other.name if isinstance(other, _Double) else self.graph.const(float(other), np.float64)
        left, right = (other_name, self.name) if reverse else (self.name, other_name)
        return _Double(self.graph, self.graph.op(op_type, [left, right]))

    def __add__(self, other: Any) -> _Double:
        return self._binary("Add", other)

    def __radd__(self, other: Any) -> _Double:
        return self._binary("Add", other, reverse=True)

    def __sub__(self, other: Any) -> _Double:
        return self._binary("Sub", other)

    def __rsub__(self, other: Any) -> _Double:
        return self._binary("Sub", other, reverse=True)

    def __mul__(self, other: Any) -> _Double:
        return self._binary("Mul", other)

    def __rmul__(self, other: Any) -> _Double:
        return self._binary("Mul", other, reverse=True)

    def __truediv__(self, other: Any) -> _Double:
        return self._binary("Div", other)

    def __rtruediv__(self, other: Any) -> _Double:
        return self._binary("Div", other, reverse=True)

    def __neg__(self) -> _Double:
        return _Double(self.graph, self.graph.op("Neg", [self.name]))

    def __pos__(self) -> _Double:
        return self


def _preprocessing(graph: _Graph, prep: features.Preprocessor) -> str:
    """Add :func:`mlpipe.features.transform` to the graph; return the float32 feature matrix.

    A missing value is NaN in a numeric input and ``""`` in a string input; where the preprocessor
    learned a fill value, it replaces them first, as in training.
    """
    text = set(prep.string_inputs)
    source = {}
    for c in prep.input_columns:
        if c not in prep.fill:
            source[c] = c
        elif c in text:
            missing = graph.op("Equal", [c, graph.const([[""]], np.str_)])
            source[c] = graph.op(
                "Where", [missing, graph.const([[str(prep.fill[c])]], np.str_), c], hint=f"{c}_filled"
            )
        else:
            fill = graph.const([[float(prep.fill[c])]], np.float64)
            source[c] = graph.op("Where", [graph.op("IsNaN", [c]), fill, c], hint=f"{c}_filled")
    columns = {c: _Double(graph, source[c]) for c in prep.input_columns if c not in text}
    values = [columns[name] for name in prep.numeric]
    for name, formula in prep.derived.items():
        value = features.fold_expression(name, formula, columns)
        if not isinstance(value, _Double):
            raise PipelineError(f"derived feature {name!r} = {formula} reads no column")
        values.append(value)
    names = [*prep.numeric, *prep.derived]
    blocks = []
    if values:
        stacked = graph.op("Concat", [v.name for v in values], axis=1)
        mean = graph.const([prep.mean[k] for k in names], np.float64, "mean")
        scale = graph.const([prep.scale[k] for k in names], np.float64, "scale")
        scaled = graph.op("Div", [graph.op("Sub", [stacked, mean]), scale])
        blocks.append(graph.op("Cast", [scaled], to=TensorProto.FLOAT))
    for name, spec in prep.cyclical.items():
        levels = list(spec["values"])
        hits = graph.op(
            "Cast",
            [graph.op("Equal", [source[name], graph.const([levels], np.str_, f"{name}_levels")])],
            to=TensorProto.DOUBLE,
        )
        positions = graph.const([[float(spec["values"][k])] for k in levels], np.float64, f"{name}_positions")
        ones = graph.const(np.ones((len(levels), 1)), np.float64)
        # hit-weighted sum over levels divided by the hit count: the level's position, NaN if unknown
        position = graph.op("Div", [graph.op("MatMul", [hits, positions]), graph.op("MatMul", [hits, ones])])
        angle = graph.op(
            "Div",
            [
                graph.op("Mul", [graph.const(2 * math.pi, np.float64), position]),
                graph.const(float(spec["period"]), np.float64),
            ],
        )
        pair = graph.op("Concat", [graph.op("Sin", [angle]), graph.op("Cos", [angle])], axis=1)
        blocks.append(graph.op("Cast", [pair], to=TensorProto.FLOAT))
    for name, levels in prep.categories.items():
        equal = graph.op("Equal", [source[name], graph.const([levels], np.str_, f"{name}_levels")])
        blocks.append(graph.op("Cast", [equal], to=TensorProto.FLOAT, hint=f"{name}_onehot"))
    return graph.op("Concat", blocks, axis=1, hint="features") if len(blocks) > 1 else blocks[0]


def _network(graph: _Graph, x: str, layers: list[DenseLayer]) -> str:
    for i, layer in enumerate(layers):
        if layer.activation not in ACTIVATIONS:
            raise PipelineError(f"layer {i}: activation {layer.activation!r} has no ONNX export")
        kernel = graph.const(layer.kernel, np.float32, f"kernel_{i}")
        bias = graph.const(layer.bias, np.float32, f"bias_{i}")
        x = graph.op("Add", [graph.op("MatMul", [x, kernel]), bias])
        if layer.activation in _ACTIVATION_OPS:
            x = graph.op(_ACTIVATION_OPS[layer.activation], [x])
        elif layer.activation == "softmax":
            x = graph.op("Softmax", [x], axis=-1)
        elif layer.activation == "elu":
            x = graph.op("Elu", [x], alpha=1.0)
        elif layer.activation == "gelu":
            x = graph.op("Gelu", [x], approximate="none")
    return x


def build(prep: features.Preprocessor, layers: list[DenseLayer], name: str) -> onnx.ModelProto:
    """The whole model as ONNX: raw columns in, ``prediction`` out.

    Args:
        prep: The fitted preprocessor.
        layers: The network's Dense layers, input to output; the last one's width is the output's.
        name: The graph's name (the model's name).

    Raises:
        PipelineError: if a layer's activation has no ONNX equivalent or the widths do not chain.
    """
    width = len(prep.feature_names)
    for i, layer in enumerate(layers):
        if layer.kernel.shape != (width, layer.bias.shape[0]):
            raise PipelineError(f"layer {i}: kernel {layer.kernel.shape} does not take {width} inputs")
        width = layer.bias.shape[0]
    graph = _Graph()
    text = set(prep.string_inputs)
    inputs = [
        helper.make_tensor_value_info(c, TensorProto.STRING if c in text else TensorProto.DOUBLE, ["N", 1])
        for c in prep.input_columns
    ]
    out = _network(graph, _preprocessing(graph, prep), layers)
    graph.nodes.append(helper.make_node("Identity", [out], [OUTPUT], name=OUTPUT))
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            name,
            inputs,
            [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", width])],
            initializer=graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="mlpipe",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    return model
