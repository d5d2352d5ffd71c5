"""Resource profile of a model: what the sender (encoder) and a receiver (decoder) pay.

For each side separately:

* **parameters** and **parameter memory**: the parts each side runs. The encoder runs
  ``g_a``, ``h_a``, the entropy bottleneck (codes ``z``), ``h_s`` (to get the scales of
  ``y``) and the Gaussian conditional (codes ``y``); the decoder runs the entropy
  bottleneck, ``h_s``, the Gaussian conditional and ``g_s``. Memory is the bytes of the
  fp32 parameters plus the buffers (chiefly the entropy coders' CDF tables, built by
  ``update()``), in MiB (2**20 bytes). The paper's "memory (MB)" column is the same unit:
  its figures equal 4 bytes x params / 2**20 (the teacher's also holds the CDF tables).
* **FLOPs per frame**, counted by PyTorch's own ``torch.utils.flop_counter.FlopCounterMode``
  on one frame (768x512 by default, padded to a multiple of 64 as the codec does), per
  transform ``g_a``/``h_a``/``h_s``/``g_s``. A multiply-add counts as 2 FLOPs (convolutions,
  transposed convolutions, matmuls). GDN/IGDN are counted: they are a 1x1 convolution over
  ``x**2``. Not counted: bias additions, element-wise ops (ReLU, square, (r)sqrt, the
  GDN product), padding, rounding and the entropy coding itself (integer rANS work).
  ``gmacs_per_frame`` (= FLOPs / 2 over the whole forward pass g_a+h_a+h_s+g_s) is what
  fvcore, and hence the paper's "GFLOPs/frame" column, reports: fvcore counts one MAC as
  one "flop".
* **peak memory** during one encode (decode) of the frame: on CPU, the rise of the
  process's resident set (VmHWM after a reset through ``/proc/self/clear_refs``, else
  ``ru_maxrss``) over its size just before the call, measured in a fresh subprocess with
  the model loaded and one warm-up call done; on CUDA ``torch.cuda.max_memory_allocated``
  above the memory allocated before the call.
* **latency** of real coding (:class:`kdlic.codec.Codec`, bitstream and all): ``warmup``
  untimed runs, then ``repeats`` timed ones at a fixed thread count; median, p10/p90,
  mean, min, max; throughput = 1 / median (one frame at a time). The network parts
  (``g_a``... without entropy coding) are timed alone as well, which gives the
  **achieved GFLOP/s**, compared with this machine's measured fp32 **matmul peak**.
* **energy per frame** where a meter exists: RAPL (``/sys/class/powercap``, CPU package
  energy, which includes every other process on the package) or NVML (CUDA). Otherwise
  the value is the string ``"not metered"``, never an estimate.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kdlic.data.images import padded_size
from kdlic.errors import KdlicError
from kdlic.models import display_name, load_model
from kdlic.utils.device import host_info
from kdlic.utils.progress import progress_bar
from kdlic.utils.threads import torch_threads

NOT_METERED = "not metered"
MIB = 2**20
# The networks of every registered architecture, and which side runs each; a model has
# a subset (a factorized prior has no h_a/h_s; only autoregressive models have a context
# model and entropy parameters), see present().
TRANSFORMS = ("g_a", "h_a", "h_s", "context_prediction", "entropy_parameters", "g_s")
ENCODER_TRANSFORMS = ("g_a", "h_a", "h_s", "context_prediction", "entropy_parameters")
DECODER_TRANSFORMS = ("h_s", "context_prediction", "entropy_parameters", "g_s")
ENTROPY_MODELS = ("entropy_bottleneck", "gaussian_conditional")
PARTS = (*TRANSFORMS, *ENTROPY_MODELS)
ENCODER_PARTS = (*ENCODER_TRANSFORMS, *ENTROPY_MODELS)
DECODER_PARTS = (*DECODER_TRANSFORMS, *ENTROPY_MODELS)
DEFAULT_IMAGE = Path("../shared/data/kodak/kodim14.png")

METHODS = {
    "params": "numel of the parameters of the parts each side runs, of those the model has "
    "(encoder: g_a, h_a, h_s, context_prediction, entropy_parameters, entropy_bottleneck, "
    "gaussian_conditional; decoder: the same without g_a and h_a, with g_s)",
    "param_memory": "bytes of the fp32 parameters plus buffers (CDF tables after update()) "
    "of those parts, in MiB (2**20 bytes); params_mib is the parameters alone",
    "flops": "torch.utils.flop_counter.FlopCounterMode on one padded frame, per transform; "
    "1 multiply-add = 2 FLOPs; GDN counted as its 1x1 convolution; bias adds, element-wise "
    "ops and entropy coding not counted. gmacs_per_frame = forward FLOPs / 2 (fvcore's "
    "'flops', the paper's GFLOPs/frame)",
    "latency": "wall time of kdlic.codec.Codec.encode/decode on the frame (uint8 array in, "
    "bytes / PIL image out), after warm-up, with torch set to the given threads (the codec "
    "may still choose its own, e.g. one thread for bit-exact transforms); fps = 1 / median",
    "network_latency": "wall time of the model's transforms alone (encoder: g_a, h_a, h_s "
    "and the context model; decoder: h_s, the context model and g_s), timed by hooks in "
    "one eval forward pass on the padded frame at the given threads, in the same rounds "
    "as the codec; "
    "achieved GFLOP/s = their FLOPs / median time",
}


# ---------------------------------------------------------------------------- naming


# ---------------------------------------------------------------------------- sizes


def part_sizes(module: nn.Module) -> dict[str, int]:
    """Parameter count and bytes of parameters and buffers of one module."""
    params = list(module.parameters())
    return {
        "params": sum(p.numel() for p in params),
        "param_bytes": sum(p.numel() * p.element_size() for p in params),
        "buffer_bytes": sum(b.numel() * b.element_size() for b in module.buffers()),
    }


def _side_sizes(parts: dict[str, dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    params = sum(parts[n]["params"] for n in names)
    param_bytes = sum(parts[n]["param_bytes"] for n in names)
    buffer_bytes = sum(parts[n]["buffer_bytes"] for n in names)
    return {
        "parts": list(names),
        "params": params,
        "param_bytes": param_bytes,
        "buffer_bytes": buffer_bytes,
        "params_mib": param_bytes / MIB,
        "param_memory_mib": (param_bytes + buffer_bytes) / MIB,
    }


# ---------------------------------------------------------------------------- FLOPs


@torch.no_grad()
def count_flops(module: nn.Module | Callable[..., Any], *inputs: Any) -> tuple[int, dict[str, int]]:
    """FLOPs of ``module(*inputs)`` by PyTorch's FlopCounterMode: (total, {op: flops}).

    A multiply-add is 2 FLOPs; only ops with a registered formula (convolutions,
    matmuls, attention) are counted, element-wise ops are not.
    """
    counter = FlopCounterMode(display=False)
    with counter:
        module(*inputs)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), by_op


def present(model: nn.Module, names: Sequence[str]) -> tuple[str, ...]:
    """The parts among ``names`` that ``model`` has."""
    return tuple(n for n in names if isinstance(getattr(model, n, None), nn.Module))


@torch.no_grad()
def transform_inputs(model: nn.Module, size: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """The input shape of each transform for one ``size`` = (H, W) frame (multiples of 64).

    Read by forward pre-hooks from one eval pass of the whole model on a 64x64 frame,
    then scaled: every latent grid is a fixed fraction of the frame.
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def record(t: str):
        def hook(module: nn.Module, args: tuple) -> None:  # None: the input is unchanged
            shapes.setdefault(t, tuple(args[0].shape))
        return hook

    handles = [getattr(model, t).register_forward_pre_hook(record(t))
               for t in present(model, TRANSFORMS)]
    was_training = model.training
    try:
        model.eval()(torch.zeros(1, 3, 64, 64, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    fh, fw = size[0] // 64, size[1] // 64
    return {t: (*s[:2], s[2] * fh, s[3] * fw) for t, s in shapes.items()}


@torch.no_grad()
def transform_flops(model: nn.Module, size: tuple[int, int]) -> dict[str, Any]:
    """FLOPs of each transform the model has on one ``size`` = (H, W) frame.

    Counted on a copy of the model on PyTorch's ``meta`` device (shapes only, no
    arithmetic: instant even for a large model), or for real if that copy fails.
    """
    inputs = transform_inputs(model, size)
    try:
        meta_model = copy.deepcopy(model).to("meta")
        return _transform_flops(meta_model, inputs, torch.device("meta"), size)
    except Exception:  # a module without meta support: count on real tensors
        return _transform_flops(model, inputs, next(model.parameters()).device, size)


def _transform_flops(model: nn.Module, inputs: dict[str, tuple[int, ...]],
                     device: torch.device, size: tuple[int, int]) -> dict[str, Any]:
    flops: dict[str, int] = {}
    by_op: dict[str, dict[str, int]] = {}
    for t, shape in inputs.items():
        flops[t], by_op[t] = count_flops(getattr(model, t), torch.zeros(shape, device=device))
    forward = sum(flops.values())
    return {
        **flops,
        "encoder": sum(flops.get(t, 0) for t in ENCODER_TRANSFORMS),
        "decoder": sum(flops.get(t, 0) for t in DECODER_TRANSFORMS),
        "forward": forward,
        "gflops_per_frame": forward / 1e9,
        "gmacs_per_frame": forward / 2e9,
        "frame": list(size),
        "by_op": by_op,
    }


# ---------------------------------------------------------------------------- timing


def summarize(times: Sequence[float]) -> dict[str, float | int]:
    """Median, p10, p90, mean, min, max (seconds) and count of a list of timings."""
    t = np.asarray(times, dtype=float)
    return {
        "median": float(np.median(t)),
        "p10": float(np.percentile(t, 10)),
        "p90": float(np.percentile(t, 90)),
        "mean": float(t.mean()),
        "min": float(t.min()),
        "max": float(t.max()),
        "n": int(t.size),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_peak(
    threads: int | None = None, n: int = 2048, repeats: int = 10, device: str = "cpu"
) -> dict[str, Any]:
    """fp32 GFLOP/s of an ``n`` x ``n`` matmul (2 n^3 FLOPs): the hardware ceiling.

    ``gflops_per_s`` is the best of ``repeats`` runs after a warm-up: other processes
    only ever slow a run down, so the fastest one is the closest to what the hardware
    can do; ``median_gflops_per_s`` is there too.
    """
    dev = torch.device(device)
    with torch_threads(threads) as used, torch.no_grad():
        a = torch.randn(n, n, device=dev)
        b = torch.randn(n, n, device=dev)
        c = torch.empty(n, n, device=dev)
        torch.mm(a, b, out=c)  # warm-up
        _sync(dev)
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            _sync(dev)
            times.append(time.perf_counter() - t0)
    flops = 2.0 * n**3
    stats = summarize(times)
    return {
        "n": n,
        "dtype": "float32",
        "device": str(dev),
        "threads": used,
        "repeats": len(times),
        "gflops_per_s": flops / stats["min"] / 1e9,
        "median_gflops_per_s": flops / stats["median"] / 1e9,
        "time_s": stats,
        "loadavg": _loadavg(),
    }


# ---------------------------------------------------------------------------- energy


class EnergyMeter:
    """A cumulative energy counter: ``delta(snapshot(), snapshot())`` is joules between."""

    available = False
    name = NOT_METERED

    def snapshot(self) -> list[float]:  # pragma: no cover - only where a meter exists
        raise NotImplementedError

    def delta(self, before: list[float], after: list[float]) -> float:  # pragma: no cover
        raise NotImplementedError


class RaplMeter(EnergyMeter):
    """Linux powercap RAPL: sum of the CPU package domains, with counter wrap-around."""

    ROOT = Path("/sys/class/powercap")

    def __init__(self) -> None:
        self.domains: list[tuple[Path, float]] = []
        if self.ROOT.is_dir():
            for d in sorted(self.ROOT.glob("intel-rapl:*")):
                if d.name.count(":") != 1:  # sub-zones (core, uncore, dram) are inside
                    continue
                try:
                    int((d / "energy_uj").read_text())
                    wrap = float((d / "max_energy_range_uj").read_text())
                except (OSError, ValueError):
                    continue
                self.domains.append((d / "energy_uj", wrap))
        self.available = bool(self.domains)
        self.name = (f"RAPL package energy ({len(self.domains)} domain(s), includes all "
                     "processes on the CPU)") if self.available else NOT_METERED

    def snapshot(self) -> list[float]:
        return [float(path.read_text()) for path, _ in self.domains]  # microjoules

    def delta(self, before: list[float], after: list[float]) -> float:
        pairs = zip(after, before, self.domains, strict=True)
        return sum((a - b) % wrap for a, b, (_, wrap) in pairs) / 1e6


class NvmlMeter(EnergyMeter):
    """NVML total energy of one GPU (Volta or newer), via pynvml."""

    def __init__(self, index: int) -> None:
        try:
            import pynvml  # type: ignore[import-not-found]

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self._nvml = pynvml
            self.available = True
            self.name = f"NVML total energy of GPU {index}"
        except Exception:  # no pynvml, no driver, or a GPU without an energy counter
            self.available = False
            self.name = NOT_METERED

    def snapshot(self) -> list[float]:
        return [float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))]  # mJ

    def delta(self, before: list[float], after: list[float]) -> float:
        return (after[0] - before[0]) / 1e3


def energy_meter(device: torch.device) -> tuple[EnergyMeter | None, str]:
    """The meter for ``device`` and a description; ``(None, why)`` where there is none."""
    if device.type == "cuda":
        meter: EnergyMeter = NvmlMeter(device.index or 0)
        if meter.available:
            return meter, meter.name
        return None, f"{NOT_METERED}: no NVML energy counter (pynvml missing or unsupported GPU)"
    meter = RaplMeter()
    if meter.available:
        return meter, meter.name
    return None, (f"{NOT_METERED}: no readable RAPL counter "
                  "(/sys/class/powercap/intel-rapl:*/energy_uj) on this machine")


# ---------------------------------------------------------------------------- memory


def _proc_status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.M)
    return int(m.group(1)) if m else None


