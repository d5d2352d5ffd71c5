"""Encode/decode speed of kdlic's codec next to Pillow's JPEG and WebP at a similar bpp.

For every model and image: file size (bpp), PSNR of the decoded image, encode and
decode time (best of ``--repeat`` runs), the decode split into entropy decoding (rANS
and its Python-side conversions), the fixed-point hyper-synthesis with table selection,
and the synthesis transform; then JPEG and WebP at the quality whose bpp is closest to
the model's, with their encode and decode times.

``--variants`` runs each model's codec several ways on the same files: ``fp32`` (torch),
``bf16`` (torch, g_s in bf16), ``onnx`` (ONNX Runtime, the export's graphs),
``onnx-int8`` (ONNX Runtime, g_s's convolutions in int8, calibrated on ``--calibration``):

    python benchmarks/codec_speed.py --models student-n16-l1 --threads 2 \
        --variants fp32,bf16,onnx,onnx-int8 --images ../shared/data/kodak

    python benchmarks/codec_speed.py --models /path/teacher.pt random:16,192 random:32,192 \\
        --images ../shared/data/kodak/kodim14.png --compressai --hs-cost

``random:N,M`` is a random-init scale hyperprior (any command takes it): its latents are
all zero (a random g_a outputs |y| < 0.5), so only the transforms cost anything.
``--compressai`` adds plain CompressAI decoding (``model.decompress``, the "before").
``--hs-cost`` codes y with tables picked by the float h_s too, to show what the exact
fixed-point h_s costs in bpp (column "hs cost": exact minus float, in bpp). The codec
runs its transforms on one thread (for deterministic output); ``--threads`` sets
torch's threads for the CompressAI baseline.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

from kdlic.codec import Codec, rans  # noqa: E402
from kdlic.codec.format import unpack  # noqa: E402
from kdlic.data.images import find_images, load_rgb  # noqa: E402
from kdlic.evaluation.metrics import psnr  # noqa: E402
from kdlic.models import load_model  # noqa: E402

CLOCK = time.perf_counter
DATA = Path(__file__).resolve().parents[2] / "shared/data"


def best_of(repeat: int, fn):
    """(best seconds, result of that run)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t = CLOCK()
        out = fn()
        dt = CLOCK() - t
        if dt < best:
            best, result = dt, out
    return best, result


def pillow_at_bpp(rgb: np.ndarray, fmt: str, target_bpp: float, repeat: int) -> dict:
    """JPEG/WebP at the quality whose bpp is closest to ``target_bpp``; timings."""
    img = Image.fromarray(rgb)
    pixels = rgb.shape[0] * rgb.shape[1]

    def encode(q: int) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, quality=q)
        return buf.getvalue()

    lo, hi = 1, 100
    while lo < hi:  # smallest quality with bpp >= target
        mid = (lo + hi) // 2
        if 8 * len(encode(mid)) / pixels < target_bpp:
            lo = mid + 1
        else:
            hi = mid
    candidates = {q: encode(q) for q in {max(1, lo - 1), lo}}
    q, data = min(candidates.items(), key=lambda kv: abs(8 * len(kv[1]) / pixels - target_bpp))
    enc, _ = best_of(repeat, lambda: encode(q))

    def decode():
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im

    dec, _ = best_of(repeat, decode)
    return {"quality": q, "bpp": 8 * len(data) / pixels, "enc_ms": enc * 1e3,
            "dec_ms": dec * 1e3}


@torch.no_grad()
def compressai_decode(model: torch.nn.Module, rgb: np.ndarray, repeat: int) -> dict:
    """Plain CompressAI (model.compress / the steps of model.decompress), timed by stage."""
    from kdlic.data.images import padded_size

    h, w = rgb.shape[:2]
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.pad(x, (0, padded_size(w) - w, 0, padded_size(h) - h),
                                mode="replicate")
    model.update(force=True)
    enc, out = best_of(repeat, lambda: model.compress(x))
    strings, shape = out["strings"], out["shape"]
    gc = model.gaussian_conditional

    def decompress() -> dict:  # ScaleHyperprior.decompress, step by step
        t = [CLOCK()]
        z_hat = model.entropy_bottleneck.decompress(strings[1], shape)
        t.append(CLOCK())
        indexes = gc.build_indexes(model.h_s(z_hat))
        t.append(CLOCK())
        y_hat = gc.decompress(strings[0], indexes, z_hat.dtype)
        t.append(CLOCK())
        model.g_s(y_hat).clamp_(0, 1)
        t.append(CLOCK())
        steps = np.diff(t) * 1e3
        return {"z_ms": steps[0], "hyper_ms": steps[1], "y_ms": steps[2], "g_s_ms": steps[3]}

    dec, parts = best_of(repeat, decompress)
    nbytes = sum(len(s[0]) for s in strings)
    return {"bpp": 8 * nbytes / (h * w), "enc_ms": enc * 1e3, "dec_ms": dec * 1e3, **parts}


