"""FGSM (Goodfellow et al.): one signed-gradient step toward the target group, several sizes at once."""

from __future__ import annotations

from collections.abc import Sequence
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


@ATTACKS.register("fgsm", builtin=True, study=1, white_box_only=True)
class FGSM(GradientAttack):
    """``x_adv = clip(x - eps * sign(grad L), 0, 255)``, rounded to uint8, for each ``eps``.

    ``eps`` is in pixel units (0..255 scale); give several to try them all from one gradient:
    the result is the smallest eps that succeeds (else the largest), and ``params`` records every
    eps with its outcome. Queries per image: 1 (initial) + 1 (gradient) + len(eps) (checks).
    """

    name = "fgsm"

    def __init__(
        self, eps: float | Sequence[float] = (1.0, 2.0, 4.0, 8.0, 16.0), *, batch_size: int | None = None
    ) -> None:
        super().__init__(batch_size=batch_size)
        values = sorted(float(e) for e in np.atleast_1d(np.asarray(eps, dtype=np.float64)))
        if not values or not all(0 < e <= 255 for e in values):
            raise AttackConfigError(f"fgsm: eps must be one or more values in (0, 255], got {eps!r}")
        self.eps = tuple(values)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["eps"] = list(self.eps)
        return d

    def _attack(self, model: Classifier, jobs: list[AttackJob], t0: float) -> list[AttackResult]:
        import torch

        _, x, metas, mask = batch_inputs(model, jobs)
        grad_sign = torch.sign(loss_gradient(model, x, mask, metas, self.forward_batch(model)))
        # all eps of all images in one batch: image-major, eps-minor
        adv = np.stack([to_uint8_images(x - e * grad_sign) for e in self.eps], axis=1)  # N x E x H x W x 3
        flat = adv.reshape(-1, *adv.shape[2:])
        probs = self.score(model, flat, [job.metadata for job in jobs for _ in self.eps])
        probs = probs.reshape(len(jobs), len(self.eps), -1)
        results = []
        for i, job in enumerate(jobs):
            job.queries += 1 + len(self.eps)
            success = job.criterion.is_success(model, probs[i])
            target_conf = job.criterion.confidences(model, probs[i])[1]
            k = int(np.argmax(success)) if success.any() else len(self.eps) - 1
            params = {
                "eps": self.eps[k],
                "eps_tried": list(self.eps),
                "success_by_eps": [bool(s) for s in success],
                "target_conf_by_eps": [float(c) for c in target_conf],
            }
            results.append(self.finish(model, job, probs[i, k], adv[i, k], params, 0, t0))
        return results
