"""`kdlic compress` / `kdlic decompress`: batches, stdio, and hostile input.

Every failure must be one line on stderr, exit code 2, and leave no output file (and
no temporary file) behind.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdlic.cli import main
from kdlic.codec import Codec
from kdlic.utils.checkpoint import save_checkpoint
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
