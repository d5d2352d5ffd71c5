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