def _reset_hwm() -> bool:
    """Reset the resident-set high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim() -> None:
    """Collect garbage and hand freed heap memory back to the OS (glibc)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss_peak_of(fn: Callable[[], Any]) -> dict[str, Any]:
    """Peak resident set during ``fn()`` above the resident set before it (MiB)."""
    _trim()
    reset = _reset_hwm()
    before = _proc_status_kib("VmRSS")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    fn()
    if reset and before is not None:
        peak = _proc_status_kib("VmHWM")
        method = "VmHWM after /proc/self/clear_refs reset"
    else:  # fall back to the lifetime high-water mark: a lower bound of the rise
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        before = before if before is not None else maxrss_before
        method = "ru_maxrss (lifetime high-water mark; the rise is a lower bound)"
    assert peak is not None and before is not None
    return {"peak_memory_mib": max(0, peak - before) / 1024, "peak_rss_mib": peak / 1024,
            "rss_before_mib": before / 1024, "method": method}


def _memory_probe(checkpoint: str, image: str, threads: int) -> dict[str, Any]:
    """Run in a fresh process: peak RSS rise of one encode and of one decode."""
    from kdlic.codec import Codec
    from kdlic.models import load_model

    torch.set_num_threads(threads)
    rgb = np.load(image)
    codec = Codec(load_model(checkpoint), "cpu")
    data = codec.encode(rgb)  # warm-up: one-time allocations (thread pool, kernels)
    codec.decode(data)
    enc = _rss_peak_of(lambda: codec.encode(rgb))
    dec = _rss_peak_of(lambda: codec.decode(data))
    return {"encoder": enc, "decoder": dec}


