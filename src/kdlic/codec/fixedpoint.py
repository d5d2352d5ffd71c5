"""Exact fixed-point evaluation of the hyper-synthesis ``h_s`` (table selection).

Encoder and decoder both run ``h_s`` on the decoded hyper-latent to pick, for every
latent element, one of 64 Gaussian tables. In floating point the result depends on
the summation order of each convolution (thread count, SIMD width, CPU vs GPU
algorithms): a scale that lands within rounding error of a table threshold picks a
different table on the decoder, and the rANS stream decodes to garbage from there.

Here every value is an integer carried in float64, and every operation is exact or a
single correctly-rounded IEEE operation, so the result is the same on any platform:

* weights ``W`` become ``rint(W * 2**e_c)`` with a power-of-two scale per output
  channel chosen so that ``|W_int| <= 2**wbits``; biases ``rint(b * 2**(F + e_c))``;
* activations (and the input ``z_hat``) are integers in units of ``2**-F``
  (``F = FRAC_BITS``), clamped to ``|a| < 2**ACT_BITS``;
* a convolution output is a sum of ``K = C_in * k_h * k_w`` (at most) products.
  ``wbits = 52 - ACT_BITS - ceil(log2 K)`` so every product and every partial sum is
  an integer of magnitude ``<= K * 2**ACT_BITS * 2**wbits <= 2**52``; bias added:
  ``< 2**53``. Integers below ``2**53`` are exact in float64, so the convolution is
  computed exactly *in any summation order*: BLAS blocking, threads, FMA, GPU
  kernels cannot change it (cuDNN is switched off for these calls so no FFT or
  Winograd algorithm, which would not be a plain sum of products, is picked);
* after each layer: ``floor(acc * 2**-e_c + 1/2)`` (exact scaling, one rounding)
  brings the result back to units of ``2**-F``; ReLU and the clamp are exact;
* LeakyReLU (the mean-scale hyperprior's h_s) uses its slope rounded to a dyadic
  rational ``k / 2**SLOPE_BITS`` (``k = rint(slope * 2**SLOPE_BITS)``; 0.01 becomes
  10486 / 2**20, 5e-5 relative error) and maps a negative ``a`` to
  ``floor(a * (k / 2**SLOPE_BITS) + 1/2)``. ``|a * k| < 2**26 * 2**26``, so the product
  is exact, and so are the power-of-two scaling and the ``+ 1/2`` (the sum is a
  multiple of ``2**-SLOPE_BITS`` below ``2**33``): the floor is the only rounding, and an
  element-wise op has no summation order to depend on.

Output channels: the last layer computes only the channels asked for (``channels``),
so a decoder asks for the scales of the coded latent channels only; the mean-scale
hyperprior's h_s has ``2 M`` outputs, scales ``0..M-1`` then means ``M..2M-1``
(CompressAI's ``gaussian_params.chunk(2, 1)``), and both are read from one call.

A scale is then compared with integer thresholds ``floor(s_i * 2**F)`` of the
scale table: ``scale > s_i  <=>  q > floor(s_i * 2**F)`` for an integer ``q``. A
mean ``q`` is the real number ``q * 2**-F``, exact in float64 (``|q| < 2**26``).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

FRAC_BITS = 12  # activations in units of 2**-12
ACT_BITS = 26  # |activation| < 2**26 units, i.e. < 16384
ACC_BITS = 52  # |sum of products| <= 2**52; + |bias| <= 2**51 stays below 2**53
BIAS_LIMIT = 2.0**51
MIN_WEIGHT_BITS = 8
SLOPE_BITS = 20  # LeakyReLU slopes as k / 2**20
MAX_SLOPE = 2.0**(ACC_BITS - ACT_BITS - SLOPE_BITS)  # |k| <= 2**26: |a * k| <= 2**52
_LIMIT = float(2**ACT_BITS - 1)  # activations are clamped to +-_LIMIT after every op


class _Layer:
    def __init__(self, mod: nn.Module, device: torch.device) -> None:
        self.transposed = isinstance(mod, nn.ConvTranspose2d)
        if mod.groups != 1 or tuple(mod.dilation) != (1, 1) or mod.padding_mode != "zeros":
            raise ValueError("fixed-point h_s supports plain convolutions only")
        w = mod.weight.detach().float().cpu().double()
        out_dim = 1 if self.transposed else 0
        c_in = w.shape[0] if self.transposed else w.shape[1]
        k = c_in * w.shape[2] * w.shape[3]
        self.weight_bits = ACC_BITS - ACT_BITS - (k - 1).bit_length()
        if self.weight_bits < MIN_WEIGHT_BITS:
            raise ValueError(f"layer too wide for exact fixed point ({k} terms per output)")
        amax = w.abs().amax(dim=[d for d in range(4) if d != out_dim]).tolist()
        # |W| * 2**e < 2**weight_bits, with e from the binary exponent of max |W|
        exps = [self.weight_bits - math.frexp(m)[1] if m > 0 else 0 for m in amax]
        shape = [1, 1, 1, 1]
        shape[out_dim] = -1
        scale = torch.tensor([math.ldexp(1.0, e) for e in exps], dtype=torch.float64)
        self.weight = torch.round(w * scale.view(shape)).to(device)
        b = (mod.bias.detach().float().cpu().double() if mod.bias is not None
             else torch.zeros(len(exps), dtype=torch.float64))
        bias_scale = torch.tensor([math.ldexp(1.0, FRAC_BITS + e) for e in exps],
                                  dtype=torch.float64)
        self.bias = torch.round(b * bias_scale).clamp(-BIAS_LIMIT, BIAS_LIMIT)
        self.bias = self.bias.view(1, -1, 1, 1).to(device)
        self.rescale = torch.tensor([math.ldexp(1.0, -e) for e in exps],
                                    dtype=torch.float64).view(1, -1, 1, 1).to(device)
        self.stride, self.padding = tuple(mod.stride), tuple(mod.padding)
        self.output_padding = tuple(getattr(mod, "output_padding", (0, 0)))

    def __call__(self, x: Tensor, channels: Tensor | None = None, out: Tensor | None = None
                 ) -> Tensor:
        """The layer on ``x``; only output ``channels`` when given; into ``out`` when given
        (the same ops in the same order either way)."""
        weight, bias, rescale = self.weight, self.bias, self.rescale
        if channels is not None:  # only these output channels
            weight = weight.index_select(1 if self.transposed else 0, channels)
            bias, rescale = bias.index_select(1, channels), rescale.index_select(1, channels)
        if self.transposed:
            acc = F.conv_transpose2d(x, weight, None, self.stride, self.padding,
                                     self.output_padding)
        else:
            acc = F.conv2d(x, weight, None, self.stride, self.padding)
        return torch.floor(acc.add_(bias).mul_(rescale).add_(0.5), out=out)

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        """The output's spatial size for an input of ``height`` x ``width``."""
        k = self.weight.shape[2:]
        if self.transposed:
            return tuple((n - 1) * s - 2 * p + k_ + o for n, s, p, k_, o in zip(
                (height, width), self.stride, self.padding, k, self.output_padding, strict=True))
        return tuple((n + 2 * p - k_) // s + 1 for n, s, p, k_ in zip(
            (height, width), self.stride, self.padding, k, strict=True))


