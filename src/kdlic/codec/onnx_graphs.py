"""The codec's transforms as ONNX graphs (dynamic image size), built layer by layer.

Three graphs, the ones a codec outside Python needs (docs/format.md, *ONNX export*); the
batch (1 below, the codec's) and image sizes are dynamic:

* ``analysis``: ``x`` (1, 3, H, W) float32 in [0, 1], H and W multiples of 64 ->
  ``y`` (1, M, H/16, W/16) and ``z`` (1, C, H/64, W/64) float32 (g_a, then h_a of
  ``|y|`` for the scale hyperprior, of ``y`` for the mean-scale one);
* ``hyper``: the **exact** fixed-point h_s of :mod:`kdlic.codec.fixedpoint`:
  ``z_fixed`` (1, C, h, w) float64 integers in units of ``2**-FRAC_BITS`` ->
  ``params_fixed`` (1, K, 4h, 4w), the same units (K = M scales, or M scales then M
  means). Every value is an integer below 2**53 in float64, so the result is the
  same in any runtime and summation order;
* ``synthesis``: ``y_hat`` (1, M, h, w) float32 -> ``pixels`` (1, 3, 16h, 16w) uint8
  (g_s, times 255, rounded half to even, clipped).

The graphs are written with :mod:`onnx.helper`, not traced: the layer vocabulary of
these models is small (Conv2d, ConvTranspose2d, GDN, ReLU, LeakyReLU), and a traced
graph would carry the training-time forms (GDN's re-parametrisation, transposed
convolutions with 3 outputs) that :mod:`kdlic.codec.synthesis` rewrites for speed. The
same rewrites are used here: frozen GDN parameters, thin transposed convolutions as a
convolution and a depth-to-space (sub-pixel form).

Why h_s is built from slices and matrix products: ONNX Runtime has no float64
convolution, and a float32 one would not be exact. A stride-1 convolution is the
concatenation of its k x k shifted inputs (channels last) times a (k*k*C_in, C_out)
matrix; a transposed one is first rewritten in sub-pixel form (its phases are
stride-1 convolutions) with the same integer weights.
"""

from __future__ import annotations

import numpy as np
import torch
from compressai.layers import GDN
from torch import nn

from kdlic.codec.fixedpoint import ACT_BITS, FRAC_BITS, FixedPointSequential, _Layer, _LeakyReLU
from kdlic.codec.synthesis import FrozenGDN, SubPixelConv

OPSET = 17
INT64_MAX = np.iinfo(np.int64).max


def _onnx():
    try:
        import onnx
    except ImportError as exc:  # the optional extra
        from kdlic.errors import KdlicError

        raise KdlicError("ONNX export needs the export extra: pip install 'kdlic[export]'") from exc
    return onnx


class GraphBuilder:
    """Nodes and constants of one graph, with unique names."""

    def __init__(self) -> None:
        self.onnx = _onnx()
        self.nodes: list = []
        self.inits: list = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: np.ndarray | float, hint: str = "c", dtype=np.float32) -> str:
        name = self.name(hint)
        array = np.asarray(value, dtype=dtype)
        self.inits.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def model(self, inputs: list[tuple[str, int, list]], outputs: list[tuple[str, int, list]],
              name: str, doc: str = ""):
        helper = self.onnx.helper
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
            [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
            self.inits, doc_string=doc)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="kdlic")
        self.onnx.checker.check_model(model)
        return model

    def rename(self, tensor: str, name: str) -> None:
        """Make the graph's tensor ``tensor`` available as ``name`` (an output)."""
        self.nodes.append(self.onnx.helper.make_node("Identity", [tensor], [name]))


def _array(t: torch.Tensor, dtype=np.float32) -> np.ndarray:
    return t.detach().cpu().double().numpy().astype(dtype)


