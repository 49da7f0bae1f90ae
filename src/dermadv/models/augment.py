"""Training augmentation with an explicit random generator per (seed, epoch, sample).

Every random choice comes from ``numpy.random.default_rng([seed, epoch, index])``, so a sample's
augmentation does not depend on the DataLoader worker that happens to load it, on the number of
workers, or on whether the run was interrupted and resumed mid-epoch.

Pipeline (uint8 in, uint8 out): random rotation by 0-360 degrees (bilinear, black fill) -> random
resized crop (area ``scale``, aspect ratio 3/4..4/3) to ``size`` x ``size`` -> horizontal and
vertical flips (p = 0.5 each) -> optional colour-balance jitter: each RGB channel multiplied by its
own gain drawn uniformly from [1 - r, 1 + r], clipped to 255 (the same transform as the colour
balance attack; torchvision's ColorJitter is not used) -> optional random translation by up to
``translate_px`` pixels in x and y (black fill, as the rotation attack's shift) -> optional Shades of
Gray colour constancy (``color_constancy`` = its Minkowski p; the model is then trained behind the
preprocessing, :mod:`dermadv.models.defences.colour`, and must be evaluated behind it too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation settings (recorded in the checkpoint)."""

    size: int
    rotation: bool = True
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True
    vflip: bool = True
    color_jitter: float = 0.0  # r: per-channel gains in [1 - r, 1 + r]; 0 disables
    translate_px: float = 0.0  # random shift in x and y up to this many pixels (final size); 0 disables
    color_constancy: float = 0.0  # Shades of Gray Minkowski p applied last (inf: max-RGB); 0 disables

    def describe(self) -> dict:
        return {
            "rotation_deg": [0, 360] if self.rotation else None,
            "random_resized_crop": {
                "size": self.size,
                "scale": list(self.crop_scale),
                "ratio": [round(r, 4) for r in self.crop_ratio],
            },
            "horizontal_flip": 0.5 if self.hflip else 0.0,
            "vertical_flip": 0.5 if self.vflip else 0.0,
            "color_jitter": (
                {
                    "type": "per-channel multiplicative gains",
                    "range": [1 - self.color_jitter, 1 + self.color_jitter],
                }
                if self.color_jitter
                else None
            ),
            "translate_px": self.translate_px or None,
            "color_constancy": (
                {"method": "Shades of Gray", "p": self.color_constancy, "target": 160.0}
                if self.color_constancy
                else None
            ),
        }


def crop_box(
    rng: np.random.Generator, h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """(top, left, height, width) like torchvision's RandomResizedCrop.get_params, from ``rng``."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            return top, left, ch, cw
    # Fallback: central crop at the closest allowed aspect ratio.
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def augment(image: np.ndarray, aug: Augmentation, rng: np.random.Generator):  # noqa: ANN201 - torch.Tensor
    """Augment one uint8 H x W x 3 image; returns a uint8 3 x size x size torch tensor."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    t = torch.from_numpy(np.require(image, dtype=np.uint8, requirements=["C", "W"])).permute(2, 0, 1)
    if aug.rotation:
        angle = float(rng.uniform(0.0, 360.0))
        t = F.rotate(t, angle, interpolation=InterpolationMode.BILINEAR, expand=False, fill=[0.0])
    top, left, ch, cw = crop_box(rng, t.shape[1], t.shape[2], aug.crop_scale, aug.crop_ratio)
    t = F.resized_crop(
        t, top, left, ch, cw, [aug.size, aug.size], interpolation=InterpolationMode.BILINEAR, antialias=True
    )
    if aug.hflip and rng.random() < 0.5:
        t = F.horizontal_flip(t)
    if aug.vflip and rng.random() < 0.5:
        t = F.vertical_flip(t)
    if aug.color_jitter:
        gains = rng.uniform(1 - aug.color_jitter, 1 + aug.color_jitter, size=3)
        g = torch.tensor(gains, dtype=torch.float32).view(3, 1, 1)
        t = (t.float() * g).round().clamp(0, 255).to(torch.uint8)
    if aug.translate_px:
        dx, dy = (float(v) for v in rng.uniform(-aug.translate_px, aug.translate_px, size=2))
        t = F.affine(t, angle=0.0, translate=[round(dx), round(dy)], scale=1.0, shear=[0.0, 0.0], fill=[0.0])
    if aug.color_constancy:
        from dermadv.models.defences.colour import shades_of_gray

        corrected = shades_of_gray(t.permute(1, 2, 0).contiguous().numpy()[None], aug.color_constancy)[0]
        t = torch.from_numpy(corrected).permute(2, 0, 1)
    return t.contiguous()
