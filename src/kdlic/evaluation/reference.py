"""Published reference curves (Kodak, 24 images), as quoted in ../shared/docs/method.md."""

from __future__ import annotations

# CompressAI's pre-trained bmshj2018-hyperprior (MSE), qualities 1..8, real bitstreams.
COMPRESSAI_HYPERPRIOR = {
    "name": "CompressAI bmshj2018-hyperprior (published)",
    "quality": [1, 2, 3, 4, 5, 6, 7, 8],
    "lmbda": [0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800],
    "bpp": [0.131, 0.209, 0.320, 0.478, 0.669, 0.939, 1.259, 1.660],
    "psnr-rgb": [27.58, 29.20, 30.97, 32.84, 34.53, 36.74, 38.58, 40.56],
}

# The KD paper's table (method.md section 3): its teacher (CompressAI's hyperprior q5,
# N=128) and its students distilled with loss L1 at lambda 0.025, on Kodak. GFLOPs are
# fvcore's counts, which are multiply-adds (the teacher's 34.24 is kdlic's GMACs); memory
# is the fp32 weights in MiB (the students' figures equal kdlic's params_mib; the
# teacher's 20.18 is 0.8 more, perhaps its buffers); FPS and energy on an RTX 3090 GPU.
PAPER_SIZE_TABLE = [
    {"N": n, "params_m": p, "memory_mb": mem, "gflops": g, "fps": fps, "energy_mj": e,
     "psnr-rgb": q, "bpp": b}
    for n, p, mem, g, fps, e, q, b in [
        (128, 5.08, 20.18, 34.24, 184.2, 1767.9, 34.53, 0.67),
        (112, 4.07, 15.53, 26.70, 209.0, 1600.4, 34.44, 0.66),
        (96, 3.17, 12.11, 20.10, 231.6, 1416.3, 34.41, 0.66),
        (64, 1.69, 6.46, 9.67, 232.5, 1164.2, 34.11, 0.66),
        (32, 0.64, 2.43, 2.98, 231.9, 699.2, 32.71, 0.60),
        (16, 0.27, 1.01, 1.02, 233.6, 684.5, 29.98, 0.45),
    ]
]
