"""Decoder-only students against full students of the same g_s width, on Kodak.

One encoder, many decoders: a decoder-only student decodes its teacher's files (same
bpp, its own g_s); a full student of the same width has its own encoder and bitstream.
Which buys more quality per decoder FLOP? For each model: real-bitstream bpp and PSNR,
the RD cost at the teacher's lambda (lambda * 255^2 * MSE + bpp, lower is better, the
objective all of them were trained on), decoder GMAC per 768x512 frame (h_s + g_s,
multiply-adds) and decode time (best of --repeat on each of the first --time-images
images, mean over them; --threads threads, float32 unless --bf16).

    python benchmarks/decoder_only.py --teacher teacher-q5 \\
        --decoders ~/.cache/kdlic/runs/decoder-n16/best.pt \\
                   ~/.cache/kdlic/runs/decoder-n32/best.pt \\
                   ~/.cache/kdlic/runs/decoder-n64/best.pt \\
        --students student-n16-l1 student-n32-l1 student-n64-l1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import kdlic
from kdlic.codec import Codec
from kdlic.data.images import find_images, load_rgb
from kdlic.evaluation.metrics import rd_cost
from kdlic.evaluation.profile import transform_flops
from kdlic.models import load_model
from kdlic.models.identity import is_decoder_only

ROOT = Path(__file__).resolve().parents[1]
FRAME = (512, 768)  # (H, W), the profile's frame


def decode_ms(codec: Codec, images: list[Path], repeat: int) -> float:
    """Mean over ``images`` of the best-of-``repeat`` decode time, in ms."""
    times = []
    for path in images:
        data = codec.encode(load_rgb(path))
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            codec.decode(data)
            best = min(best, time.perf_counter() - t)
        times.append(best * 1e3)
    return statistics.fmean(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--teacher", required=True)
    p.add_argument("--decoders", nargs="+", required=True, help="decoder-only students")
    p.add_argument("--students", nargs="*", default=[], help="full students to compare")
    p.add_argument("--images", default=str(ROOT.parent / "shared/data/kodak"))
    p.add_argument("--time-images", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bf16", action="store_true", help="decode with g_s in bf16")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = find_images(args.images, "test")
    specs = [args.teacher, *args.decoders, *args.students]
    models = [load_model(spec) for spec in specs]  # each loaded once
    lmbda = float(models[0].meta["lmbda"])
    results = kdlic.evaluate(models, [str(i) for i in images], name="decoder-only")
    print(f"{'model':<28} {'kind':<13} {'N':>4} {'dec GMAC':>8} {'dec ms':>7} {'bpp':>6} "
          f"{'PSNR':>6} {'RD cost':>7}")
    for i, (spec, model) in enumerate(zip(specs, models, strict=True)):
        kind = ("teacher" if i == 0 else
                "decoder-only" if is_decoder_only(model) else "full student")
        gmac = transform_flops(model, FRAME)["decoder"] / 2e9
        ms = decode_ms(Codec(model, bf16_synthesis=args.bf16), images[: args.time_images],
                       args.repeat)
        bpp, psnr = results["results"]["bpp"][i], results["results"]["psnr-rgb"][i]
        rd = rd_cost(results["models"][i]["per_image"], lmbda)
        name = Path(spec).parent.name if spec.endswith(".pt") else spec
        print(f"{name[-28:]:<28} {kind:<13} {model.N:>4} {gmac:8.2f} {ms:7.1f} "
              f"{bpp:6.3f} {psnr:6.2f} {rd:7.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
