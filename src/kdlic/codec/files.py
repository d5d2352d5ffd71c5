"""Images to ``.kdl`` files and back: what ``kdlic compress`` and ``kdlic decompress`` do.

One input (a file or ``-`` for stdin): ``output`` names the output file (``-``: stdout).
Several inputs or a folder: ``output`` is a folder; a folder's files keep their relative
paths. Without ``output`` every output goes next to its input.

What is never done (docs/format.md, *What a decoder loads*):

* **Writing onto an input** (an image, a ``.kdl`` file, the model's checkpoint), even
  with ``force``; an existing output is replaced only with ``force``, as ``gzip`` and
  ``cwebp -o`` users expect. Every output is checked before the first file is coded, so
  a refused batch writes nothing.
* **Leaving a partial file**: every output is written to a temporary name and renamed.
* **Loading what a file names**: without ``model``, a ``.kdl`` file's model name is used
  only if it is the name of a zoo model, and only to look it up among the shipped
  models; it is never used as a path, a ``compressai:`` spec or anything else that would
  read a file the user did not name.
* **Decoding an image whose header declares more pixels than allowed** (the format's
  limit, or ``max_pixels``): both ways, the size is checked from the header first.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from kdlic.codec.codec import Codec
from kdlic.codec.format import MAX_PIXELS, Header, unpack
from kdlic.data.images import IMAGE_EXTENSIONS, open_image
from kdlic.errors import KdlicError
from kdlic.utils.files import atomic_open
from kdlic.utils.threads import torch_threads

STDIO = "-"


@dataclass(frozen=True)
class Job:
    source: Path | None  # None: stdin
    target: Path | None  # None: stdout


@dataclass(frozen=True)
class Written:
    """What a run wrote: its jobs and the bytes written (files and stdout)."""

    jobs: list[Job]
    bytes: int


def open_codec(spec: str, device: str = "cpu", backend: str | None = None,
               bf16: bool = False, int8: bool = False, zoo_only: bool = False) -> Codec:
    """The codec of a model spec (checkpoint, zoo name, ``compressai:`` spec) or of an
    ONNX export folder (``kdlic export``). ``backend``: ``torch`` or ``onnxruntime``
    (None: onnxruntime for an export, torch otherwise); ``int8``: the int8 synthesis of
    an export; ``zoo_only``: ``spec`` came from a file and may only name a zoo model."""
    from kdlic.codec.export import is_export

    if not zoo_only and is_export(spec):
        if backend not in (None, "onnxruntime") or bf16:
            raise KdlicError(f"{spec} is an ONNX export: it runs with --backend onnxruntime "
                             "(and --int8 where it has an int8 synthesis), not "
                             f"{'bf16' if bf16 else backend}")
        if device != "cpu":
            raise KdlicError("the onnxruntime backend runs on the CPU (--device cpu)")
        return Codec.from_export(spec, int8=int8)
    if int8:
        raise KdlicError("int8 synthesis is calibrated at export: kdlic export MODEL --format "
                         "onnx --int8 --calibration FOLDER -o DIR, then decode with -m DIR")
    from kdlic.models import load_model
    from kdlic.zoo import load_zoo_model

    model = load_zoo_model(spec) if zoo_only else load_model(spec)
    return Codec(model, device, bf16_synthesis=bf16, backend=backend or "torch")


def compress_files(inputs: list[str], output: str | None, model: str, *,
                   device: str = "cpu", backend: str | None = None, threads: int = 1,
                   force: bool = False, progress: bool = True) -> Written:
    """Compress images (files, folders or ``-``) with ``model`` (a spec or an ONNX export
    folder, see :func:`open_codec`) to ``.kdl`` files."""
    jobs = plan_jobs(inputs, output, _find_images, ".kdl")
    check_targets(jobs, _model_file(model), force)
    codec = open_codec(model, device, backend)

    def work(job: Job) -> int:
        name = str(job.source or "stdin")
        image = open_image(job.source or _read(None), max_pixels=MAX_PIXELS, name=name)
        try:
            data = codec.encode(image)
        except KdlicError as exc:
            raise KdlicError(f"{name}: {exc}") from exc
        _write(job.target, lambda f: f.write(data))
        return len(data)

    return Written(jobs, _run_jobs(jobs, work, threads, progress, "compressing"))


def decompress_files(inputs: list[str], output: str | None, model: str | None = None, *,
                     device: str = "cpu", backend: str | None = None, bf16: bool = False,
                     int8: bool = False, threads: int = 1, force: bool = False,
                     max_pixels: int | None = None, progress: bool = True) -> Written:
    """Decompress ``.kdl`` files (files, folders or ``-``) to images.

    ``model``: the spec of the model the files were made with, or an ONNX export folder;
    None: the zoo model each file names (anything else a file names is refused).
    ``backend``, ``bf16``, ``int8``: what runs the transforms (:func:`open_codec`).
    ``max_pixels``: refuse files declaring more pixels (default: the format's limit).
    """
    if max_pixels is not None and max_pixels < 1:
        raise KdlicError(f"the pixel limit must be at least 1, got {max_pixels}")
    if int8 and model is None:
        raise KdlicError("--int8 runs an ONNX export's int8 synthesis: name the export "
                         "with -m (kdlic export MODEL --int8 --calibration FOLDER -o DIR)")
    jobs = plan_jobs(inputs, output, _find_kdl, ".png")
    for job in jobs:
        if job.target is not None:
            _image_format(job.target)  # refuse an unknown extension before decoding
    check_targets(jobs, _model_file(model), force)
    codecs = _Codecs(model, lambda spec, zoo_only: open_codec(spec, device, backend, bf16,
                                                              int8, zoo_only))

    def work(job: Job) -> int:
        name = str(job.source or "stdin")
        data = _read(job.source)
        try:
            # The header (size, model) is checked before a model is loaded or a pixel
            # decoded; decode() checks it again, a few microseconds.
            header, _ = unpack(data, max_pixels)
            image = codecs.codec_for(header).decode(data, max_pixels)
        except KdlicError as exc:
            raise KdlicError(f"{name}: {exc}") from exc
        fmt = _image_format(job.target) if job.target is not None else "PNG"
        written = []

        def save(f) -> None:
            try:
                image.save(f, format=fmt)
            except OSError as exc:
                if exc.errno is not None:  # the write itself failed (a full disk): not the format
                    raise
                raise KdlicError(f"cannot save a {image.mode} image as {fmt}: {exc}") from exc
            except (ValueError, KeyError) as exc:
                raise KdlicError(f"cannot save a {image.mode} image as {fmt}: {exc}") from exc
            written.append(f.tell())

        _write(job.target, save)
        return written[0] if written else 0

    return Written(jobs, _run_jobs(jobs, work, threads, progress, "decompressing"))


def plan_jobs(inputs: list[str], output: str | None, find: Callable[[Path], list[Path]],
              suffix: str) -> list[Job]:
    """Map inputs to outputs (see the module docstring); checks inputs exist."""
    if not inputs:
        raise KdlicError("no inputs")
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


def check_targets(jobs: list[Job], also_inputs: list[Path], force: bool) -> None:
    """Refuse to write onto any input (always) or onto an existing file (unless ``force``).

    Files are compared by identity (device and inode), so a symlink or a hard link to an
    input, or another spelling of its path, is recognised as that input.
    """
    inputs = {_identity(p) for p in [*(j.source for j in jobs if j.source), *also_inputs]}
    for job in jobs:
        identity = _identity(job.target) if job.target is not None else None
        if identity is None:
            continue  # stdout, or nothing there yet
        if identity in inputs:
            raise KdlicError(f"refusing to write {job.target}: it is one of the inputs")
        if not force:
            raise KdlicError(f"{job.target} already exists (--force overwrites it)")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _model_file(spec: str | None) -> list[Path]:
    """The files a model spec names, if any (a checkpoint, the FILE of
    ``compressai:ARCH:QUALITY:FILE``, an ONNX export's files): inputs too."""
    from kdlic.codec.export import GRAPHS, is_export

    if spec is None:
        return []
    if is_export(spec):
        root = Path(spec).expanduser()
        return [p for p in (root / n for n in ("manifest.json", "tables.json",
                                                 *GRAPHS.values())) if p.exists()]
    if spec.startswith("compressai:"):
        parts = spec.split(":", 3)
        spec = parts[3] if len(parts) == 4 else ""
    path = Path(spec).expanduser()
    return [path] if spec and _identity(path) is not None else []


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
    except OSError as exc:  # ENOSPC reads "No space left on device"
        raise KdlicError(f"cannot write {target}: {exc.strerror or exc}") from exc


def _run_jobs(jobs: list[Job], work: Callable[[Job], int], threads: int, progress: bool,
              verb: str) -> int:
    """Run ``work`` on every job (``threads`` at a time); the first error stops the run.
    Returns the bytes written."""
    if threads < 1:
        raise KdlicError("--threads must be at least 1")
    bar = tqdm(total=len(jobs), unit="file", desc=verb, leave=False,
               disable=True if not progress or len(jobs) < 2 else None)  # None: tty only
    total = 0
    # Several files: one thread each. One file: the decoder spreads its g_s stripes over
    # the threads. Outputs are independent of the thread count either way (kdlic.codec).
    per_file = threads if len(jobs) == 1 else 1
    try:
        with torch_threads(per_file), ThreadPoolExecutor(max_workers=threads) as pool:
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
    return total


class _Codecs:
    """Codecs by model, loaded once; the model comes from ``spec`` or the zoo."""

    def __init__(self, spec: str | None, load: Callable[[str, bool], Codec]) -> None:
        self.spec, self._load = spec, load
        self.codecs: dict[str, Codec] = {}
        self.lock = threading.Lock()
        if spec is not None:  # a bad --model fails before any file is read
            self.codecs[spec] = self._load(spec, False)

    def codec_for(self, header: Header) -> Codec:
        spec = self.spec
        if spec is None:
            spec = zoo_model_of(header)
        with self.lock:
            if spec not in self.codecs:
                self.codecs[spec] = self._load(spec, self.spec is None)
            return self.codecs[spec]


def zoo_model_of(header: Header) -> str:
    """The zoo model a file names; :class:`KdlicError` for any other name.

    The name is only compared with the shipped models' names: whatever a file holds
    (a path, a ``compressai:`` spec with a file, 255 bytes) it never reaches the file
    system.
    """
    from kdlic.zoo import zoo_names

    name = header.model_name
    if name and name in zoo_names():
        return name
    shown = repr(name if len(name) <= 60 else name[:57] + "...")
    raise KdlicError(f"made with model {shown} (id {header.model_id.hex()}), which is not a "
                     "zoo model; a file's model name is only looked up in the zoo, so "
                     "name the model with --model")


def _image_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if not suffix:
        return "PNG"
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise KdlicError(f"cannot write images with extension {suffix!r} (try .png)")
    return fmt


__all__ = ["Job", "Written", "check_targets", "compress_files", "decompress_files",
           "plan_jobs", "zoo_model_of"]
