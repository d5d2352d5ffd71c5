"""The distillation objective: weighted KD terms plus the student's own RD loss."""

from __future__ import annotations

from torch import Tensor, nn

from kdlic.distillation.teacher import FrozenTeacher
from kdlic.distillation.terms import TERM_TARGET, term_value
from kdlic.training.losses import rd_terms


class Distillation:
    """``loss = sum_k w_k * term_k + w_rd * rd_loss``, every term logged on its own.

    Args:
        teachers: the frozen teachers; ``term_teacher[name]`` says which one (index)
            serves each KD term (the hybrid preset uses a second teacher for ``hyper``).
        weights: term name -> weight; zero-weight terms are never computed.
        lmbda: the student's RD lambda.
        temperature: softmax temperature of ``latent_kl``.

    Teacher outputs come from the batch when a cache put them there
    (``teacher{i}.y_hat`` ...), else from running the teachers on the batch's crops.
    """

    def __init__(self, teachers: list[FrozenTeacher], term_teacher: dict[str, int],
                 weights: dict[str, float], lmbda: float, temperature: float = 1.0) -> None:
        self.teachers = teachers
        self.weights = {k: w for k, w in weights.items() if w > 0}
        self.kd_terms = [k for k in self.weights if k != "rd"]
        self.term_teacher = term_teacher
        self.lmbda = lmbda
        self.temperature = temperature

    def needs(self) -> list[set[str]]:
        """For each teacher, the outputs the active terms need from it."""
        needed: list[set[str]] = [set() for _ in self.teachers]
        for name in self.kd_terms:
            needed[self.term_teacher[name]].add(TERM_TARGET[name])
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
        out = model(x)
        terms = rd_terms(out, x, self.lmbda)
        loss = self.weights["rd"] * terms["rd_loss"] if "rd" in self.weights else 0.0
        if self.kd_terms:
            targets = self._targets(batch, x.device)
            for name in self.kd_terms:
                t = targets[self.term_teacher[name]]
                terms[name] = term_value(name, out, t, self.temperature)
                loss = loss + self.weights[name] * terms[name]
        terms["loss"] = loss
        return terms