# -- float transforms -----------------------------------------------------------------
def _float_layers(g: GraphBuilder, x: str, layers: nn.Sequential) -> str:
    """The layers in float32. Transposed convolutions go in sub-pixel form whatever their
    width: ONNX Runtime's ConvTranspose is slower than a Conv and a DepthToSpace here, and
    its quantiser quantises Conv nodes only."""
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            x = _conv(g, x, layer.weight, layer.bias, layer.stride, layer.padding,
                      layer.padding, layer.groups, layer.dilation, layer.padding_mode)
        elif isinstance(layer, nn.ConvTranspose2d) and SubPixelConv.applies(layer, None):
            sub = SubPixelConv(layer)
            before, after = sub.pad
            x = _conv(g, x, sub.weight, sub.bias, (1, 1), (before, before), (after, after))
            x = g.op("DepthToSpace", [x], blocksize=sub.stride, mode="CRD")
        elif isinstance(layer, nn.ConvTranspose2d):
            if layer.groups != 1 or tuple(layer.dilation) != (1, 1):
                raise ValueError("grouped or dilated transposed convolutions are not exported")
            p, op = list(layer.padding), list(layer.output_padding)
            inputs = [x, g.const(_array(layer.weight))]
            if layer.bias is not None:
                inputs.append(g.const(_array(layer.bias)))
            x = g.op("ConvTranspose", inputs, strides=list(layer.stride), pads=p + p,
                     output_padding=op, kernel_shape=list(layer.kernel_size))
        elif isinstance(layer, GDN):
            x = _gdn(g, x, FrozenGDN(layer))
        elif isinstance(layer, nn.ReLU):
            x = g.op("Relu", [x])
        elif isinstance(layer, nn.LeakyReLU):
            x = g.op("LeakyRelu", [x], alpha=float(layer.negative_slope))
        elif not isinstance(layer, nn.Identity):
            raise ValueError(f"cannot export a {type(layer).__name__} layer to ONNX")
    return x


def _conv(g: GraphBuilder, x: str, weight, bias, stride, before, after, groups=1,
          dilation=(1, 1), padding_mode="zeros", hint: str = "conv") -> str:
    if groups != 1 or tuple(dilation) != (1, 1) or padding_mode != "zeros":
        raise ValueError("grouped, dilated or non-zero-padded convolutions are not exported")
    inputs = [x, g.const(_array(weight))]
    if bias is not None:
        inputs.append(g.const(_array(bias)))
    return g.op("Conv", inputs, hint, strides=list(stride),
                kernel_shape=list(weight.shape[2:]), pads=[*before, *after])


def _gdn(g: GraphBuilder, x: str, gdn: FrozenGDN) -> str:
    """``x * sqrt(beta + gamma @ x**2)`` (inverse) or ``x / sqrt(...)`` per pixel."""
    gamma = gdn.gamma_t.t()  # (C_out, C_in)
    norm = _conv(g, g.op("Mul", [x, x]), gamma[:, :, None, None], gdn.beta, (1, 1),
                 (0, 0), (0, 0), hint="gdn")  # named: the int8 quantiser leaves it float
    norm = g.op("Sqrt", [norm])
    return g.op("Mul" if gdn.inverse else "Div", [x, norm])


def analysis_graph(model: nn.Module, mean_scale: bool):
    """g_a and h_a: ``x`` -> ``y``, ``z`` (float32, see the module docstring)."""
    g = GraphBuilder()
    f32 = g.onnx.TensorProto.FLOAT
    y = _float_layers(g, "x", model.g_a)
    z = _float_layers(g, y if mean_scale else g.op("Abs", [y]), model.h_a)
    g.rename(y, "y")
    g.rename(z, "z")
    return g.model([("x", f32, ["B", 3, "H", "W"])],
                   [("y", f32, ["B", int(model.M), "h", "w"]),
                    ("z", f32, ["B", int(model.entropy_bottleneck.channels), "zh", "zw"])],
                   "analysis", "kdlic analysis transform: g_a, h_a")


def synthesis_graph(g_s: nn.Sequential, y_channels: int):
    """g_s: ``y_hat`` -> ``pixels`` uint8 (1, 3, 16h, 16w)."""
    g = GraphBuilder()
    x = _float_layers(g, "y_hat", g_s)
    x = g.op("Round", [g.op("Mul", [x, g.const(255.0)])])
    x = g.op("Clip", [x, g.const(0.0), g.const(255.0)])
    g.nodes.append(g.onnx.helper.make_node("Cast", [x], ["pixels"],
                                           to=g.onnx.TensorProto.UINT8))
    return g.model([("y_hat", g.onnx.TensorProto.FLOAT, ["B", y_channels, "h", "w"])],
                   [("pixels", g.onnx.TensorProto.UINT8, ["B", 3, "H", "W"])],
                   "synthesis", "kdlic synthesis transform g_s, 8-bit output")


