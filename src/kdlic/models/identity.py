"""Model identities: what a ``.kdl`` header records and checks (docs/format.md).

* :func:`model_id`: the whole model (architecture, arguments, every fp32 parameter).
* :func:`encoder_hash`: only what the bitstream depends on: the encoder-side
  transforms g_a, h_a, h_s and the entropy bottleneck (the Gaussian tables are
  constants of the format), and the sizes of those (the encoder's ``N``, ``M``,
  ``z_channels``). A decoder-only student shares it with its teacher.
* :func:`encoder_id`: the 8 bytes a file carries and a decoder must match. For an
  ordinary model it *is* its model id (so every file written before decoder-only
  students existed keeps its bytes and its meaning); a decoder-only student has no
  encoder of its own and carries its teacher's encoder id, recorded at distillation.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

# The modules a bitstream depends on (the exact coders' encoder side: scale and
# mean-scale hyperpriors).
ENCODER_MODULES = ("g_a", "h_a", "h_s", "entropy_bottleneck")
# What a decoder-only student takes from its teacher: the encoder side and the Gaussian
# conditional's tables.
TEACHER_MODULES = (*ENCODER_MODULES, "gaussian_conditional")


def model_id(model: nn.Module) -> bytes:
    """8-byte identity of a model: SHA-256 over its architecture and fp32 parameters."""
    h = hashlib.sha256(f"{model.arch}{sorted(model.arch_args.items())}".encode())
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.digest()[:8]


def encoder_args(model: nn.Module) -> dict[str, int]:
    """The sizes of a hyperprior's encoder side: its N (``encoder_N`` of a decoder-only
    student), M and z_channels."""
    return {"N": int(getattr(model, "encoder_N", model.N)), "M": int(model.M),
            "z_channels": int(model.entropy_bottleneck.channels)}


def encoder_hash(model: nn.Module) -> bytes:
    """8 bytes: SHA-256 over the encoder side's sizes and fp32 parameters (g_a, h_a, h_s,
    entropy bottleneck). Equal for a teacher and its decoder-only students."""
    family = getattr(model, "teacher_arch", "") or model.arch  # a decoder: its teacher's
    h = hashlib.sha256(f"{family} encoder{sorted(encoder_args(model).items())}".encode())
    for name, p in sorted(model.named_parameters()):
        if name.split(".", 1)[0] in ENCODER_MODULES:
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.digest()[:8]


def is_decoder_only(model: nn.Module) -> bool:
    """Whether ``model`` is a decoder-only student: it records its encoder's id (a
    decoder-only model built from scratch records none, all zeros, and codes as an
    ordinary model)."""
    recorded = getattr(model, "encoder_id", None)
    return isinstance(recorded, torch.Tensor) and bool(recorded.any())


def bind_encoder(student: nn.Module, teacher: nn.Module) -> None:
    """Make ``student`` (a decoder-only model of the teacher's family) a decoder of ``teacher``'s
    encoder: copy the teacher's encoder side (g_a, h_a, h_s, entropy models, bit for
    bit) and record the teacher's encoder id and encoder hash."""
    state = {k: v for k, v in teacher.state_dict().items()
             if k.split(".", 1)[0] in TEACHER_MODULES}
    missing = set(student.state_dict()) - set(state)
    student.load_state_dict({**{k: student.state_dict()[k] for k in missing}, **state})
    with torch.no_grad():
        student.encoder_id.copy_(torch.tensor(list(encoder_id(teacher)), dtype=torch.uint8))
        student.encoder_hash.copy_(torch.tensor(list(encoder_hash(teacher)),
                                                dtype=torch.uint8))


def encoder_id(model: nn.Module) -> bytes:
    """The id a ``.kdl`` file made by ``model`` carries, and that ``model`` decodes: its
    model id, or for a decoder-only student the recorded id of its teacher's encoder."""
    if is_decoder_only(model):
        return bytes(model.encoder_id.cpu().tolist())
    return model_id(model)


def check_encoder(model: nn.Module, name: str) -> None:
    """Refuse to code with a decoder-only student whose encoder side is no longer the one
    it was distilled from (its files would carry an id they do not match)."""
    from kdlic.errors import KdlicError

    if is_decoder_only(model) and encoder_hash(model) != bytes(model.encoder_hash.tolist()):
        raise KdlicError(
            f"model {name} cannot be used for coding: its encoder side (g_a, h_a, h_s, "
            f"entropy models) is not the encoder {encoder_id(model).hex()} it was distilled "
            "from (changed or rounded since, e.g. stored in fp16?)")
