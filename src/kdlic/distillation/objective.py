"""The distillation objective: weighted KD terms plus the student's own RD loss (or, for
a decoder-only student, its distortion alone)."""

from __future__ import annotations

from torch import Tensor, nn

from kdlic.distillation.teacher import FrozenTeacher
from kdlic.distillation.terms import RD, TERMS
from kdlic.models.latents import forward_with_latents
from kdlic.training.losses import rd_terms


class Distillation:
    """``loss = sum_k w_k * term_k + w_rd * rd_loss``, every term logged on its own.

    Args:
        teachers: the frozen teachers.
        weights: term name -> weight (KD terms of :data:`TERMS` and ``rd``); zero-weight
            terms are never computed.
        lmbda: the student's RD lambda.
        term_teacher: which teacher (index) serves a term; 0 where not given (the
            hybrid preset uses a second teacher for ``hyper``).
        temperature: softmax temperature of ``latent_kl``.
        rate: whether the ``rd`` weight applies to the whole RD loss; False (decoder-only
            distillation, where the bitstream is the teacher's and fixed) applies it to
            the distortion ``lmbda * 255^2 * MSE`` alone. ``rd_loss`` is logged and
            selects the best checkpoint either way.

    Teacher outputs come from the batch when a cache put them there
    (``teacher{i}.y_hat`` ...), else from running the teachers on the batch's crops.
    """

    def __init__(self, teachers: list[FrozenTeacher], weights: dict[str, float], lmbda: float,
                 term_teacher: dict[str, int] | None = None, temperature: float = 1.0,
                 rate: bool = True) -> None:
        self.teachers = teachers
        self.weights = {k: w for k, w in weights.items() if w > 0}
        self.kd_terms = [k for k in self.weights if k != RD]
        self.term_teacher = {k: (term_teacher or {}).get(k, 0) for k in self.kd_terms}
        self.lmbda = lmbda
        self.temperature = temperature
        self.rate = rate

    def needs(self) -> list[set[str]]:
        """For each teacher, the outputs the active terms need from it."""
        needed: list[set[str]] = [set() for _ in self.teachers]
        for name in self.kd_terms:
            needed[self.term_teacher[name]].add(TERMS[name].needs)
        return needed

    def _targets(self, batch: dict[str, Tensor], device) -> list[dict[str, Tensor]]:
        targets = []
        for i, (teacher, needed) in enumerate(zip(self.teachers, self.needs(), strict=True)):
            cached = {k: batch[f"teacher{i}.{k}"] for k in needed if f"teacher{i}.{k}" in batch}
            missing = needed - set(cached)
            targets.append(cached | (teacher(batch["x"], missing, device) if missing else {}))
        return targets

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x = batch["x"]
        out = forward_with_latents(model, x)
        terms = rd_terms(out, x, self.lmbda)
        if not self.rate:
            terms["distortion"] = self.lmbda * 255**2 * terms["mse"]
        rd = terms["rd_loss"] if self.rate else terms["distortion"]
        loss = self.weights[RD] * rd if RD in self.weights else 0.0
        if self.kd_terms:
            targets = self._targets(batch, x.device)
            for name in self.kd_terms:
                term = TERMS[name]
                teacher_out = targets[self.term_teacher[name]][term.needs]
                terms[name] = term.fn(out[term.needs], teacher_out, self.temperature)
                loss = loss + self.weights[name] * terms[name]
        terms["loss"] = loss
        return terms
