"""``kdlic compress`` and ``kdlic decompress``: images to ``.kdl`` files and back.

The Python API is :func:`kdlic.codec.encode` / :func:`kdlic.codec.decode`.

One input (a file or ``-`` for stdin): ``-o`` names the output file (``-``: stdout).
Several inputs or a folder: ``-o`` is a folder; a folder's files keep their relative
paths. Without ``-o`` every output goes next to its input. Every output file is
written to a temporary name and renamed, so a failure never leaves a partial file.
"""

from __future__ import annotations

import argparse
import io
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from kdlic.cli.common import quiet_logging
from kdlic.data.images import IMAGE_EXTENSIONS
from kdlic.errors import KdlicError
from kdlic.utils.files import atomic_open
from kdlic.utils.threads import torch_threads

STDIO = "-"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``kdlic compress`` (``kdlic decompress`` is in :mod:`kdlic.cli.decompress`)."""
    p = subparsers.add_parser(
        "compress",
        help="compress images to .kdl files with a model",
        description="Compress images (files, folders, or - for stdin) to .kdl files. With "
        "one input, -o is the output file (- for stdout); with several inputs or a folder, "
        "-o is a folder and each output is NAME.kdl. See docs/format.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image file, folder, or -")
    p.add_argument("--model", "-m", required=True,
                   help="checkpoint, zoo name or compressai:bmshj2018-hyperprior:Q")
    _common(p)
    p.set_defaults(func=run_compress)


def register_decompress(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "decompress",
        help="decompress .kdl files to images (PNG)",
        description="Decompress .kdl files (files, folders, or - for stdin) to images. "
        "With one input, -o is the output file (- for stdout; the format follows its "
        "extension, PNG by default); with several inputs or a folder, -o is a folder and "
        "each output is NAME.png. The colour mode is kept (RGB, L, RGBA, LA).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="FILE", help=".kdl file, folder, or -")
    p.add_argument("--model", "-m",
                   help="the model the files were made with (default: the model named in "
                   "each file, if it is a zoo model or a compressai: spec)")
    p.add_argument("--bf16", action="store_true",
                   help="run the synthesis transform in bf16 (only where the CPU/GPU has "
                   "native bf16 kernels): faster, pixels a few levels from the fp32 decode "
                   "(0.03-0.04 dB lower PSNR on Kodak here; docs/format.md)")
    _common(p)
    p.set_defaults(func=run_decompress)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", "-o", help="output file (one input), folder (several inputs "
                   "or a folder), or - for stdout; default: next to each input")
    p.add_argument("--threads", type=int, default=1,
                   help="files processed in parallel, one thread each; a single file's "
                   "decoder runs its synthesis stripes on them (the output never depends "
                   "on this)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@dataclass(frozen=True)
class Job:
    source: Path | None  # None: stdin
    target: Path | None  # None: stdout


def plan_jobs(inputs: list[str], output: str | None, find: Callable[[Path], list[Path]],
              suffix: str) -> list[Job]:
    """Map inputs to outputs (see the module docstring); checks inputs exist."""
    if STDIO in inputs and len(inputs) > 1:
        raise KdlicError("- (stdin) must be the only input")
    single = len(inputs) == 1 and (inputs[0] == STDIO or not Path(inputs[0]).is_dir())
    if single:
        src = None if inputs[0] == STDIO else _existing(Path(inputs[0]))
        if output == STDIO or (output is None and src is None):
            return [Job(src, None)]
        target = Path(output) if output is not None else src.with_suffix(suffix)
        if target.is_dir():
            target = target / (src.with_suffix(suffix).name if src else f"stdin{suffix}")
        return [Job(src, target)]
    if output == STDIO:
        raise KdlicError("several outputs cannot go to stdout; give a folder with -o")
    out_dir = Path(output) if output is not None else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise KdlicError(f"{out_dir} is not a folder (with several inputs, -o is a folder)")
    jobs: list[Job] = []
    for name in inputs:
        path = _existing(Path(name))
        if path.is_dir():
            files = find(path)
            if not files:
                raise KdlicError(f"no input files in folder {path}")
            for f in files:
                rel = f.relative_to(path).with_suffix(suffix)
                jobs.append(Job(f, (out_dir / rel) if out_dir else f.with_suffix(suffix)))
        else:
            target = (out_dir / path.with_suffix(suffix).name) if out_dir else \
                path.with_suffix(suffix)
            jobs.append(Job(path, target))
    seen: dict[Path, Path] = {}
    for job in jobs:
        key = job.target.resolve()
        if key in seen:
            raise KdlicError(f"{seen[key]} and {job.source} would both be written to "
                             f"{job.target}")
        seen[key] = job.source
    return jobs


def _existing(path: Path) -> Path:
    if not path.exists():
        raise KdlicError(f"input not found: {path}")
    return path


def _find_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _find_kdl(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.kdl") if p.is_file())


def _read(source: Path | None) -> bytes:
    try:
        return sys.stdin.buffer.read() if source is None else source.read_bytes()
    except IsADirectoryError:
        raise KdlicError(f"{source} is a directory, not a file") from None
    except OSError as exc:
        raise KdlicError(f"cannot read {source or 'stdin'}: {exc.strerror or exc}") from exc


def _write(target: Path | None, write: Callable[[io.BufferedIOBase], None]) -> None:
    """Write atomically to ``target`` (temporary file + rename), or to stdout."""
    if target is None:
        buf = io.BytesIO()
        write(buf)
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
        return
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise KdlicError(f"cannot write {target}: {parent} is not a folder")
            break
    try:
        with atomic_open(target, "wb") as f:
            write(f)
    except KdlicError:
        raise
    except OSError as exc:
        raise KdlicError(f"cannot write {target}: {exc.strerror or exc}") from exc


def _run_jobs(jobs: list[Job], work: Callable[[Job], int], args: argparse.Namespace,
              verb: str) -> int:
    """Run ``work`` on every job (``--threads`` at a time); the first error stops the run."""
    quiet_logging()
    if args.threads < 1:
        raise KdlicError("--threads must be at least 1")
    bar = tqdm(total=len(jobs), unit="file", desc=verb, leave=False,
               disable=True if args.no_progress or len(jobs) < 2 else None)  # None: tty only
    total = 0
    # Several files: one thread each. One file: the decoder spreads its g_s stripes over
    # the threads. Outputs are independent of --threads either way (see kdlic.codec).
    per_file = args.threads if len(jobs) == 1 else 1
    try:
        with torch_threads(per_file), ThreadPoolExecutor(max_workers=args.threads) as pool:
            pending = {pool.submit(work, job) for job in jobs}
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    if future.exception() is not None:
                        for other in pending:
                            other.cancel()
                        raise future.exception()
                    total += future.result()
                    bar.update(1)
    finally:
        bar.close()
    if len(jobs) > 1 or jobs[0].target is not None:
        where = jobs[0].target if len(jobs) == 1 else f"{len(jobs)} files"
        print(f"{verb}: {where} ({total} bytes written)", file=sys.stderr)
    return 0


def run_compress(args: argparse.Namespace) -> int:
    from kdlic.codec import Codec
    from kdlic.data.images import open_image
    from kdlic.models import load_model

    jobs = plan_jobs(args.inputs, args.output, _find_images, ".kdl")
    codec = Codec(load_model(args.model), args.device)

    def work(job: Job) -> int:
        if job.source is None:
            image = _image_from_bytes(_read(None), "stdin")
        else:
            image = open_image(job.source)
        try:
            data = codec.encode(image)
        except KdlicError as exc:
            raise KdlicError(f"{job.source or 'stdin'}: {exc}") from exc
        _write(job.target, lambda f: f.write(data))
        return len(data)

    return _run_jobs(jobs, work, args, "compressed")


def _image_from_bytes(data: bytes, name: str) -> Image.Image:
    from kdlic.data.images import open_image

    if not data:
        raise KdlicError(f"{name} is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return open_image(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise KdlicError(f"cannot read image from {name}: {exc}") from exc


class _Models:
    """Codecs by model, loaded once; the model comes from --model or the file."""

    def __init__(self, spec: str | None, device: str, bf16: bool) -> None:
        self.spec, self.device, self.bf16 = spec, device, bf16
        self.codecs: dict[str, object] = {}
        self.lock = threading.Lock()
        if spec is not None:  # a bad --model fails before any file is read
            self.codecs[spec] = self._load(spec)

    def _load(self, spec: str):
        from kdlic.codec import Codec
        from kdlic.models import load_model

        return Codec(load_model(spec), self.device, bf16_synthesis=self.bf16)

    def codec_for(self, data: bytes, name: str):
        from kdlic.codec import peek_model

        spec = self.spec
        if spec is None:
            model_id, model_name = peek_model(data)
            if not _loadable_by_name(model_name):
                raise KdlicError(
                    f"made with model '{model_name}' (id {model_id.hex()}), which is not a "
                    "zoo model; name its checkpoint with --model")
            spec = model_name
        with self.lock:
            if spec not in self.codecs:
                self.codecs[spec] = self._load(spec)
            return self.codecs[spec]


def _loadable_by_name(name: str) -> bool:
    from kdlic.zoo import zoo_path

    return name.startswith("compressai:") or (bool(name) and zoo_path(name) is not None)


def run_decompress(args: argparse.Namespace) -> int:
    jobs = plan_jobs(args.inputs, args.output, _find_kdl, ".png")
    for job in jobs:
        if job.target is not None:
            _image_format(job.target)  # refuse an unknown extension before decoding
    models = _Models(args.model, args.device, args.bf16)

    def work(job: Job) -> int:
        name = str(job.source or "stdin")
        data = _read(job.source)
        try:
            image = models.codec_for(data, name).decode(data)
        except KdlicError as exc:
            raise KdlicError(f"{name}: {exc}") from exc
        fmt = _image_format(job.target) if job.target is not None else "PNG"
        written = []

        def save(f) -> None:
            try:
                image.save(f, format=fmt)
            except (OSError, ValueError, KeyError) as exc:
                raise KdlicError(f"cannot save a {image.mode} image as {fmt}: {exc}") from exc
            written.append(f.tell())

        _write(job.target, save)
        return written[0] if written else 0

    return _run_jobs(jobs, work, args, "decompressed")


def _image_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if not suffix:
        return "PNG"
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise KdlicError(f"cannot write images with extension {suffix!r} (try .png)")
    return fmt
