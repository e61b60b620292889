"""Write the ONNX seed for the `onnx` fuzz target: a 1x3x32x32 input through one of each op
the native engine imports (Conv, PRelu, MaxPool, Pad, Relu, Sigmoid, Add, Sub, Mul, Concat,
GlobalAveragePool, Transpose, Reshape, Shape/Slice/Constant). Ours, tiny, random weights.

    python3 crates/fuzz/make-onnx-seed.py crates/fuzz/corpus/onnx/ops.onnx \
        crates/fuzz/corpus/onnx/bad-nan-weight.onnx crates/fuzz/corpus/onnx/bad-huge-pads.onnx \
        crates/fuzz/corpus/onnx/bad-group-zero.onnx

(needs `onnx`). The others are the same model with one NaN weight, with a first Conv padded
by 2^40 cells, and with a first Conv in 0 groups: the engine must refuse them all.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(7)


def w(name, *shape):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, name)


inits = [w("w1", 4, 3, 3, 3), w("b1", 4), w("slope", 4, 1, 1), w("w2", 4, 4, 1, 1), w("w3", 4, 1, 3, 3)]
inits.append(numpy_helper.from_array(np.array([0, 1, 0, 0, 0, 1, 0, 0], dtype=np.int64), "pads"))
nodes = [
    helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
    helper.make_node("PRelu", ["c1", "slope"], ["p1"]),
    helper.make_node("Conv", ["p1", "w2"], ["c2"], kernel_shape=[1, 1]),
    helper.make_node("Conv", ["c2", "w3"], ["c3"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
    helper.make_node("Relu", ["c3"], ["r"]),
    helper.make_node("Sigmoid", ["c2"], ["s"]),
    helper.make_node("Add", ["r", "s"], ["a"]),
    helper.make_node("Sub", ["a", "s"], ["d"]),
    helper.make_node("Mul", ["d", "s"], ["m"]),
    helper.make_node("MaxPool", ["m"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
    helper.make_node("Pad", ["mp", "pads"], ["pd"], mode="constant"),
    helper.make_node("Concat", ["pd", "pd"], ["cat"], axis=1),
    helper.make_node("GlobalAveragePool", ["cat"], ["gap"]),
    helper.make_node("Add", ["cat", "gap"], ["y"]),
]
graph = helper.make_graph(
    nodes,
    "fuzz-seed",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 12, 8, 8])],
    inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
if len(sys.argv) > 2:
    w1 = numpy_helper.to_array(model.graph.initializer[0]).copy()
    w1[0, 0, 0, 0] = np.nan
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(w1, "w1"))
    onnx.save(model, sys.argv[2])
if len(sys.argv) > 3:
    model.graph.initializer[0].CopyFrom(inits[0])
    conv = model.graph.node[0]
    pads = next(a for a in conv.attribute if a.name == "pads")
    pads.ints[:] = [1 << 40] * 4
    onnx.save(model, sys.argv[3])
if len(sys.argv) > 4:
    pads.ints[:] = [1, 1, 1, 1]
    conv.attribute.append(helper.make_attribute("group", 0))
    onnx.save(model, sys.argv[4])
