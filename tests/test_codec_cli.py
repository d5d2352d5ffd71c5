"""`kdlic compress` / `kdlic decompress`: batches, stdio, and hostile input.

Every failure must be one line on stderr, exit code 2, and leave no output file (and
no temporary file) behind.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdlic.cli import main
from kdlic.codec import Codec, pack, unpack
from kdlic.utils.checkpoint import save_checkpoint
from tests.conftest import reads_under, write_png_bomb
from tests.test_codec import make_model, smooth


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_checkpoint(root / "a.pt", make_model(seed=0), {"lmbda": 0.01})
    save_checkpoint(root / "b.pt", make_model(seed=1), {"lmbda": 0.01})
    return root / "a.pt", root / "b.pt"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    (root / "sub").mkdir()
    Image.fromarray(smooth(48, 64, 1)).save(root / "one.png")
    Image.fromarray(smooth(30, 20, 2)).save(root / "sub" / "two.png")
    Image.fromarray(smooth(33, 33, 3)[..., 0]).save(root / "sub" / "gray.png")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def kdl(models, images, tmp_path_factory):
    """A valid small .kdl file made with model a."""
    path = tmp_path_factory.mktemp("kdl") / "one.kdl"
    assert main(["compress", str(images / "one.png"), "-o", str(path), "--model",
                 str(models[0])]) == 0
    return path


@pytest.fixture
def kdlic(capsys):
    def run(*args):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.err

    return run


def assert_clean_error(result, *fragments):
    code, err = result
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_nothing_written(folder: Path, before: set[str]):
    assert {p.name for p in folder.iterdir()} == before


def test_single_file_round_trip(kdlic, models, images, kdl, tmp_path):
    out = tmp_path / "one.png"
    code, _ = kdlic("decompress", kdl, "-o", out, "--model", models[0])
    assert code == 0
    expected = Codec(make_model(seed=0)).decode(kdl.read_bytes())
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(expected))


def test_folders_keep_relative_paths(kdlic, models, images, tmp_path):
    code, err = kdlic("compress", images, "-o", tmp_path / "c", "--model", models[0],
                      "--threads", 2)
    assert code == 0, err
    assert sorted(str(p.relative_to(tmp_path / "c")) for p in (tmp_path / "c").rglob("*")) == [
        "one.kdl", "sub", "sub/gray.kdl", "sub/two.kdl"]
    code, err = kdlic("decompress", tmp_path / "c", "-o", tmp_path / "d", "--model", models[0])
    assert code == 0, err
    assert Image.open(tmp_path / "d" / "sub" / "gray.png").mode == "L"
    assert Image.open(tmp_path / "d" / "sub" / "two.png").size == (20, 30)


def test_several_files_go_to_a_folder(kdlic, models, images, tmp_path):
    code, _ = kdlic("compress", images / "one.png", images / "sub" / "two.png", "-o",
                    tmp_path / "o", "--model", models[0], "--no-progress")
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["one.kdl", "two.kdl"]


def test_stdin_and_stdout(models, images, kdl, monkeypatch, capsysbinary):
    def run(*args, stdin: bytes) -> bytes:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        assert main([str(a) for a in args]) == 0
        return capsysbinary.readouterr().out

    comp = run("compress", "-", "-o", "-", "--model", models[0],
               stdin=(images / "one.png").read_bytes())
    assert comp == kdl.read_bytes()
    png = run("decompress", "-", "--model", models[0], stdin=comp)
    assert Image.open(io.BytesIO(png)).size == (64, 48)


def test_wrong_model(kdlic, models, kdl, tmp_path):
    result = kdlic("decompress", kdl, "-o", tmp_path / "x.png", "--model", models[1])
    assert_clean_error(result, "encoded with model 'a.pt'", "not with 'b.pt'")
    assert_nothing_written(tmp_path, set())


def test_bf16_without_native_kernels_is_a_clean_error(kdlic, models, kdl, tmp_path,
                                                      monkeypatch):
    import kdlic.codec.codec as codec_module

    monkeypatch.setattr(codec_module, "fast_bf16", lambda device: False)
    out = tmp_path / "out.png"
    assert_clean_error(kdlic("decompress", kdl, "-o", out, "--model", models[0], "--bf16"),
                       "no native bf16")
    assert not out.exists()


def test_model_named_in_the_file_must_be_loadable(kdlic, kdl, tmp_path):
    result = kdlic("decompress", kdl, "-o", tmp_path / "x.png")
    assert_clean_error(result, "made with model 'a.pt'", "--model")


def corrupt_cases(valid: bytes) -> dict[str, tuple[bytes, str]]:
    rng = np.random.default_rng(0)
    pos = 15 + valid[14]
    huge = bytearray(valid)
    struct.pack_into("<II", huge, pos, 100000, 100000)
    struct.pack_into("<HH", huge, pos + 12, 1563, 1563)
    huge[-4:] = struct.pack("<I", zlib.crc32(bytes(huge[:-4])))
    flipped = bytearray(valid)
    flipped[len(valid) // 2] ^= 0x10
    return {
        "empty": (b"", "empty file"),
        "magic": (b"GIF89a" + valid[6:], "wrong magic"),
        "version": (valid[:4] + b"\x09" + valid[5:], "unsupported format version 9"),
        "truncated": (valid[: len(valid) // 2], "truncated"),
        "flipped": (bytes(flipped), "checksum mismatch"),
        "random": (rng.integers(0, 256, 500, dtype=np.uint8).tobytes(), "wrong magic"),
        "huge": (bytes(huge), "100000x100000 is out of range"),
    }


@pytest.mark.parametrize("case", ["empty", "magic", "version", "truncated", "flipped",
                                  "random", "huge"])
def test_hostile_files(kdlic, models, kdl, tmp_path, case):
    data, message = corrupt_cases(kdl.read_bytes())[case]
    bad = tmp_path / "in" / "bad.kdl"
    bad.parent.mkdir()
    bad.write_bytes(data)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = kdlic("decompress", bad, "-o", out_dir / "bad.png", "--model", models[0])
    assert_clean_error(result, message)
    assert_nothing_written(out_dir, set())


def test_every_truncation_fails_cleanly_in_the_cli(kdlic, models, kdl, tmp_path):
    data = kdl.read_bytes()
    bad = tmp_path / "t.kdl"
    for n in range(0, len(data), max(1, len(data) // 12)):  # every position: test_codec.py
        bad.write_bytes(data[:n])
        assert_clean_error(kdlic("decompress", bad, "-o", tmp_path / "t.png", "--model",
                                 models[0]))
    assert_nothing_written(tmp_path, {"t.kdl"})


def test_a_bad_file_in_a_batch_stops_with_its_name(kdlic, models, kdl, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.kdl").write_bytes(kdl.read_bytes())
    (folder / "zbad.kdl").write_bytes(b"KDLC\x01")
    result = kdlic("decompress", folder, "-o", tmp_path / "out", "--model", models[0])
    assert_clean_error(result, "zbad.kdl", "truncated")
    assert not (tmp_path / "out" / "zbad.png").exists()


def test_directory_inputs(kdlic, models, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_error(kdlic("compress", empty, "-o", tmp_path / "o", "--model", models[0]),
                       "no input files in folder")
    assert_clean_error(kdlic("decompress", empty, "-o", tmp_path / "o", "--model", models[0]),
                       "no input files in folder")
    assert not (tmp_path / "o").exists()


def test_missing_and_unreadable_inputs(kdlic, models, images, tmp_path):
    assert_clean_error(kdlic("compress", tmp_path / "nope.png", "-o", tmp_path / "x.kdl",
                             "--model", models[0]), "input not found")
    assert_clean_error(kdlic("compress", images / "notes.txt", "-o", tmp_path / "x.kdl",
                             "--model", models[0]), "cannot read image")
    assert not (tmp_path / "x.kdl").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permissions do not stop root")
def test_permission_denied(kdlic, models, images, kdl, tmp_path):
    locked = tmp_path / "locked.kdl"
    locked.write_bytes(kdl.read_bytes())
    locked.chmod(0)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert_clean_error(kdlic("decompress", locked, "-o", tmp_path / "x.png", "--model",
                                 models[0]), "cannot read", "Permission denied")
        assert_clean_error(kdlic("compress", images / "one.png", "-o", ro / "x.kdl",
                                 "--model", models[0]), "cannot write", "Permission denied")
        assert not list(ro.iterdir())
    finally:
        locked.chmod(0o600)
        ro.chmod(0o700)


def test_unwritable_output(kdlic, models, images, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_clean_error(kdlic("compress", images / "one.png", "-o", blocker / "x.kdl",
                             "--model", models[0]), "cannot write", "is not a folder")
    assert_clean_error(kdlic("compress", images / "one.png", images / "sub" / "two.png", "-o",
                             blocker, "--model", models[0]), "is not a folder")
    assert blocker.read_text() == "x"


def test_output_errors_leave_no_partial_file(kdlic, models, kdl, tmp_path):
    # An RGB image cannot be saved in a format that does not exist: refused up front.
    assert_clean_error(kdlic("decompress", kdl, "-o", tmp_path / "x.nope", "--model",
                             models[0]), "extension")
    rgba = tmp_path / "rgba.kdl"
    assert kdlic("compress", "--model", models[0], "-o", rgba, _rgba(tmp_path))[0] == 0
    assert_clean_error(kdlic("decompress", rgba, "-o", tmp_path / "x.jpg", "--model",
                             models[0]), "cannot save a RGBA image as JPEG")
    assert not list(tmp_path.glob("x.*")) and not list(tmp_path.glob(".x*"))


def _rgba(folder: Path) -> Path:
    path = folder / "rgba.png"
    Image.fromarray(np.dstack([smooth(20, 20), smooth(20, 20)[..., :1]]), "RGBA").save(path)
    return path


def test_output_collisions_are_refused(kdlic, models, images, tmp_path):
    other = tmp_path / "one.png"
    other.write_bytes((images / "one.png").read_bytes())
    assert_clean_error(kdlic("compress", images / "one.png", other, "-o", tmp_path / "o",
                             "--model", models[0]), "would both be written")


# -- issue 13: nothing a file says chooses what is loaded; nothing is overwritten -------
def _renamed(kdl_bytes: bytes, name: str) -> bytes:
    """The same file with another model name in its header (checksum recomputed)."""
    header, streams = unpack(kdl_bytes)
    return pack(dataclasses.replace(header, model_name=name), streams)


@pytest.fixture(scope="module")
def secret(tmp_path_factory):
    """CompressAI-style weights of model a: a file a .kdl header must never make us read
    (decoding with it would succeed, so reading it would go unnoticed)."""
    path = tmp_path_factory.mktemp("secret") / "weights.pth.tar"
    torch.save(make_model(seed=0).state_dict(), path)
    return path


@pytest.mark.parametrize("kind", ["compressai-path", "compressai", "path", "relative", "random",
                                  "long", "newline"])
def test_a_file_never_chooses_a_file_to_load(kdlic, models, kdl, secret, tmp_path,
                                              opened_files, kind):
    name = {
        "compressai-path": f"compressai:bmshj2018-hyperprior:3:{secret}",
        "compressai": "compressai:bmshj2018-hyperprior:3",
        "path": str(models[0]),
        "relative": f"../{secret.parent.name}/{secret.name}",
        "random": "random:N=8,M=16",
        "long": "x" * 255,  # once OSError: File name too long
        "newline": "a.pt\nkdlic decompress: ok",
    }[kind]
    bad = tmp_path / "in.kdl"
    bad.write_bytes(_renamed(kdl.read_bytes(), name))
    out = tmp_path / "out.png"
    opened_files.clear()
    assert_clean_error(kdlic("decompress", bad, "-o", out), "not a zoo model", "--model")
    assert not reads_under(opened_files, secret.parent)
    assert not reads_under(opened_files, models[0].parent)
    assert_nothing_written(tmp_path, {"in.kdl"})


def test_a_zoo_name_is_looked_up_in_the_zoo_only(kdlic, models, kdl, tmp_path, monkeypatch,
                                                 opened_files):
    """A file in the current folder named like the zoo model is not what gets loaded."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "student-n16-l1").write_bytes(models[0].read_bytes())
    (tmp_path / "in.kdl").write_bytes(_renamed(kdl.read_bytes(), "student-n16-l1"))
    opened_files.clear()
    result = kdlic("decompress", "in.kdl", "-o", "out.png")
    assert_clean_error(result, "encoded with model 'student-n16-l1'", "not with 'student-n16-l1'")
    assert not reads_under(opened_files, tmp_path, (tmp_path / "in.kdl",))
    assert_nothing_written(tmp_path, {"in.kdl", "student-n16-l1"})


