"""The synthesis transform g_s arranged for fast decoding, and the transforms' threading.

Two rewrites of ``g_s``, both exact in real arithmetic (in float32 they round
differently from the plain layers, by about one unit in the last place):

* The first layer reads only the latent channels that are coded: the other channels
  are all zero and add nothing. Students often have many dead channels.
* A transposed convolution with few output channels (the last layer, 3 channels) is
  slow in oneDNN. It is rewritten as a stride-1 convolution producing
  ``stride**2`` times as many channels at the input resolution, followed by a pixel
  shuffle (the "sub-pixel" form): each output phase ``(ry, rx)`` is an ordinary
  correlation with the taps of the transposed kernel that hit that phase.

Transforms run with **one intra-op thread** on CPU (:func:`one_thread`): oneDNN's
convolutions (GDN's 1x1 ones in particular) pick blockings, hence summation orders,
by thread count, so a float32 result is a function of the thread count. With the
count fixed, the decoded pixels (and the encoder's latents) do not depend on
``--threads`` / ``torch.set_num_threads``. On CUDA, cuDNN is asked for deterministic
algorithms without TF32.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_THREADS = threading.Lock()
MAX_SUBPIXEL_CHANNELS = 4  # rewrite transposed convolutions with at most this many outputs


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
    """A stride-s ConvTranspose2d whose output is s times its input, as conv + shuffle."""

    def __init__(self, layer: nn.ConvTranspose2d) -> None:
        super().__init__()
        s, k, p = layer.stride[0], layer.kernel_size[0], layer.padding[0]
        weight = layer.weight.detach()  # (in, out, k, k)
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
        bias = layer.bias.detach() if layer.bias is not None else torch.zeros(c_out)
        self.register_buffer("bias", bias.repeat_interleave(s * s))
        self.stride = s
        self.pad = (-lo, size - 1 + lo)  # before, after

    @staticmethod
    def applies(layer: nn.Module) -> bool:
        if not isinstance(layer, nn.ConvTranspose2d) or layer.groups != 1:
            return False
        s, k, p, op = layer.stride, layer.kernel_size, layer.padding, layer.output_padding
        return (len(set(s)) == len(set(k)) == len(set(p)) == len(set(op)) == 1
                and tuple(layer.dilation) == (1, 1) and layer.padding_mode == "zeros"
                and layer.out_channels <= MAX_SUBPIXEL_CHANNELS
                # output exactly stride x input: (H-1)s - 2p + k + op == sH
                and k[0] + op[0] - 2 * p[0] == s[0] and s[0] > 1)

    def forward(self, x: Tensor) -> Tensor:
        before, after = self.pad
        if before == after and before >= 0:
            y = F.conv2d(x, self.weight, self.bias, padding=before)
        else:
            y = F.conv2d(F.pad(x, (before, after, before, after)), self.weight, self.bias)
        return F.pixel_shuffle(y, self.stride)


class Synthesis:
    """``g_s`` for decoding: coded channels only in the first layer, sub-pixel thin layers,
    channels-last memory (oneDNN's faster layout here, and the pixel shuffle merges with
    the conversion to an (H, W, 3) image). A snapshot: later changes to the model's
    weights are not seen."""

    def __init__(self, g_s: nn.Sequential) -> None:
        layers = list(copy.deepcopy(g_s))
        self.first = layers[0] if (isinstance(layers[0], nn.ConvTranspose2d)
                                   and layers[0].groups == 1) else None
        rest = layers[1:] if self.first is not None else layers
        rest = [SubPixelConv(m) if SubPixelConv.applies(m) else m for m in rest]
        self.last = rest.pop() if rest and isinstance(rest[-1], SubPixelConv) else None
        self.rest = nn.Sequential(*rest)
        device = next(g_s.parameters()).device
        for m in (self.first, self.rest, self.last):
            if m is not None:
                m.to(device, memory_format=torch.channels_last)

    def _features(self, y_hat: Tensor, coded: Tensor | None) -> Tensor:
        y_hat = y_hat.contiguous(memory_format=torch.channels_last)
        if self.first is None:
            return self.rest(y_hat)
        first = self.first
        weight = first.weight
        if coded is not None and 0 < coded.numel() < y_hat.shape[1]:
            y_hat = y_hat.index_select(1, coded).contiguous(memory_format=torch.channels_last)
            weight = weight.index_select(0, coded).contiguous(memory_format=torch.channels_last)
        out = F.conv_transpose2d(y_hat, weight, first.bias, first.stride, first.padding,
                                 first.output_padding)
        return self.rest(out)

    def __call__(self, y_hat: Tensor, coded: Tensor | None = None) -> Tensor:
        """g_s(y_hat): (1, 3, H, W) float."""
        x = self._features(y_hat, coded)
        return self.last(x) if self.last is not None else x

    def pixels(self, y_hat: Tensor, coded: Tensor | None, height: int, width: int) -> Tensor:
        """The decoded image, (height, width, 3) uint8, cropped from the padded output."""
        x = self._features(y_hat, coded)
        if self.last is None:
            img = x[0].permute(1, 2, 0)
        else:  # the pixel shuffle and the NCHW -> HWC move in one reshape
            last, s = self.last, self.last.stride
            before, after = last.pad
            if before == after and before >= 0:
                x = F.conv2d(x, last.weight, last.bias, padding=before)
            else:
                x = F.conv2d(F.pad(x, (before, after, before, after)), last.weight, last.bias)
            _, c, h, w = x.shape
            img = (x[0].permute(1, 2, 0).reshape(h, w, c // (s * s), s, s)
                   .permute(0, 3, 1, 4, 2).reshape(h * s, w * s, c // (s * s)))
        img = img[:height, :width]
        return img.clamp(0, 1).mul_(255).round_().to(torch.uint8)
