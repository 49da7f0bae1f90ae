"""White-box gradient attacks in pixel space (0..255 units) on the uint8 image the model is given.

Loss toward the target group (the benign group for "mel->nv"):
``L = -log P(target group) = -logsumexp(log_softmax(logits)[target classes])``, which works for
binary and multi-class models alike. Attacks step *down* this loss. Gradients come from
``Classifier.torch_forward`` (float N x 3 x H x W in 0..255); a black-box model raises
NotWhiteBoxError before any query is made.

Quantisation: adversarial images are rounded half-to-even to integers, clipped to 0..255, and
success is re-checked on the uint8 images with ``predict_proba`` (the model's normal path).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from dermadv.attacks.base import Attack, AttackJob, metadata_list, model_device
from dermadv.models.base import Classifier, Metadata

if TYPE_CHECKING:
    import torch


def to_tensor(images: NDArray[np.uint8], device: Any) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float32 N x 3 x H x W in 0..255 on ``device``."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()


def to_uint8_images(x: torch.Tensor) -> NDArray[np.uint8]:
    """float N x 3 x H x W -> uint8 N x H x W x 3 (round half to even, clip to 0..255)."""
    import torch

    images: NDArray[np.uint8] = (
        torch.round(x.detach()).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    )
    return images


def target_mask(model: Classifier, jobs: Sequence[AttackJob], device: Any) -> Any:
    """N x K boolean mask of each job's target-group classes."""
    import torch

    mask = torch.zeros(len(jobs), len(model.classes), dtype=torch.bool)
    for row, job in enumerate(jobs):
        mask[row, job.criterion.target_indices(model)] = True
    return mask.to(device)


def batch_inputs(model: Classifier, jobs: Sequence[AttackJob]) -> tuple[Any, Any, list[Metadata] | None, Any]:
    """What a gradient attack starts from: (device, float image tensor, metadata list, target mask)."""
    device = model_device(model)
    x = to_tensor(np.stack([job.image for job in jobs]), device)
    return device, x, metadata_list([job.metadata for job in jobs]), target_mask(model, jobs, device)


def target_loss(model: Classifier, x: Any, mask: Any, metadata: Sequence[Metadata] | None) -> Any:
    """Per-image -log P(target group) from the model's differentiable forward."""
    import torch

    logp = torch.log_softmax(model.torch_forward(x, metadata).float(), dim=1)
    return -torch.logsumexp(logp.masked_fill(~mask, float("-inf")), dim=1)


def loss_gradient(
    model: Classifier, x: Any, mask: Any, metadata: Sequence[Metadata] | None, batch_size: int | None = None
) -> Any:
    """d(-log P(target group))/d(pixels) for every image, in chunks of ``batch_size``."""
    import torch

    n = x.shape[0]
    bs = batch_size or n
    grads = []
    for s in range(0, n, bs):
        xs = x[s : s + bs].detach().clone().requires_grad_(True)
        meta = None if metadata is None else list(metadata[s : s + bs])
        with torch.enable_grad():
            loss = target_loss(model, xs, mask[s : s + bs], meta)
            (g,) = torch.autograd.grad(loss.sum(), xs)
        grads.append(g.detach())
    return torch.cat(grads)


class GradientAttack(Attack):
    """Base of FGSM/PGD: white-box only. Success is judged by the study's criterion (P(target group)
    > P(true group) on the uint8 image); there is no search to stop, so no threshold/fitness option.
    """

    white_box_only = True

    def __init__(self, batch_size: int | None = None) -> None:
        super().__init__(batch_size=batch_size)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        del d["threshold"], d["fitness"]
        return d