def peak_memory_cpu(model: nn.Module, rgb: np.ndarray, threads: int) -> dict[str, Any]:
    """Peak RSS rise of encode and decode, each measured in one fresh subprocess."""
    from kdlic.utils.checkpoint import save_checkpoint

    with tempfile.TemporaryDirectory(prefix="kdlic-profile-") as tmp:
        ckpt = Path(tmp) / "model.pt"
        img = Path(tmp) / "image.npy"
        save_checkpoint(ckpt, model, {})
        np.save(img, rgb)
        code = ("import json, sys; from kdlic.evaluation.profile import _memory_probe; "
                "print(json.dumps(_memory_probe(sys.argv[1], sys.argv[2], int(sys.argv[3]))))")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(
            [sys.executable, "-c", code, str(ckpt), str(img), str(threads)],
            capture_output=True, text=True, env=env, check=False,
        )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"memory probe failed (exit {proc.returncode}): {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_memory_cuda(codec: Any, rgb: np.ndarray, data: bytes) -> dict[str, Any]:
    """Peak CUDA memory above the allocation before one encode (decode), MiB."""
    out = {}
    dev = codec.device
    runs = (("encoder", lambda: codec.encode(rgb)), ("decoder", lambda: codec.decode(data)))
    for side, fn in runs:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        fn()
        torch.cuda.synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev)
        out[side] = {"peak_memory_mib": (peak - before) / MIB, "peak_allocated_mib": peak / MIB,
                     "method": "torch.cuda.max_memory_allocated above memory_allocated before"}
    return out


