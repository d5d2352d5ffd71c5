"""Decoder-only distillation: the teacher's encoder side kept bit for bit, a small g_s
trained, the teacher's .kdl files decoded by the student (encoder identity)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import kdlic
from kdlic.cli import main
from kdlic.codec import Codec, unpack
from kdlic.errors import KdlicError
from kdlic.models import build_model, load_model
from kdlic.models.identity import bind_encoder, encoder_hash, encoder_id, model_id
from kdlic.training.trainer import split_parameters
from kdlic.utils.checkpoint import save_checkpoint

from .conftest import smooth_image

TINY = ["data.crop=64", "data.val_crop=64", "data.batch_size=2", "data.val_count=2",
        "schedule.val_every=2", "schedule.log_every=1", "runtime.threads=1",
        "runtime.progress=false", "optim.lr=1e-2", "optim.ema=0.5"]


def make_teacher(seed: int = 1):
    """An N=8, M=16 scale hyperprior whose latents are not all zero (a random init
    quantises every latent to 0), as in test_codec."""
    torch.manual_seed(seed)
    model = build_model("scale-hyperprior", 8, 16)
    with torch.no_grad():
        model.g_a[-1].weight.mul_(20)
        model.g_s[0].weight.div_(20)
        model.h_s[-2].weight.mul_(10)
        model.h_s[-2].bias.add_(0.5)
    return model.eval()


def decoder_of(teacher, N: int = 4, seed: int = 0):
    """An untrained decoder-only student of ``teacher``."""
    torch.manual_seed(seed)
    student = build_model("scale-hyperprior-decoder", N, 16, z_channels=8, encoder_N=8)
    bind_encoder(student, teacher)
    return student.eval()


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, make_teacher(), {"lmbda": 0.01, "step": 0})
    return path


@pytest.fixture(scope="module")
def run(teacher_file, image_dir, tmp_path_factory):
    return kdlic.distill(str(teacher_file), 4, image_dir, decoder_only=True, steps=4,
                         run_dir=tmp_path_factory.mktemp("runs") / "dec", overrides=TINY)


@pytest.fixture(scope="module")
def image():
    return smooth_image(np.random.default_rng(3), 72, 90)


def test_only_g_s_trains(run, teacher_file):
    teacher, student = load_model(teacher_file), run.model
    assert student.arch == "scale-hyperprior-decoder"
    assert student.arch_args == {"N": 4, "M": 16, "z_channels": 8, "encoder_N": 8}
    assert type(student).args_from_state(student.state_dict()) == student.arch_args
    assert run.config["student"]["decoder_only"] is True
    assert run.config["kd"]["preset"] == "decoder"
    t, s = teacher.state_dict(), student.state_dict()
    encoder = [k for k in t if not k.startswith("g_s.")]
    assert encoder and all(torch.equal(t[k], s[k]) for k in encoder)  # bit for bit
    # g_s moved away from its initialisation (same seed, same construction)
    torch.manual_seed(0)
    init = build_model("scale-hyperprior-decoder", 4, 16, z_channels=8, encoder_N=8)
    assert not all(torch.equal(init.state_dict()[k], s[k]) for k in s if k.startswith("g_s."))
    main_params, aux = split_parameters(student)
    assert aux == [] and {id(p) for p in main_params} == {id(p) for p in student.g_s.parameters()}
    assert encoder_id(student) == model_id(teacher) != model_id(student)
    assert encoder_hash(student) == encoder_hash(teacher)
    # the loss has no rate term: KD output term + distortion
    log = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in log if r["split"] == "train"]
    assert all(r["loss"] == pytest.approx(0.2 * r["output"] + 0.4 * r["distortion"], rel=1e-5)
               for r in train)


def test_resume_keeps_the_encoder(run, teacher_file, image_dir):
    again = kdlic.distill(str(teacher_file), 4, image_dir, decoder_only=True, steps=6,
                          run_dir=run.run_dir, overrides=TINY, resume=True)
    assert again.steps == 6
    t, s = load_model(teacher_file).state_dict(), again.model.state_dict()
    assert all(torch.equal(t[k], s[k]) for k in t if not k.startswith("g_s."))


def test_a_decoder_continues_from_a_decoders_weights(run, teacher_file, image_dir, tmp_path):
    # init: a decoder-only student of the same encoder starts from the given one's g_s
    again = kdlic.distill(str(teacher_file), None, image_dir, decoder_only=True, steps=2,
                          run_dir=tmp_path / "again", overrides=[
                              *TINY, f"init={run.last}", "student.N=4"])
    assert again.model.meta["warm_start"]["steps"] == load_model(run.last).meta["step"]
    # the decoder of another encoder is refused
    other = tmp_path / "other-teacher.pt"
    save_checkpoint(other, make_teacher(seed=5), {"lmbda": 0.01, "step": 0})
    with pytest.raises(KdlicError, match="the student decodes the encoder"):
        kdlic.distill(str(other), None, image_dir, decoder_only=True, steps=2,
                      run_dir=tmp_path / "other", overrides=[*TINY, f"init={run.last}",
                                                             "student.N=4"])


def test_teacher_files_decode_with_the_student(run, teacher_file, image):
    teacher = Codec(load_model(teacher_file))
    student = Codec(run.model)
    data = teacher.encode(image)
    latents = []
    for codec in (student, teacher):  # the same latents reach both g_s
        real = codec._synthesis.pixels
        codec._synthesis.pixels = lambda y, *a, real=real: latents.append(y) or real(y, *a)
    mine, theirs = student.decode(data), teacher.decode(data)
    for codec in (student, teacher):
        del codec._synthesis.pixels
    assert torch.equal(latents[0], latents[1]) and latents[0].abs().sum() > 0
    assert mine.size == theirs.size == (90, 72)
    assert not np.array_equal(np.asarray(mine), np.asarray(theirs))  # its own g_s
    # the student writes the teacher's bitstream (and id): the teacher decodes it
    written = student.encode(image)
    (h1, s1), (h2, s2) = unpack(data), unpack(written)
    assert (h1.model_id, h1.y_mask, s1) == (h2.model_id, h2.y_mask, s2)
    assert np.array_equal(np.asarray(teacher.decode(written)), np.asarray(theirs))


def test_a_decoder_of_a_decoder_decodes_the_first_teachers_files(run, teacher_file, image):
    second = decoder_of(run.model, N=2)
    assert encoder_id(second) == model_id(load_model(teacher_file))
    data = Codec(load_model(teacher_file)).encode(image)
    assert Codec(second).decode(data).size == (90, 72)


def test_a_decoder_of_another_encoder_is_refused(teacher_file, image):
    data = Codec(load_model(teacher_file)).encode(image)
    other = Codec(decoder_of(make_teacher(seed=2)))
    with pytest.raises(KdlicError, match="decoder-only model for the encoder") as exc:
        other.decode(data)
    assert "\n" not in str(exc.value) and "teacher.pt" in str(exc.value)
    # ... and the student's own files are refused by an unrelated ordinary model
    written = Codec(decoder_of(load_model(teacher_file))).encode(image)
    with pytest.raises(KdlicError, match="encoded with model"):
        Codec(make_teacher(seed=2)).decode(written)


def test_fp16_checkpoints_keep_the_encoder_exact(run, teacher_file, image, tmp_path):
    """Zoo-style fp16 weights: g_s in fp16, the encoder side (the teacher's) unchanged."""
    path = tmp_path / "half.pt"
    save_checkpoint(path, run.model, dict(run.model.meta), half=True, pack=True)
    half = load_model(path)
    assert torch.equal(half.g_s[0].weight, run.model.g_s[0].weight.half().float())
    assert encoder_hash(half) == encoder_hash(run.model)
    data = Codec(load_model(teacher_file)).encode(image)
    assert Codec(half).decode(data).size == (90, 72)


def test_a_changed_encoder_side_is_refused(teacher_file):
    student = decoder_of(load_model(teacher_file))
    with torch.no_grad():
        student.h_s[0].weight[0, 0, 0, 0] += 1e-3
    with pytest.raises(KdlicError, match="is not the encoder"):
        Codec(student)
    with pytest.raises(KdlicError, match="is not the encoder"):  # nor exported
        kdlic.export(student, "never-written")


def test_cli_decoder_only_and_compress(teacher_file, image_dir, image, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["distill", "--teacher", str(teacher_file), "--decoder-only", "--N", "4",
                 "--data", str(image_dir), "--run-dir", str(run_dir), "--steps", "2",
                 "--no-progress", *sum((["--set", o] for o in TINY), [])]) == 0
    student = run_dir / "best.pt"
    assert load_model(student).arch == "scale-hyperprior-decoder"
    png = tmp_path / "x.png"
    Image.fromarray(image).save(png)
    assert main(["compress", str(png), "-m", str(student), "-o", str(tmp_path / "s.kdl"),
                 "--no-progress"]) == 0
    assert main(["decompress", str(tmp_path / "s.kdl"), "-m", str(teacher_file),
                 "-o", str(tmp_path / "t.png"), "--no-progress"]) == 0
    assert main(["compress", str(png), "-m", str(teacher_file), "-o",
                 str(tmp_path / "t.kdl"), "--no-progress"]) == 0
    assert main(["decompress", str(tmp_path / "t.kdl"), "-m", str(student),
                 "-o", str(tmp_path / "s.png"), "--no-progress"]) == 0
    assert Image.open(tmp_path / "s.png").size == Image.open(tmp_path / "t.png").size
    # the recorded config runs again as it is
    assert main(["distill", "-c", str(run_dir / "config.yaml"), "--run-dir",
                 str(tmp_path / "again"), "--steps", "1"]) == 0
    assert load_model(tmp_path / "again" / "last.pt").arch_args == load_model(student).arch_args


@pytest.fixture(scope="module")
def factorized_teacher(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fact") / "fact.pt"
    save_checkpoint(path, build_model("bmshj2018-factorized", 8, 16), {"lmbda": 0.01})
    return path


def test_mean_scale_teachers_get_decoders_too(image_dir, image, tmp_path, monkeypatch):
    """mbt2018-mean: the same story with the exact mean-scale coder (coder 2)."""
    pytest.importorskip("onnxruntime")  # (the export at the end)
    from tests.test_codec import decoded_latents
    from tests.test_codec_mean_scale import make_mean_model

    path = tmp_path / "mbt.pt"
    save_checkpoint(path, make_mean_model(), {"lmbda": 0.01})
    teacher = load_model(path)
    run = kdlic.distill(str(path), 4, image_dir, decoder_only=True, steps=2,
                        run_dir=tmp_path / "run", overrides=TINY)
    student = run.model
    assert student.arch == "mbt2018-mean-decoder"
    assert student.arch_args == {"N": 4, "M": 16, "encoder_N": 8}
    t, s = teacher.state_dict(), student.state_dict()
    assert all(torch.equal(t[k], s[k]) for k in t if not k.startswith("g_s."))
    assert encoder_id(student) == model_id(teacher)
    assert encoder_hash(student) == encoder_hash(teacher)
    data = Codec(teacher).encode(image)
    assert unpack(data)[0].coder == 2
    mine, theirs = Codec(student), Codec(teacher)
    assert torch.equal(decoded_latents(mine, data, monkeypatch),
                       decoded_latents(theirs, data, monkeypatch))
    assert mine.decode(data).size == (90, 72)
    (h1, s1), (h2, s2) = unpack(data), unpack(mine.encode(image))  # the teacher's bitstream
    assert (h1.model_id, h1.y_mask, s1) == (h2.model_id, h2.y_mask, s2)
    with pytest.raises(KdlicError, match="decoder-only model for the encoder"):
        mine.decode(Codec(make_mean_model(seed=3)).encode(image))
    out = kdlic.export(student, tmp_path / "onnx")
    assert Codec.from_export(out).decode(data).size == (90, 72)


@pytest.mark.parametrize("args,message", [
    (["--preset", "L1"], "preset 'L1' weights latent (y_hat)"),
    (["--preset", "hybrid", "--teacher2", "T"], "weights latent (y_hat), hyper (z_hat)"),
    (["--weight", "latent=0.1"], "preset 'decoder' weights latent (y_hat)"),
    (["--student-arch", "bmshj2018-factorized"], "not bmshj2018-factorized"),
    (["--M", "32"], "keeps the teacher's M (16)"),
    (["FACT"], "needs a teacher with an exact coder"),
    (["NOT-DECODER-ONLY", "--teacher", "STUDENT"], "distil it with decoder_only"),
])
def test_bad_combinations_are_refused_before_training(args, message, teacher_file,
                                                      factorized_teacher, image_dir, tmp_path,
                                                      capsys):
    teacher = str(factorized_teacher if args == ["FACT"] else teacher_file)
    flag = ["--decoder-only"]
    if args[0] == "NOT-DECODER-ONLY":  # a decoder-only teacher, an ordinary distillation
        flag, args = [], args[1:]
        student = tmp_path / "student.pt"
        save_checkpoint(student, decoder_of(load_model(teacher_file)), {"lmbda": 0.01})
    args = [] if args == ["FACT"] else [
        {"T": str(teacher_file), "STUDENT": str(tmp_path / "student.pt")}.get(a, a)
        for a in args]
    code = main(["distill", "--teacher", teacher, *flag, "--N", "4", *args,
                 "--data", str(image_dir), "--run-dir", str(tmp_path / "run"),
                 "--no-progress", *sum((["--set", o] for o in TINY), [])])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()
