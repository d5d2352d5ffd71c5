"""The synthesis transform g_s arranged for fast decoding, and the transforms' threading.

Rewrites of ``g_s``, all exact in real arithmetic (in float32 they round differently
from the plain layers, by about one unit in the last place):

* The first layer reads only the latent channels that are coded: the other channels
  are all zero and add nothing. Students often have many dead channels.
* A transposed convolution with few output channels (the last layer, 3 channels) is
  slow in oneDNN. It is rewritten as a stride-1 convolution producing
  ``stride**2`` times as many channels at the input resolution, followed by a pixel
  shuffle (the "sub-pixel" form): each output phase ``(ry, rx)`` is an ordinary
  correlation with the taps of the transposed kernel that hit that phase. The last
  layer's weights carry the factor 255, and the image is rounded to 8 bits before the
  shuffle, which then moves bytes rather than floats.
* GDN layers use their effective (re-parametrised) ``beta`` and ``gamma``, computed once.

**Stripes.** The image is decoded in horizontal stripes of at most :data:`STRIPE_ROWS`
latent rows, an even number of them of near-equal height (so that two workers, the
2-core target, finish together: three stripes on two workers cost two stripes' time),
each computed from its rows plus a margin of latent rows on both sides wide enough
to hold g_s's receptive field (:func:`receptive_rows`; 2 rows for the scale hyperprior),
so a stripe is the same function of the latents as the whole image. The stripes run in
parallel, one per worker thread, each with **one intra-op thread**. The plan (stripe
bounds, margins) depends on the image size alone, never on the thread count, so the
pixels are identical with 1 or N workers.

Why one intra-op thread (:func:`one_thread`, also used for g_a and h_a): oneDNN's
convolutions (GDN's 1x1 ones in particular) pick blockings, hence summation orders, by
thread count, so a float32 result is a function of the thread count. With the count
fixed, the encoder's latents and the decoded pixels do not depend on ``--threads`` /
``torch.set_num_threads``. On CUDA, cuDNN is asked for deterministic algorithms without
TF32, and the image is one stripe.

**bf16** (opt-in, ``Synthesis(g_s, bf16=True)``): the weights are converted to bfloat16
once and the layers run in bf16, where the device has native bf16 kernels (autocast
would convert the weights again in every call, for every stripe). bf16 keeps 8
significant bits: weights, activations and latents above 256 in magnitude are rounded
to that precision alike (a float32 first layer, exact for large latents, would only
trade speed for an error no larger than the weights' own rounding). The latents and
the file are unchanged (g_s is the decoder's alone); the pixels are those of a bf16
g_s, a few levels from the float32 ones, and still a function of the file on a given
machine whatever the worker count.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from compressai.layers import GDN
from torch import Tensor, nn

_THREADS = threading.Lock()
MAX_SUBPIXEL_CHANNELS = 4  # rewrite transposed convolutions with at most this many outputs
# latent rows per stripe, at most (384 pixels for a 16x-downsampling model). 24, not 16:
# a portrait Kodak image (48 rows) is then two stripes, not four with twice the margins:
# N=16's g_s 7.8 -> 6.4 ms in bf16 on two workers; the wider models' times did not move
# beyond the noise (2026-12-05, benchmarks/codec_speed.py)
STRIPE_ROWS = 24


@contextlib.contextmanager
def one_thread(device: torch.device) -> Iterator[None]:
    """Run the enclosed transforms deterministically (see the module docstring)."""
    if device.type == "cuda":
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True,
                                        allow_tf32=False):
            yield
        return
    if torch.get_num_threads() == 1:
        yield
        return
    with _THREADS:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


class SubPixelConv(nn.Module):
    """A stride-s ConvTranspose2d whose output is s times its input, as conv + shuffle.

    ``gain`` multiplies the weights and bias (the last layer uses 255: output in 8-bit
    units). :meth:`forward` returns the (B, C, sH, sW) output; :meth:`phases` the
    (B, C*s*s, H, W) stride-1 output before the shuffle.
    """

    def __init__(self, layer: nn.ConvTranspose2d, gain: float = 1.0) -> None:
        super().__init__()
        s, k, p = layer.stride[0], layer.kernel_size[0], layer.padding[0]
        weight = layer.weight.detach() * gain  # (in, out, k, k)
        c_in, c_out = weight.shape[:2]
        # tap kk of the transposed kernel feeds output phase r from input offset d
        taps = [(r, kk, (r + p - kk) // s) for r in range(s) for kk in range(k)
                if (r + p - kk) % s == 0]
        lo = min(d for *_, d in taps)
        size = max(d for *_, d in taps) - lo + 1
        w = torch.zeros(c_out, s, s, c_in, size, size, dtype=weight.dtype)
        for ry, ky, dy in taps:
            for rx, kx, dx in taps:
                w[:, ry, rx, :, dy - lo, dx - lo] = weight[:, :, ky, kx].t()
        self.register_buffer("weight", w.reshape(c_out * s * s, c_in, size, size))
        bias = layer.bias.detach() * gain if layer.bias is not None else torch.zeros(c_out)
        self.register_buffer("bias", bias.repeat_interleave(s * s))
        self.stride = s
        self.pad = (-lo, size - 1 + lo)  # before, after

    @staticmethod
    def applies(layer: nn.Module, max_channels: int | None = MAX_SUBPIXEL_CHANNELS) -> bool:
        """Whether ``layer`` has a sub-pixel form (and at most ``max_channels`` outputs,
        where that form is faster; None: any number)."""
        if not isinstance(layer, nn.ConvTranspose2d) or layer.groups != 1:
            return False
        s, k, p, op = layer.stride, layer.kernel_size, layer.padding, layer.output_padding
        return (len(set(s)) == len(set(k)) == len(set(p)) == len(set(op)) == 1
                and tuple(layer.dilation) == (1, 1) and layer.padding_mode == "zeros"
                and (max_channels is None or layer.out_channels <= max_channels)
                # output exactly stride x input: (H-1)s - 2p + k + op == sH
                and k[0] + op[0] - 2 * p[0] == s[0] and s[0] > 1)

    def phases(self, x: Tensor) -> Tensor:
        before, after = self.pad
        if before == after and before >= 0:
            return F.conv2d(x, self.weight, self.bias, padding=before)
        return F.conv2d(F.pad(x, (before, after, before, after)), self.weight, self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(self.phases(x), self.stride)


class FrozenGDN(nn.Module):
    """A (inverse) GDN with its effective beta and gamma computed once:
    ``x * sqrt(beta + gamma @ x**2)`` (inverse) or ``x / sqrt(...)``, per pixel.

    Takes and returns channels-last tensors and runs as one matrix product over the
    pixels: the 1x1 convolution that CompressAI uses falls back to a slow, NCHW kernel
    here, whose output then meets the channels-last input in strided element-wise ops.
    """

    def __init__(self, gdn: GDN) -> None:
        super().__init__()
        with torch.no_grad():
            beta = gdn.beta_reparam(gdn.beta)
            gamma = gdn.gamma_reparam(gdn.gamma)
        self.register_buffer("beta", beta.detach().clone())
        self.register_buffer("gamma_t", gamma.detach().t().contiguous())  # (C_in, C_out)
        self.inverse = gdn.inverse

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view for channels-last x
        norm = torch.addmm(self.beta, pixels * pixels, self.gamma_t)
        norm = norm.sqrt_() if self.inverse else norm.rsqrt_()
        return norm.mul_(pixels).reshape(n, h, w, c).permute(0, 3, 1, 2)


def receptive_rows(layers: list[nn.Module]) -> int | None:
    """Latent rows on each side that an output row of ``layers`` depends on (rounded up),
    or None when a layer's reach is unknown (then the image is one stripe).

    Walking back from the output: a layer of stride s with taps reaching ``a`` input
    samples below and ``b`` above the output's position maps a reach of r output
    samples to ``r / s + max(a, b) / s`` input samples (transposed) or ``s * r +
    max(a, b)`` (ordinary convolution; GDN and other pointwise layers add nothing).
    """
    reach = 0.0
    for layer in reversed(layers):
        if isinstance(layer, (GDN, FrozenGDN, nn.ReLU, nn.LeakyReLU, nn.Identity)):
            continue
        if isinstance(layer, SubPixelConv):
            reach = reach / layer.stride + max(layer.pad)
        elif isinstance(layer, nn.ConvTranspose2d):
            s, k, p = layer.stride[0], layer.kernel_size[0], layer.padding[0]
            reach = (reach + max(k - 1 - p, p)) / s
        elif isinstance(layer, nn.Conv2d):
            s, k, p = layer.stride[0], layer.kernel_size[0], layer.padding[0]
            reach = s * reach + max(k - 1 - p, p)
        else:
            return None
    return math.ceil(reach)


_WORDS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


class ImageHead(nn.Module):
    """The last layer (sub-pixel form) made to output 8-bit images fast.

    Its output channels are reordered from (channel, ry, rx) to (ry, rx, channel) and
    the 3 colour channels padded to 4 with a zero channel, so that in channels-last
    memory each input pixel's output is ``s x s`` RGBX pixels, and one output row
    segment ``(rx, RGBX)`` is ``4 s`` bytes: 8 for stride 2, a single int64. The pixel
    shuffle then moves whole words instead of single bytes (six times faster here),
    and the image is rounded to bytes (times 255: in the weights) before it moves.
    """

    def __init__(self, layer: SubPixelConv) -> None:
        super().__init__()
        s = layer.stride
        c_in, size = layer.weight.shape[1], layer.weight.shape[2]
        c_out = layer.weight.shape[0] // (s * s)
        self.colours = c_out
        self.padded = 4 if c_out == 3 else c_out
        w = layer.weight.reshape(c_out, s, s, c_in, size, size).permute(1, 2, 0, 3, 4, 5)
        b = layer.bias.reshape(c_out, s, s).permute(1, 2, 0)
        pad = self.padded - c_out
        w = F.pad(w, (0, 0, 0, 0, 0, 0, 0, pad))
        b = F.pad(b, (0, pad))
        self.register_buffer("weight", w.reshape(-1, c_in, size, size).contiguous())
        self.register_buffer("bias", b.reshape(-1).contiguous())
        self.stride, self.pad = s, layer.pad

    def forward(self, x: Tensor) -> Tensor:
        """(1, C, h, w) channels-last features -> (s*h, s*w, padded colours) uint8."""
        s, c = self.stride, self.padded
        before, after = self.pad
        if before == after and before >= 0:
            y = F.conv2d(x, self.weight, self.bias, padding=before)
        else:
            y = F.conv2d(F.pad(x, (before, after, before, after)), self.weight, self.bias)
        y = y.round_().clamp_(0, 255).to(torch.uint8)
        _, _, h, w = y.shape
        img = y[0].permute(1, 2, 0).reshape(h, w, s, s * c)  # (h, w, ry, rx * RGBX)
        word = _WORDS.get(s * c)
        if word is None:  # no word size fits: move bytes
            img = img.permute(0, 2, 1, 3).reshape(h * s, w * s, c)
        else:
            img = img.contiguous().view(word).permute(0, 2, 1, 3).contiguous()
            img = img.view(torch.uint8).reshape(h * s, w * s, c)
        return img


class Synthesis:
    """``g_s`` for decoding: coded channels only in the first layer, sub-pixel thin
    layers, frozen GDNs, channels-last memory (oneDNN's faster layout here), an
    :class:`ImageHead`, and stripes decoded in parallel (see the module docstring).
    A snapshot: later changes to the model's weights are not seen. ``bf16``: run the
    layers in bfloat16 (see the module docstring)."""

    def __init__(self, g_s: nn.Sequential, bf16: bool = False) -> None:
        device = next(g_s.parameters()).device
        layers = [FrozenGDN(m) if isinstance(m, GDN) else m for m in copy.deepcopy(g_s)]
        self.first = layers[0] if (isinstance(layers[0], nn.ConvTranspose2d)
                                   and layers[0].groups == 1) else None
        rest = layers[1:] if self.first is not None else layers
        self.head = ImageHead(SubPixelConv(rest.pop(), gain=255.0)) if (
            rest and SubPixelConv.applies(rest[-1])) else None
        rest = [SubPixelConv(m) if SubPixelConv.applies(m) else m for m in rest]
        self.rest = nn.Sequential(*rest)
        self.margin = receptive_rows(layers)
        self.dtype = torch.bfloat16 if bf16 else torch.float32
        for m in (self.first, self.rest, self.head):
            if m is not None:
                m.to(device, self.dtype, memory_format=torch.channels_last)

    def _inputs(self, y_hat: Tensor, coded: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``y_hat`` (1, M, h, w) in the layers' dtype and memory format, with the coded
        channels only when that leaves any out, and the first layer's weights for those
        channels (None: no first layer). Done once per image: a stripe's rows of it are
        a stripe's input."""
        y_hat = y_hat.to(self.dtype).contiguous(memory_format=torch.channels_last)
        if self.first is None:
            return y_hat, None
        weight = self.first.weight
        if coded is not None and 0 < coded.numel() < y_hat.shape[1]:
            y_hat = y_hat.index_select(1, coded).contiguous(memory_format=torch.channels_last)
            weight = weight.index_select(0, coded).contiguous(memory_format=torch.channels_last)
        return y_hat, weight

    def _image(self, y_hat: Tensor, weight: Tensor | None) -> Tensor:
        """(H, W, C) uint8 image of :meth:`_inputs`' output (or rows of it); C is 3, or 4
        (RGB and a padding byte) from an :class:`ImageHead`."""
        if weight is None:
            x = self.rest(y_hat)
        else:
            first = self.first
            x = self.rest(F.conv_transpose2d(y_hat, weight, first.bias, first.stride,
                                             first.padding, first.output_padding))
        if self.head is not None:
            return self.head(x)
        return x[0].permute(1, 2, 0).mul(255).round_().clamp_(0, 255).to(torch.uint8)

    def _pixels(self, y_hat: Tensor, coded: Tensor | None) -> Tensor:
        """(H, W, C) uint8 image of the whole (padded) latent ``y_hat`` (1, M, h, w) in one
        piece; C is 3, or 4 (RGB and a padding byte) from an :class:`ImageHead`."""
        return self._image(*self._inputs(y_hat, coded))

    def stripes(self, rows: int) -> list[tuple[int, int, int, int]]:
        """The decoding plan for ``rows`` latent rows: (start, stop, lo, hi) per stripe,
        where rows [lo, hi) are computed to output rows [start, stop). Depends on
        ``rows`` alone."""
        if self.margin is None or rows <= STRIPE_ROWS:
            return [(0, rows, 0, rows)]
        count = -(-rows // STRIPE_ROWS)
        count += count % 2  # even (module docstring)
        bounds = [rows * i // count for i in range(count + 1)]
        return [(a, b, max(0, a - self.margin), min(rows, b + self.margin))
                for a, b in zip(bounds, bounds[1:], strict=False)]

    def pixels(self, y_hat: Tensor, coded: Tensor | None, workers: int = 1) -> Tensor:
        """The decoded padded image, (H, W, C) uint8, contiguous: C is 4 (RGB and a padding
        byte, see :class:`ImageHead`) or 3; crop it to the image size.

        ``y_hat``: (1, M, h, w) latents; ``coded``: the channels that are not all zero;
        ``workers``: threads decoding stripes at once (the result does not depend on it).
        """
        rows = y_hat.shape[2]
        plan = self.stripes(rows) if y_hat.device.type == "cpu" else [(0, rows, 0, rows)]
        y_hat, weight = self._inputs(y_hat, coded)
        if len(plan) == 1:
            return self._image(y_hat, weight).contiguous()

        def stripe(part: tuple[int, int, int, int]) -> Tensor:
            start, stop, lo, hi = part
            img = self._image(y_hat[:, :, lo:hi], weight)
            scale = img.shape[0] // (hi - lo)
            return img[(start - lo) * scale : (stop - lo) * scale]

        if workers <= 1:
            parts = [stripe(p) for p in plan]
        else:
            parts = list(worker_pool(workers).map(stripe, plan))
        return torch.cat(parts)


@functools.lru_cache(maxsize=4)
def worker_pool(workers: int) -> ThreadPoolExecutor:
    """Worker threads for stripes, each with one intra-op thread (see :func:`one_thread`).
    Kept for the process: a new thread's first convolutions cost several milliseconds
    of set-up, as much as a small student's whole synthesis."""
    return ThreadPoolExecutor(workers, thread_name_prefix="kdlic-gs",
                              initializer=torch.set_num_threads, initargs=(1,))