# -- the exact fixed-point h_s -----------------------------------------------------------
def hyper_graph(h_s: nn.Sequential, z_channels: int):
    """The fixed-point h_s (:class:`FixedPointSequential`) as a float64 graph."""
    fixed = FixedPointSequential(h_s)
    g = GraphBuilder()
    f64 = g.onnx.TensorProto.DOUBLE
    limit = float(2**ACT_BITS - 1)
    lo, hi = g.const(-limit, dtype=np.float64), g.const(limit, dtype=np.float64)
    x = g.op("Clip", ["z_fixed", lo, hi])
    for op in fixed.ops:
        if op == "relu":
            x = g.op("Max", [x, g.const(0.0, dtype=np.float64)])
        elif isinstance(op, _LeakyReLU):
            negative = g.op("Less", [x, g.const(0.0, dtype=np.float64)])
            scaled = g.op("Mul", [x, g.const(op.slope, dtype=np.float64)])
            scaled = g.op("Floor", [g.op("Add", [scaled, g.const(0.5, dtype=np.float64)])])
            x = g.op("Where", [negative, scaled, x])
        else:
            x = _fixed_layer(g, x, op)
        x = g.op("Clip", [x, lo, hi])
    g.rename(x, "params_fixed")
    return g.model([("z_fixed", f64, ["B", z_channels, "h", "w"])],
                   [("params_fixed", f64, ["B", fixed.out_channels, "H", "W"])],
                   "hyper", f"kdlic exact fixed-point h_s (units of 2**-{FRAC_BITS}, float64)")


def _fixed_layer(g: GraphBuilder, x: str, layer: _Layer) -> str:
    """One exact layer: integer-weight convolution, then ``floor((acc + b) * 2**-e + 1/2)``."""
    weight = layer.weight.cpu()
    stride = 1
    if layer.transposed:  # sub-pixel form: phases of a stride-1 convolution
        conv = nn.ConvTranspose2d(weight.shape[0], weight.shape[1], tuple(weight.shape[2:]),
                                  layer.stride, layer.padding, layer.output_padding,
                                  bias=False).double()
        if not SubPixelConv.applies(conv, max_channels=None):
            raise ValueError("the fixed-point h_s graph needs transposed convolutions whose "
                             "output is stride x input")
        conv.weight.data.copy_(weight)
        sub = SubPixelConv(conv)
        weight, pad, stride = sub.weight, sub.pad, sub.stride
    else:
        if layer.stride != (1, 1) or layer.padding[0] != layer.padding[1]:
            raise ValueError("the fixed-point h_s graph needs stride-1 convolutions")
        pad = (layer.padding[0], layer.padding[0])
    acc = _exact_conv(g, x, weight.numpy(), pad)
    if stride > 1:
        acc = g.op("DepthToSpace", [acc], blocksize=stride, mode="CRD")
    bias = layer.bias.cpu().numpy().astype(np.float64)  # (1, C, 1, 1)
    rescale = layer.rescale.cpu().numpy().astype(np.float64)
    x = g.op("Mul", [g.op("Add", [acc, g.const(bias, dtype=np.float64)]),
                     g.const(rescale, dtype=np.float64)])
    return g.op("Floor", [g.op("Add", [x, g.const(0.5, dtype=np.float64)])])


def _exact_conv(g: GraphBuilder, x: str, weight: np.ndarray, pad: tuple[int, int]) -> str:
    """Stride-1 correlation of ``x`` (1, C_in, H, W) float64 with integer ``weight``
    (C_out, C_in, k, k): channels-last shifted copies, concatenated, times one matrix."""
    c_out, c_in, k, _ = weight.shape
    before, after = pad
    nhwc = g.op("Transpose", [x], perm=[0, 2, 3, 1])
    padded = g.op("Pad", [nhwc, g.const([0, before, before, 0, 0, after, after, 0],
                                        dtype=np.int64)])
    axes = g.const([1, 2], dtype=np.int64)
    taps = []
    for dy in range(k):
        for dx in range(k):
            # output size = padded - (k - 1): each shift drops k - 1 rows/columns
            ends = [-(k - 1 - d) if d < k - 1 else INT64_MAX for d in (dy, dx)]
            taps.append(g.op("Slice", [padded, g.const([dy, dx], dtype=np.int64),
                                       g.const(ends, dtype=np.int64), axes]))
    columns = g.op("Concat", taps, axis=3) if len(taps) > 1 else taps[0]
    matrix = weight.transpose(2, 3, 1, 0).reshape(k * k * c_in, c_out)
    acc = g.op("MatMul", [columns, g.const(matrix, dtype=np.float64)])
    return g.op("Transpose", [acc], perm=[0, 3, 1, 2])
