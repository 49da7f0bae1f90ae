"""PGD (Madry et al.): iterated signed-gradient steps projected onto an L-infinity ball."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dermadv.attacks.base import AttackConfigError, AttackJob, AttackResult
from dermadv.attacks.gradient import (
    GradientAttack,
    batch_inputs,
    loss_gradient,
    to_uint8_images,
)
from dermadv.attacks.registry import ATTACKS
from dermadv.models.base import Classifier


@ATTACKS.register("pgd", builtin=True, study=2, white_box_only=True)
class PGD(GradientAttack):
    """``steps`` steps of ``step_size * sign(grad)`` toward the target group, each followed by
    projection onto ``|x_adv - x| <= eps`` and clipping to 0..255 (pixel units, 0..255 scale).

    ``random_start``: start from a uniform point of the ball, drawn from the image's seed. The final
    image is rounded half-to-even, kept within floor(eps) of the original and 0..255, then judged on
    the uint8 image. Queries per image: 1 (initial) + steps (gradients) + 1 (final check).
    ``params`` of a result: ``{"eps", "step_size", "steps", "random_start", "linf"}``.
    """

    name = "pgd"

    def __init__(
        self,
        eps: float = 8.0,
        step_size: float = 2.0,
        steps: int = 10,
        random_start: bool = True,
        *,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size)
        if not 0 < float(eps) <= 255:
            raise AttackConfigError(f"pgd: eps must be in (0, 255] pixel units, got {eps!r}")
        if not float(step_size) > 0:
            raise AttackConfigError(f"pgd: step_size must be > 0, got {step_size!r}")
        if int(steps) != steps or steps < 1:
            raise AttackConfigError(f"pgd: steps must be a positive integer, got {steps!r}")
        self.eps, self.step_size, self.steps = float(eps), float(step_size), int(steps)
        self.random_start = bool(random_start)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(eps=self.eps, step_size=self.step_size, steps=self.steps, random_start=self.random_start)
        return d

    def _attack(self, model: Classifier, jobs: list[AttackJob], t0: float) -> list[AttackResult]:
        import torch

        device, x, metas, mask = batch_inputs(model, jobs)
        adv = x.clone()
        if self.random_start:  # each image's own generator: results do not depend on batching
            gens = [torch.Generator().manual_seed(job.seed) for job in jobs]
            noise = [torch.rand(x.shape[1:], generator=g) for g in gens]
            adv = (x + (torch.stack(noise).to(device) * 2 - 1) * self.eps).clamp(0, 255)
        for _ in range(self.steps):
            g = loss_gradient(model, adv, mask, metas, self.forward_batch(model))
            adv = adv - self.step_size * torch.sign(g)
            adv = torch.min(torch.max(adv, x - self.eps), x + self.eps).clamp(0, 255)
        r = math.floor(self.eps)
        adv = torch.min(torch.max(torch.round(adv), x - r), x + r).clamp(0, 255)
        images = to_uint8_images(adv)
        probs = self.score(model, images, [job.metadata for job in jobs])
        results = []
        for i, job in enumerate(jobs):
            job.queries += self.steps + 1
            linf = int(np.abs(images[i].astype(np.int16) - job.image.astype(np.int16)).max())
            params = {
                "eps": self.eps,
                "step_size": self.step_size,
                "steps": self.steps,
                "random_start": self.random_start,
                "linf": linf,
            }
            results.append(self.finish(model, job, probs[i], images[i], params, self.steps, t0))
        return results