# ---------------------------------------------------------------------------- images


def load_frame(image: str | Path | None, size: tuple[int, int] = (512, 768),
               seed: int = 0) -> tuple[np.ndarray, str]:
    """The frame to code: an image file as RGB, or a smooth random ``size`` frame."""
    if image is not None:
        from kdlic.data.images import load_rgb

        if not Path(image).is_file():
            raise KdlicError(f"image not found: {image}")
        return load_rgb(image), str(image)
    h, w = size
    rng = np.random.default_rng(seed)
    small = rng.random((max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
    frame = torch.nn.functional.interpolate(
        torch.from_numpy(small).permute(2, 0, 1)[None], size=(h, w), mode="bicubic",
        align_corners=False)[0].permute(1, 2, 0).numpy()
    frame = np.clip(frame * 255 + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
    return frame, f"random smooth {w}x{h} frame (seed {seed})"


# ---------------------------------------------------------------------------- profile


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


@torch.no_grad()
def _time_transforms(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Seconds each transform takes in one eval forward pass of the model on ``x``."""
    dev = x.device
    start: dict[str, float] = {}
    took: dict[str, float] = {}

    def before(t: str):
        def hook(module: nn.Module, args: tuple) -> None:
            _sync(dev)
            start[t] = time.perf_counter()
        return hook

    def after(t: str):
        def hook(module: nn.Module, args: tuple, out: Any) -> None:
            _sync(dev)
            took[t] = took.get(t, 0.0) + time.perf_counter() - start[t]
        return hook

    handles = []
    for t in present(model, TRANSFORMS):
        module = getattr(model, t)
        handles += [module.register_forward_pre_hook(before(t)),
                    module.register_forward_hook(after(t))]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return took


def profile_model(
    model: nn.Module,
    size: tuple[int, int] = (512, 768),
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    device: str = "cpu",
    image: str | Path | None = None,
    memory: bool = True,
    matmul_peak: dict[str, Any] | None = None,
    progress: bool = False,
    desc: str = "profile",
) -> dict[str, Any]:
    """Profile ``model`` as a sender (encoder) and as a receiver (decoder).

    Args:
        model: a kdlic/CompressAI scale hyperprior (g_a, h_a, h_s, g_s, entropy models).
            It is moved to ``device`` and its entropy tables are (re)built.
        size: (H, W) of the random frame when ``image`` is None.
        repeats: timed runs (after ``warmup`` untimed ones) of encode, decode and the
            transforms.
        threads: torch CPU threads for every timed run (None: leave as is).
        image: the frame to code (default: a random smooth ``size`` frame).
        memory: measure peak memory (on CPU in a fresh subprocess: a few seconds).
        matmul_peak: the result of :func:`measure_matmul_peak` for the achieved-vs-peak
            ratio (None: not compared).

    Returns:
        A JSON-ready dict: ``params``..., ``parts``, ``flops``, ``encoder``, ``decoder``
        (see the module docstring for each figure's method).
    """
    from kdlic.codec import Codec

    if repeats < 1 or warmup < 0:
        raise KdlicError(f"repeats must be >= 1 and warmup >= 0 (got {repeats}, {warmup})")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise KdlicError(f"device {device} requested but CUDA is not available")
    rgb, image_desc = load_frame(image, size)
    frame = (padded_size(rgb.shape[0]), padded_size(rgb.shape[1]))

    with torch_threads(threads) as used_threads:
        codec = Codec(model, dev)  # moves to device, eval(), builds the CDF tables
        model = codec.model
        transforms = present(model, TRANSFORMS)
        parts = {name: part_sizes(getattr(model, name)) for name in present(model, PARTS)}
        whole = part_sizes(model)
        flops = transform_flops(model, frame)
        for t in transforms:
            parts[t]["flops"] = flops[t]

        steps = (warmup + repeats) * 3
        bar = progress_bar(total=steps, desc=desc, leave=False, disable=not progress,
                           unit="run")
        tick = bar.update

        x = torch.from_numpy(np.array(rgb)).to(dev).permute(2, 0, 1)[None].float().div_(255)
        x = torch.nn.functional.pad(
            x, (0, frame[1] - rgb.shape[1], 0, frame[0] - rgb.shape[0]), mode="replicate")

        # One round = an encode, a decode and a pass of the bare transforms, so that all
        # three see the same machine conditions (other load comes and goes). Energy is
        # metered around each encode and each decode call and summed.
        meter, meter_desc = energy_meter(dev)
        times: dict[str, list[float]] = {"encoder": [], "decoder": []}
        stages: dict[str, dict[str, list[float]]] = {"encoder": {}, "decoder": {}}
        joules = {"encoder": 0.0, "decoder": 0.0}
        net: dict[str, list[float]] = {t: [] for t in transforms}
        data = b""
        for i in range(warmup + repeats):
            timed = i >= warmup
            for side in ("encoder", "decoder"):
                snap = meter.snapshot() if meter else []
                t0 = time.perf_counter()
                if side == "encoder":
                    data = codec.encode(rgb)
                else:
                    codec.decode(data)
                elapsed = time.perf_counter() - t0
                if meter and timed:
                    joules[side] += meter.delta(snap, meter.snapshot())
                if timed:
                    times[side].append(elapsed)
                    for k, v in dict(getattr(codec, "timings", {}) or {}).items():
                        stages[side].setdefault(str(k), []).append(float(v))
                tick()
            one = _time_transforms(model, x)
            if timed:
                for t in transforms:
                    net[t].append(one[t])
            tick()
        bar.close()
        energy: dict[str, float | str] = {
            side: 1e3 * joules[side] / repeats if meter else NOT_METERED
            for side in ("encoder", "decoder")}

        if not memory:
            mem: dict[str, Any] = {s: {"peak_memory_mib": None, "method": "not measured"}
                                   for s in ("encoder", "decoder")}
        elif dev.type == "cuda":
            mem = peak_memory_cuda(codec, rgb, data)
        else:
            mem = peak_memory_cpu(model, rgb, used_threads)

    peak = matmul_peak["gflops_per_s"] if matmul_peak else None
    sides: dict[str, Any] = {}
    for side, names, side_transforms in (
        ("encoder", present(model, ENCODER_PARTS), present(model, ENCODER_TRANSFORMS)),
        ("decoder", present(model, DECODER_PARTS), present(model, DECODER_TRANSFORMS)),
    ):
        lat = summarize(times[side])
        net_times = np.sum([net[t] for t in side_transforms], axis=0)
        net_lat = summarize(net_times)
        side_flops = sum(flops[t] for t in side_transforms)
        achieved = side_flops / net_lat["median"] / 1e9
        sides[side] = {
            **_side_sizes(parts, names),
            "transforms": list(side_transforms),
            "flops": side_flops,
            "gflops": side_flops / 1e9,
            "peak_memory_mib": mem[side].get("peak_memory_mib"),
            "memory": mem[side],
            "latency_s": lat,
            "fps": 1.0 / lat["median"],
            "stages_s": {k: float(np.median(v)) for k, v in stages[side].items()},
            "network_latency_s": net_lat,
            "network_latency_by_transform_s": {t: float(np.median(net[t]))
                                               for t in side_transforms},
            "achieved_gflops_per_s": achieved,
            "best_achieved_gflops_per_s": side_flops / net_lat["min"] / 1e9,
            "end_to_end_gflops_per_s": side_flops / lat["median"] / 1e9,
            "fraction_of_matmul_peak": achieved / peak if peak else None,
            "energy_mj_per_frame": energy[side],
        }
    spec = str(getattr(model, "source", "") or "")
    meta = getattr(model, "meta", {}) or {}
    return {
        "name": display_name(spec) if spec else model.__class__.__name__,
        "model": spec,
        "arch": getattr(model, "arch", model.__class__.__name__),
        "arch_args": dict(getattr(model, "arch_args", {})),
        "lmbda": meta.get("lmbda"),
        "params": whole["params"],
        "param_bytes": whole["param_bytes"],
        "buffer_bytes": whole["buffer_bytes"],
        "params_mib": whole["param_bytes"] / MIB,
        "param_memory_mib": (whole["param_bytes"] + whole["buffer_bytes"]) / MIB,
        "parts": parts,
        "frame": list(frame),
        "image": image_desc,
        "bytes": len(data),
        "bpp": 8 * len(data) / (rgb.shape[0] * rgb.shape[1]),
        "threads": used_threads,
        "device": str(dev),
        "repeats": repeats,
        "warmup": warmup,
        "flops": flops,
        "encoder": sides["encoder"],
        "decoder": sides["decoder"],
        "energy_method": meter_desc,
        "loadavg": _loadavg(),
    }


# ---------------------------------------------------------------------------- many models


def profile_models(
    specs: Sequence[str],
    output: str | Path | None = None,
    size: tuple[int, int] = (512, 768),
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    device: str = "cpu",
    image: str | Path | None = None,
    memory: bool = True,
    matmul_n: int = 2048,
    progress: bool = True,
    on_model: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Profile each model spec; the document is rewritten to ``output`` after each model.

    An interrupted run keeps every model finished before the interruption
    (``"complete": false`` until the last one is done). Writes are atomic.
    """
    from kdlic.utils.files import write_json

    if image is not None and not Path(image).is_file():
        raise KdlicError(f"image not found: {image}")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise KdlicError(f"bad device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise KdlicError(f"device {device} requested but CUDA is not available")
    models = [load_model(s) for s in specs]  # fail early on a bad spec
    with torch_threads(threads) as used:
        threads = used
    doc: dict[str, Any] = {
        "kind": "kdlic-profile",
        "version": 1,
        "description": "kdlic resource profile: encoder (sender) and decoder (receiver)",
        "settings": {"threads": threads, "repeats": repeats, "warmup": warmup,
                     "device": device, "image": str(image) if image else None,
                     "size": list(size), "memory": memory},
        "host": {**host_info(), "loadavg_start": _loadavg()},
        "methods": {**METHODS},
        "matmul_peak": None,
        "models": [],
        "complete": False,
    }
    if matmul_n:
        doc["matmul_peak"] = measure_matmul_peak(threads, matmul_n, device=device)
    if output:
        write_json(output, doc)
    bar = progress_bar(zip(specs, models, strict=True), total=len(specs), desc="profile",
                       unit="model", disable=not progress)
    for spec, model in bar:
        bar.set_postfix_str(display_name(spec))
        entry = profile_model(model, size, repeats, warmup, threads, device, image, memory,
                              doc["matmul_peak"], progress, desc=display_name(spec))
        entry["name"] = display_name(spec)
        entry["model"] = str(spec)
        doc["methods"].setdefault("energy", entry["energy_method"])
        doc["methods"]["peak_memory"] = entry["encoder"]["memory"].get("method")
        doc["models"].append(entry)
        if output:
            write_json(output, doc)
        if on_model:
            on_model(entry)
    doc["complete"] = True
    doc["host"]["loadavg_end"] = _loadavg()
    if output:
        write_json(output, doc)
    return doc


def fmt_float(value: Any, spec: str = ".3g") -> str:
    """A number formatted with ``spec``; strings (``"not metered"``) as they are; None as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)
