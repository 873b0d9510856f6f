"""Compile the fitted preprocessor and the trained network into one ONNX graph: raw records in.

The graph has one input per raw column the preprocessor reads, shaped ``[N, 1]``: ``double`` for
numeric columns, ``string`` for categorical and cyclical ones. The preprocessing is the feature
plan lowered by :func:`mlpipe.features.plan.lower`, the walk that
:func:`mlpipe.features.preprocessor.transform` runs with
numpy, here with ONNX nodes (:class:`OnnxOps`): the same operations in the same order and precision
(float64 until the feature matrix is cast to float32). Then the network's Dense layers, and the
output ``prediction``: ``[N, 1]`` for regression and binary classification (the last class's
probability), ``[N, k]`` class probabilities for multiclass; NaN for a row the plan refuses. Only
standard ONNX operators are used (no custom domains), so the graph runs anywhere ONNX Runtime does
and nothing in it executes code on load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mlpipe.core.errors import PipelineError
from mlpipe.features import formulas, plan, preprocessor

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


class Graph:
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


class Tensor:
    """A tensor of the graph whose Python arithmetic adds graph nodes (formulas and scaling)."""

    def __init__(self, graph: Graph, name: str) -> None:
        self.graph, self.name = graph, name

    def _binary(self, op_type: str, other: Any, reverse: bool = False) -> Tensor:
        other_name = other.name if isinstance(other, Tensor) else self.graph.const(float(other), np.float64)
        left, right = (other_name, self.name) if reverse else (self.name, other_name)
        return Tensor(self.graph, self.graph.op(op_type, [left, right]))

    def __add__(self, other: Any) -> Tensor:
        return self._binary("Add", other)

    def __radd__(self, other: Any) -> Tensor:
        return self._binary("Add", other, reverse=True)

    def __sub__(self, other: Any) -> Tensor:
        return self._binary("Sub", other)

    def __rsub__(self, other: Any) -> Tensor:
        return self._binary("Sub", other, reverse=True)

    def __mul__(self, other: Any) -> Tensor:
        return self._binary("Mul", other)

    def __rmul__(self, other: Any) -> Tensor:
        return self._binary("Mul", other, reverse=True)

    def __truediv__(self, other: Any) -> Tensor:
        return self._binary("Div", other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return self._binary("Div", other, reverse=True)

    def __neg__(self) -> Tensor:
        return Tensor(self.graph, self.graph.op("Neg", [self.name]))

    def __pos__(self) -> Tensor:
        return self


class OnnxOps:
    """The feature plan's primitives (:class:`mlpipe.features.plan.Ops`) as ONNX nodes."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def _op(self, op_type: str, *inputs: Tensor, **attrs: Any) -> Tensor:
        return Tensor(self.graph, self.graph.op(op_type, [t.name for t in inputs], **attrs))

    def const(self, value: Any, dtype: str) -> Tensor:
        return Tensor(self.graph, self.graph.const(value, np.str_ if dtype == "string" else np.float64))

    def is_nan(self, x: Tensor) -> Tensor:
        return self._op("IsNaN", x)

    def _axis_1(self) -> Tensor:
        return Tensor(self.graph, self.graph.const([1], np.int64, "axes"))

    def not_finite(self, x: Tensor) -> Tensor:
        return self._op("IsNaN", x - x)  # x - x is 0 where x is finite, NaN where it is NaN or inf

    def equal(self, x: Tensor, y: Tensor) -> Tensor:
        return self._op("Equal", x, y)

    def any_row(self, x: Tensor) -> Tensor:
        as_number = self._op("Cast", x, to=TensorProto.FLOAT)
        most = self._op("ReduceMax", as_number, self._axis_1(), keepdims=1)
        return self._op("Cast", most, to=TensorProto.BOOL)

    def where(self, condition: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return self._op("Where", condition, x, y)

    def as_float64(self, x: Tensor) -> Tensor:
        return self._op("Cast", x, to=TensorProto.DOUBLE)

    def as_float32(self, x: Tensor) -> Tensor:
        return self._op("Cast", x, to=TensorProto.FLOAT)

    def matmul(self, x: Tensor, y: Tensor) -> Tensor:
        return self._op("MatMul", x, y)

    def sin(self, x: Tensor) -> Tensor:
        return self._op("Sin", x)

    def cos(self, x: Tensor) -> Tensor:
        return self._op("Cos", x)

    def concat(self, parts: list[Tensor]) -> Tensor:
        return self._op("Concat", *parts, axis=1)

    def log1p(self, x: Tensor) -> Tensor:
        return self._op("Log", x + 1.0)

    def maximum(self, x: Tensor, y: Tensor) -> Tensor:
        return self._op("Max", x, y)

    def expand_last(self, x: Tensor) -> Tensor:
        return self._op("Unsqueeze", x, Tensor(self.graph, self.graph.const([-1], np.int64, "axes")))


def dense_nodes(graph: Graph, x: str, layers: list[DenseLayer]) -> str:
    """The Dense layers applied to ``x``: their nodes added to ``graph``; the output's name."""
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


def build(prep: preprocessor.Preprocessor, layers: list[DenseLayer], name: str) -> onnx.ModelProto:
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
    graph = Graph()
    text = set(prep.string_inputs)
    inputs = [
        helper.make_tensor_value_info(c, TensorProto.STRING if c in text else TensorProto.DOUBLE, ["N", 1])
        for c in prep.input_columns
    ]
    ops = OnnxOps(graph)
    feature_plan = preprocessor.plan_of(prep)
    lowered = plan.lower(
        feature_plan,
        ops,
        {i.name: Tensor(graph, i.name) for i in feature_plan.inputs},
        formulas.fold,
    )
    out = dense_nodes(graph, lowered.features.name, layers)
    refused = plan.refused_rows(lowered, ops)
    if refused is not None:  # a refused row's output is NaN, as the plan says
        nan = graph.const([[np.nan]], np.float32, "refused")
        out = graph.op("Where", [refused.name, nan, out])
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