@torch.no_grad()
def float_hs_bytes(codec: Codec, data: bytes) -> int:
    """Size of the y stream if the tables were picked by the float h_s instead."""
    header, streams = unpack(data)
    escapes = rans.EscapeReader(streams[2])
    zh, zw = header.z_shape
    z_sym = rans.decode(streams[0], codec._z_indexes((zh, zw)), codec.z_tables, escapes)
    z_sym = z_sym.reshape(codec.z_channels, zh, zw)
    coded = np.asarray(header.coded_channels(), dtype=np.int64)
    exact_idx = codec._indexes(z_sym, coded)
    y = rans.decode(streams[1], exact_idx, codec.y_tables, escapes)
    z_hat = torch.from_numpy(z_sym).float()[None] + codec._medians.view(1, -1, 1, 1).cpu()
    m = codec.model
    float_idx = m.gaussian_conditional.build_indexes(m.h_s(z_hat.to(codec.device)))
    float_idx = float_idx[0].long().cpu().numpy()[coded]
    stream, escaped = rans.encode(y, float_idx, codec.y_tables)
    return len(stream) + len(rans.pack_escapes(escaped)) - len(streams[1]) - len(streams[2])


VARIANTS = ("fp32", "bf16", "onnx", "onnx-int8")


def make_codec(model: torch.nn.Module, variant: str, device: str, calibration: str) -> Codec:
    """The codec of ``model`` run the ``variant`` way (see the module docstring)."""
    if variant in ("fp32", "bf16"):
        return Codec(model, device, bf16_synthesis=variant == "bf16")
    from kdlic.codec.export import build_export

    int8 = variant == "onnx-int8"
    return Codec.from_export(build_export(model, [calibration] if int8 else None), int8=int8)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["random:16,192", "random:32,192",
                                                   "random:64,192", "random:128,192"])
    p.add_argument("--images", default="../shared/data/kodak/kodim14.png",
                   help="an image or a folder (all Kodak: ../shared/data/kodak)")
    p.add_argument("--limit", type=int, help="at most this many images")
    p.add_argument("--repeat", type=int, default=5, help="timing runs (best is kept)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (CompressAI run)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--compressai", action="store_true", help="also time plain CompressAI")
    p.add_argument("--hs-cost", action="store_true",
                   help="bpp with float-h_s tables, to show the cost of the exact h_s")
    p.add_argument("--variants", default="fp32",
                   help="comma list of fp32, bf16 (torch g_s in bf16; native bf16 only), "
                   "onnx (ONNX Runtime), onnx-int8 (ONNX Runtime, int8 g_s)")
    p.add_argument("--calibration", default=str(DATA / "train"),
                   help="images for the onnx-int8 calibration")
    p.add_argument("--no-pillow", action="store_true")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: process CPU time, steadier than wall time on a busy machine "
                   "(equal to wall time for one thread when the machine is idle)")
    p.add_argument("--json", help="write all measurements here")
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    images = find_images(args.images, "test")[: args.limit]
    rows = []
    head = (f"{'model':>16} {'image':>11} {'bpp':>6} {'PSNR':>6} {'enc ms':>7} {'dec ms':>7} "
            f"{'entropy':>7} {'hyper':>6} {'g_s':>6} {'ent%':>5}")
    if args.compressai:
        head += f" {'CAI dec':>7}"
    if args.hs_cost:
        head += f" {'hs cost':>8}"
    if not args.no_pillow:
        head += f" | {'JPEG bpp':>8} {'enc':>5} {'dec':>5} | {'WebP bpp':>8} {'enc':>5} {'dec':>5}"
    print(head)
    variants = args.variants.split(",")
    if set(variants) - set(VARIANTS):
        p.error(f"unknown variants {set(variants) - set(VARIANTS)}; choose from {VARIANTS}")
    for spec, variant in [(s, v) for s in args.models for v in variants]:
        model = load_model(spec)
        codec = make_codec(model, variant, args.device, args.calibration)
        codec.clock = CLOCK
        name = Path(spec).stem if not spec.startswith("random:") else spec
        name = name if variant == "fp32" else f"{name}:{variant}"
        for path in images:
            rgb = load_rgb(path)
            pixels = rgb.shape[0] * rgb.shape[1]
            enc, data = best_of(args.repeat, lambda rgb=rgb, codec=codec: codec.encode(rgb))
            dec, timings = float("inf"), {}
            for _ in range(args.repeat):
                t = CLOCK()
                decoded = codec.decode(data)
                dt = CLOCK() - t
                if dt < dec:
                    dec, timings = dt, dict(codec.timings)
            r = {"model": spec, "variant": variant, "image": path.name,
                 "bpp": 8 * len(data) / pixels,
                 "psnr": psnr(rgb, np.asarray(decoded)), "enc_ms": enc * 1e3,
                 "dec_ms": dec * 1e3,
                 **{f"dec_{k}_ms": v * 1e3 for k, v in timings.items()},
                 "coded_channels": len(unpack(data)[0].coded_channels())}
            line = (f"{name[-16:]:>16} {path.stem[-11:]:>11} {r['bpp']:6.3f} {r['psnr']:6.2f} "
                    f"{r['enc_ms']:7.1f} "
                    f"{r['dec_ms']:7.1f} {r.get('dec_entropy_ms', 0):7.1f} "
                    f"{r.get('dec_hyper_ms', 0):6.1f} {r.get('dec_transform_ms', 0):6.1f} "
                    f"{100 * r.get('dec_entropy_ms', 0) / r['dec_ms']:5.1f}")
            if args.compressai:
                r["compressai"] = cai = compressai_decode(model, rgb, args.repeat)
                line += f" {cai['dec_ms']:7.1f}"
            if args.hs_cost and variant == "fp32":
                # cost of the exact h_s: its bytes minus those with float-h_s tables
                r["exact_hs_cost_bytes"] = -float_hs_bytes(codec, data)
                r["exact_hs_cost_bpp"] = 8 * r["exact_hs_cost_bytes"] / pixels
                line += f" {r['exact_hs_cost_bpp']:+8.5f}"
            if not args.no_pillow:
                for fmt in ("JPEG", "WEBP"):
                    r[fmt.lower()] = pillow_at_bpp(rgb, fmt, r["bpp"], args.repeat)
                j, w = r["jpeg"], r["webp"]
                line += (f" | {j['bpp']:8.3f} {j['enc_ms']:5.1f} {j['dec_ms']:5.1f} | "
                         f"{w['bpp']:8.3f} {w['enc_ms']:5.1f} {w['dec_ms']:5.1f}")
            print(line, flush=True)
            if args.compressai:
                print(f"{'':>16} {'CompressAI':>11} {cai['bpp']:6.3f} {'':>6} {cai['enc_ms']:7.1f} "
                      f"{cai['dec_ms']:7.1f} {cai['z_ms'] + cai['y_ms']:7.1f} "
                      f"{cai['hyper_ms']:6.1f} {cai['g_s_ms']:6.1f} "
                      f"{100 * (cai['z_ms'] + cai['y_ms']) / cai['dec_ms']:5.1f}", flush=True)
            rows.append(r)
        mine = [r for r in rows if r["model"] == spec and r["variant"] == variant]
        if len(mine) > 1:
            mean = {k: statistics.fmean(r[k] for r in mine)
                    for k in ("bpp", "psnr", "enc_ms", "dec_ms", "dec_entropy_ms",
                              "dec_hyper_ms", "dec_transform_ms")}
            line = (f"{name[-16:]:>16} {'mean':>11} {mean['bpp']:6.3f} {mean['psnr']:6.2f} "
                    f"{mean['enc_ms']:7.1f} "
                    f"{mean['dec_ms']:7.1f} {mean['dec_entropy_ms']:7.1f} "
                    f"{mean['dec_hyper_ms']:6.1f} {mean['dec_transform_ms']:6.1f} "
                    f"{100 * mean['dec_entropy_ms'] / mean['dec_ms']:5.1f}")
            if not args.no_pillow:
                pil = {f: {k: statistics.fmean(r[f][k] for r in mine) for k in r[f]
                           if k != "quality"} for f in ("jpeg", "webp")}
                j, w = pil["jpeg"], pil["webp"]
                line += (f" | {j['bpp']:8.3f} {j['enc_ms']:5.1f} {j['dec_ms']:5.1f} | "
                         f"{w['bpp']:8.3f} {w['enc_ms']:5.1f} {w['dec_ms']:5.1f}\n"
                         f"{'':>16} decode time {mean['dec_ms'] / w['dec_ms']:.1f}x WebP's, "
                         f"{mean['dec_ms'] / j['dec_ms']:.1f}x JPEG's (means over the images)")
            print(line)
            if args.hs_cost and variant == "fp32":
                cost = statistics.fmean(r["exact_hs_cost_bpp"] for r in mine)
                rel = cost / mean["bpp"] * 100
                print(f"{'':>16} exact fixed-point h_s costs {cost:+.5f} bpp ({rel:+.3f}%) "
                      "against float-h_s tables")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