def test_decompress_does_not_replace_the_original_image(kdlic, models, images, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes((images / "one.png").read_bytes())
    assert kdlic("compress", photo, "-m", models[0])[0] == 0
    original = photo.read_bytes()
    assert_clean_error(kdlic("decompress", tmp_path / "photo.kdl", "-m", models[0]),
                       f"{photo} already exists", "--force")
    assert photo.read_bytes() == original
    assert_nothing_written(tmp_path, {"photo.png", "photo.kdl"})
    # --force is the user saying so
    assert kdlic("decompress", tmp_path / "photo.kdl", "-m", models[0], "--force")[0] == 0
    assert photo.read_bytes() != original


@pytest.mark.parametrize("target", ["itself", "hardlink", "symlink", "model",
                                    "compressai weights"])
def test_an_input_is_never_overwritten_even_with_force(kdlic, models, images, secret,
                                                       tmp_path, target):
    image = tmp_path / "a.png"
    image.write_bytes((images / "one.png").read_bytes())
    model = tmp_path / "m.pt"
    model.write_bytes(models[0].read_bytes())
    weights = tmp_path / "w.pth.tar"
    weights.write_bytes(secret.read_bytes())
    out = {"itself": image, "hardlink": tmp_path / "link.kdl", "symlink": tmp_path / "sym.kdl",
           "model": model, "compressai weights": weights}[target]
    spec = f"compressai:bmshj2018-hyperprior:3:{weights}" if target == "compressai weights" \
        else model
    if target == "hardlink":
        os.link(image, out)
    elif target == "symlink":
        out.symlink_to(image)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert_clean_error(kdlic("compress", image, "-m", spec, "-o", out, "--force"),
                       f"refusing to write {out}", "one of the inputs")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_an_existing_output_needs_force(kdlic, models, images, kdl, tmp_path):
    out = tmp_path / "x.kdl"
    out.write_bytes(b"keep me")
    assert_clean_error(kdlic("compress", images / "one.png", "-m", models[0], "-o", out),
                       "already exists")
    assert out.read_bytes() == b"keep me"
    assert kdlic("compress", images / "one.png", "-m", models[0], "-o", out, "-f")[0] == 0
    assert out.read_bytes() == kdl.read_bytes()


def test_a_batch_with_one_existing_output_writes_nothing(kdlic, models, images, tmp_path):
    out = tmp_path / "o"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "two.kdl").write_bytes(b"keep me")
    assert_clean_error(kdlic("compress", images, "-o", out, "-m", models[0]),
                       "two.kdl already exists")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["sub", "sub/two.kdl"]
    assert (out / "sub" / "two.kdl").read_bytes() == b"keep me"


