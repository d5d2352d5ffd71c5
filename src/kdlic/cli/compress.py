"""``kdlic compress`` and ``kdlic decompress``: images to ``.kdl`` files and back.

The work is :func:`kdlic.codec.files.compress_files` / ``decompress_files`` (file
handling, overwrite rules); the Python API for one image is :func:`kdlic.codec.encode` /
:func:`kdlic.codec.decode`.
"""

from __future__ import annotations

import argparse
import sys

from kdlic.cli.common import quiet_logging


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``kdlic compress`` (``kdlic decompress`` is in :mod:`kdlic.cli.decompress`)."""
    p = subparsers.add_parser(
        "compress",
        help="compress images to .kdl files with a model",
        description="Compress images (files, folders, or - for stdin) to .kdl files. With "
        "one input, -o is the output file (- for stdout); with several inputs or a folder, "
        "-o is a folder and each output is NAME.kdl. Existing files are not overwritten "
        "without --force, inputs never. See docs/format.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image file, folder, or -")
    p.add_argument("--model", "-m", required=True,
                   help="checkpoint, zoo name, compressai:bmshj2018-hyperprior:Q, or an ONNX "
                   "export folder (kdlic export)")
    _common(p)
    p.set_defaults(func=run_compress)


def register_decompress(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "decompress",
        help="decompress .kdl files to images (PNG)",
        description="Decompress .kdl files (files, folders, or - for stdin) to images. "
        "With one input, -o is the output file (- for stdout; the format follows its "
        "extension, PNG by default); with several inputs or a folder, -o is a folder and "
        "each output is NAME.png. The colour mode is kept (RGB, L, RGBA, LA). Existing "
        "files are not overwritten without --force, inputs never.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="FILE", help=".kdl file, folder, or -")
    p.add_argument("--model", "-m",
                   help="the model the files were made with, or an ONNX export folder of it "
                   "(default: the model named in each file, if it is a zoo model; any other "
                   "name is refused)")
    p.add_argument("--max-pixels", type=int,
                   help="refuse files declaring more pixels, from their header (default: "
                   "the format's limit, 2^26 = 67108864, 8192x8192)")
    p.add_argument("--bf16", action="store_true",
                   help="run the synthesis transform in bf16 (only where the CPU/GPU has "
                   "native bf16 kernels): faster, pixels a few levels from the fp32 decode "
                   "(0.03-0.04 dB lower PSNR on Kodak here; docs/format.md)")
    p.add_argument("--int8", action="store_true",
                   help="run the synthesis transform in int8 (an ONNX export made with "
                   "--int8; onnxruntime backend): the latents are exact, the pixels "
                   "those of the quantised g_s")
    _common(p)
    p.set_defaults(func=run_decompress)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", "-o", help="output file (one input), folder (several inputs "
                   "or a folder), or - for stdout; default: next to each input")
    p.add_argument("--threads", type=int, default=1,
                   help="files processed in parallel, one thread each; a single file's "
                   "decoder runs its synthesis stripes on them (the output never depends "
                   "on this)")
    p.add_argument("--force", "-f", action="store_true",
                   help="overwrite existing output files (never an input)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--backend", choices=["torch", "onnxruntime"],
                   help="what runs the transforms; the bitstream is the same (default: "
                   "onnxruntime for an ONNX export, torch otherwise; onnxruntime needs "
                   "pip install 'kdlic[export]')")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_compress(args: argparse.Namespace) -> int:
    from kdlic.codec.files import compress_files

    quiet_logging()
    written = compress_files(args.inputs, args.output, args.model, device=args.device,
                             backend=args.backend, threads=args.threads, force=args.force,
                             progress=not args.no_progress)
    _report(written, "compressed")
    return 0


def run_decompress(args: argparse.Namespace) -> int:
    from kdlic.codec.files import decompress_files

    quiet_logging()
    written = decompress_files(args.inputs, args.output, args.model, device=args.device,
                               backend=args.backend, bf16=args.bf16, int8=args.int8,
                               threads=args.threads, force=args.force,
                               max_pixels=args.max_pixels, progress=not args.no_progress)
    _report(written, "decompressed")
    return 0


def _report(written, verb: str) -> None:
    jobs = written.jobs
    if len(jobs) > 1 or jobs[0].target is not None:  # nothing on stderr for stdout output
        where = jobs[0].target if len(jobs) == 1 else f"{len(jobs)} files"
        print(f"{verb}: {where} ({written.bytes} bytes written)", file=sys.stderr)