class _LeakyReLU:
    """LeakyReLU on integers in units of ``2**-F``, exactly (see the module docstring):
    ``a`` for ``a >= 0``, else ``floor(a * k / 2**SLOPE_BITS + 1/2)``."""

    def __init__(self, slope: float) -> None:
        k = round(float(slope) * 2**SLOPE_BITS)  # round half to even, like rint
        if not abs(k) <= MAX_SLOPE * 2**SLOPE_BITS:
            raise ValueError(f"LeakyReLU slope {slope} is too large for exact fixed point")
        self.slope = math.ldexp(float(k), -SLOPE_BITS)  # k / 2**20, exact in float64

    def __call__(self, x: Tensor) -> Tensor:
        return torch.where(x < 0, torch.floor(x * self.slope + 0.5), x)


class FixedPointSequential:
    """An ``nn.Sequential`` of Conv2d / ConvTranspose2d / ReLU / LeakyReLU, evaluated
    exactly.

    Inputs and outputs are float64 tensors of integers in units of ``2**-FRAC_BITS``;
    ``out_channels`` is the last layer's channel count.
    """

    def __init__(self, seq: nn.Sequential, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.ops: list[_Layer | _LeakyReLU | str] = []
        for mod in seq:
            if isinstance(mod, nn.ReLU):
                self.ops.append("relu")
            elif isinstance(mod, nn.LeakyReLU):
                self.ops.append(_LeakyReLU(mod.negative_slope))
            elif isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                self.ops.append(_Layer(mod, self.device))
            else:
                raise ValueError(f"fixed-point h_s cannot run {type(mod).__name__}")
        layers = [i for i, op in enumerate(self.ops) if isinstance(op, _Layer)]
        if not layers:
            raise ValueError("fixed-point h_s needs at least one convolution")
        self._last = layers[-1]
        self.out_channels = int(self.ops[self._last].bias.shape[1])

    @torch.no_grad()
    def __call__(self, x: Tensor, channels: Tensor | None = None) -> Tensor:
        """Run the layers on ``x`` (B, C, h, w); ``channels``: compute only these output
        channels of the last layer (int64, in this order)."""
        return self.tail(self.head(x), channels)

    @torch.no_grad()
    def head(self, x: Tensor) -> Tensor:
        """The layers before the last convolution, on ``x`` (B, C, h, w)."""
        x = x.to(self.device, torch.float64).clamp(-_LIMIT, _LIMIT)
        with self._exact():
            for op in self.ops[: self._last]:
                x = self._run(op, x)
        return x

    @torch.no_grad()
    def tail(self, x: Tensor, channels: Tensor | None = None, out: Tensor | None = None
             ) -> Tensor:
        """The last convolution (only ``channels`` when given) and what follows it, on
        :meth:`head`'s output; written into ``out`` when given (float64, contiguous,
        shaped as the result: see :meth:`out_shape`), so that several threads can each
        compute some channels of one result."""
        if channels is not None:
            channels = channels.to(self.device)
        with self._exact():
            x = self.ops[self._last](x, channels, out).clamp_(-_LIMIT, _LIMIT)
            for op in self.ops[self._last + 1 :]:
                x = self._run(op, x)
        if out is not None and x is not out:  # (an op after the last layer made a copy)
            x = out.copy_(x)
        return x

    def out_shape(self, head: Tensor, channels: int) -> tuple[int, ...]:
        """The shape of :meth:`tail`'s result with ``channels`` output channels."""
        return (head.shape[0], channels, *self.ops[self._last].out_size(*head.shape[2:]))

    @staticmethod
    def _run(op: _Layer | _LeakyReLU | str, x: Tensor) -> Tensor:
        if op == "relu":
            return x.clamp_(min=0.0)
        return op(x).clamp_(-_LIMIT, _LIMIT)  # (a LeakyReLU slope above 1 can leave it)

    def _exact(self) -> contextlib.AbstractContextManager:
        # cuDNN off on CUDA (no FFT/Winograd algorithms); the flags are process-global, so
        # CPU calls, which may run on several threads at once, leave them alone
        return (torch.backends.cudnn.flags(enabled=False) if self.device.type == "cuda"
                else contextlib.nullcontext())


class TableSelector:
    """Picks the Gaussian table of each scale with exact integer comparisons.

    Index = how many thresholds ``T_i = floor(s_i * 2**F)`` (all but the last
    scale-table entry) the fixed-point scale ``q`` exceeds. This matches CompressAI's
    ``build_indexes`` (``scale <= s_i`` lowers the index; scales below the first entry
    use table 0), on integers: ``q / 2**F > s_i  <=>  q > T_i``.

    Fast: one lookup per element in a byte table of every ``q`` from 0 to just above
    the last threshold (about 1 MB for CompressAI's scale table); larger scales take
    the last table.
    """

    def __init__(self, scale_table, device: str | torch.device = "cpu") -> None:
        thresholds = scale_thresholds(scale_table)
        if any(b <= a for a, b in zip(thresholds, thresholds[1:], strict=False)):
            raise ValueError("scale table entries must increase and be at least 2**-F apart")
        if len(thresholds) > 255:
            raise ValueError("more than 256 scale tables")
        if thresholds[0] < 0:
            raise ValueError("scale table entries must be positive")
        self.top = thresholds[-1] + 1  # any scale above the last threshold: last table
        # table i for q in (T_{i-1}, T_i] (table 0 from q = 0): runs of equal bytes
        bounds = torch.tensor([-1, *thresholds, self.top], dtype=torch.int64)
        self.lut = torch.repeat_interleave(torch.arange(len(thresholds) + 1, dtype=torch.uint8),
                                           bounds.diff()).to(device)
        self._lut_np = self.lut.cpu().numpy()
        self.lut_bytes = self._lut_np.tobytes()  # for kdlic.codec.rans.decode_scaled

    def __call__(self, scales_fixed: Tensor) -> Tensor:
        """Table index (int64) of each scale (float64 integers in units of 2**-F)."""
        if scales_fixed.device.type == "cpu":  # NumPy's clip, cast and gather: 4x faster here
            return torch.from_numpy(self.indexes_of(scales_fixed.numpy()))
        return self.lut[scales_fixed.clamp(0, self.top).to(torch.int64)].to(torch.int64)

    def indexes_of(self, scales_fixed: np.ndarray) -> np.ndarray:
        """:meth:`__call__` on a NumPy array (int64 table indexes)."""
        q = np.clip(scales_fixed, 0, self.top).astype(np.int32)
        return self._lut_np[q].astype(np.int64)


def scale_thresholds(scale_table) -> list[int]:
    """The integer thresholds ``T_i = floor(s_i * 2**F)`` of all but the last scale."""
    return [math.floor(s * 2**FRAC_BITS) for s in scale_table[:-1]]


def to_fixed(values: Tensor) -> Tensor:
    """Real values to integers in units of ``2**-FRAC_BITS`` (round half to even)."""
    return torch.round(values.double() * float(2**FRAC_BITS))