# -- issue 13: one-line errors where tracebacks were, resource limits -------------------
def _edited(model_path: Path, folder: Path, edit) -> Path:
    ckpt = torch.load(model_path, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, folder / "bad.pt")
    return folder / "bad.pt"


def _nan(ckpt, tensor):
    ckpt["state_dict"][tensor] = ckpt["state_dict"][tensor].clone()
    ckpt["state_dict"][tensor].view(-1)[0] = float("nan")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


BAD_CHECKPOINTS = {
    "extra arch_args key": (lambda c: c["arch_args"].update(depth=3),
                            "scale-hyperprior takes N, M, z_channels, not depth"),
    "arch of the wrong type": (lambda c: c.update(arch=["x"]), "'arch' must be a string"),
    "arch_args of the wrong type": (lambda c: c.update(arch_args="N=8"),
                                    "'arch_args' must be a mapping"),
    "state_dict not a dict": (lambda c: c.update(state_dict=[0]),
                              "'state_dict' must be a mapping"),
    "N=20000, no weights": (lambda c: c.update(arch_args={"N": 20000, "M": 16}, state_dict={}),
                            "weights do not fit scale-hyperprior(N=20000, M=16)"),
    "NaN in g_a": (lambda c: _nan(c, "g_a.0.weight"), "'g_a.0.weight' holds NaN"),
    "NaN in h_s": (lambda c: _nan(c, "h_s.4.weight"), "'h_s.4.weight' holds NaN"),
    "NaN in the bottleneck": (lambda c: _nan(c, "entropy_bottleneck.matrices.0"),
                              "'entropy_bottleneck.matrices.0' holds NaN"),
    "NaN in g_s": (lambda c: _nan(c, "g_s.0.bias"), "'g_s.0.bias' holds NaN"),
    "code in the pickle": (lambda c: c.update(meta=_Evil()), "kdlic never loads such files"),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_bad_checkpoints_are_one_line_errors(kdlic, models, images, kdl, tmp_path, case):
    edit, message = BAD_CHECKPOINTS[case]
    bad = _edited(models[0], tmp_path, edit)
    code, err = kdlic("compress", images / "one.png", "-m", bad, "-o", tmp_path / "x.kdl")
    assert_clean_error((code, err), message)
    assert "weights_only" not in err and "pwned" not in err
    assert_clean_error(kdlic("decompress", kdl, "-m", bad, "-o", tmp_path / "x.png"), message)
    assert_nothing_written(tmp_path, {"bad.pt"})


def test_decompress_max_pixels_refuses_from_the_header(kdlic, models, kdl, tmp_path,
                                                       monkeypatch):
    def no_decoding(*args):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(Codec, "_decode", no_decoding)
    # 64x48 = 3072 pixels; the header is enough, with or without --model
    for model in (["-m", models[0]], []):
        assert_clean_error(kdlic("decompress", kdl, "-o", tmp_path / "x.png", "--max-pixels",
                                 3071, *model), "64x48 is out of range", "3071 pixels")
    assert_clean_error(kdlic("decompress", kdl, "-o", tmp_path / "x.png", "--max-pixels", 0),
                       "at least 1")
    assert_nothing_written(tmp_path, set())


def test_decompress_max_pixels_allows_what_fits(kdlic, models, kdl, tmp_path):
    assert kdlic("decompress", kdl, "-o", tmp_path / "x.png", "--max-pixels", 3072, "-m",
                 models[0])[0] == 0


def test_compress_refuses_a_decompression_bomb_before_decoding(kdlic, models, tmp_path,
                                                               monkeypatch):
    """A 17 KB 1-bit PNG declaring 12000x12000 was decoded (1.9 GB, 17 s) before being
    refused; a 109 KB 30000x30000 one is refused by Pillow itself."""
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for side, message in ((12000, "12000x12000: more than 67108864 pixels"),
                          (30000, "could be decompression bomb")):
        bomb = write_png_bomb(tmp_path / f"bomb{side}.png", side, side)
        assert_clean_error(kdlic("compress", bomb, "-m", models[0], "-o", tmp_path / "b.kdl"),
                           message)
    assert_nothing_written(tmp_path, {"bomb12000.png", "bomb30000.png"})


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_a_full_disk_says_so(kdlic, models, images, kdl, tmp_path, monkeypatch, command):
    """ENOSPC once read "cannot save a RGB image as PNG: [Errno 28] ..."."""
    real_fdopen = os.fdopen

    class Full(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, mode="r", *args, **kwargs):
        if "w" not in mode:
            return real_fdopen(fd, mode, *args, **kwargs)
        os.close(fd)
        return Full()

    monkeypatch.setattr(os, "fdopen", fdopen)
    source = images / "one.png" if command == "compress" else kdl
    out = tmp_path / ("x.kdl" if command == "compress" else "x.png")
    assert_clean_error(kdlic(command, source, "-m", models[0], "-o", out),
                       f"cannot write {out}: No space left on device")
    assert_nothing_written(tmp_path, set())


def test_animated_images_warn_that_only_the_first_frame_is_coded(kdlic, models, tmp_path,
                                                                caplog):
    frames = [Image.fromarray(smooth(32, 40, seed)) for seed in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with caplog.at_level("WARNING"):
        code, err = kdlic("compress", tmp_path / "anim.gif", "-m", models[0])
    assert code == 0, err
    assert "has 3 frames: only the first one is used" in caplog.text
    assert (tmp_path / "anim.kdl").is_file()
