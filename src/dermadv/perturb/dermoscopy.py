"""Dermoscopy artefacts: the dermoscope's black vignette (``black_corner``), overlaid characters
(``char``: annotations, ruler digits) and synthetic hair (``hair``).

SAM-C names ``black_corner`` and ``char`` but its generating code and constants are not published
(the benchmark repository holds only the images and the evaluation code), so their arithmetic and
severity constants here are CHOSEN and documented, not SAM-C's. ``hair`` is a dermadv addition.
Random layouts come from ``numpy.random.default_rng(seed)``; ``char`` and ``hair`` ignore ``device`` (Pillow
drawing, host path); ``black_corner`` computes in torch on it and is device-native.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from dermadv.perturb._ops import (
    TensorTransform,
    Transform,
    batch_and_params,
    param_tensor,
    round_clip,
    round_clip_tensor,
    scale,
    seed,
)
from dermadv.perturb.base import PERTURBATIONS, Param, check_severity
from dermadv.perturb.noise import seed_param
from dermadv.perturb.photometric import SAM_C

if TYPE_CHECKING:
    import torch


@PERTURBATIONS.register("black_corner", builtin=True)
class BlackCorner(TensorTransform):
    """Dermoscope vignette: black outside a centred circle of radius ``radius * R``, R the distance
    from the centre ((W-1)/2, (H-1)/2) to a corner pixel centre.

    Each pixel at distance d from the centre is multiplied by a = clip(radius R + 1 - d, 0, 1) (a
    one-pixel anti-aliased edge just outside the circle) and rounded half to even: radius = 1 keeps
    every pixel (identity), smaller radii blacken the corners, below 1/sqrt(2) of a square image the
    sides too. Parameter ``radius`` in [0.5, 1], identity 1. Severities CHOSEN (SAM-C's are not
    published): radius = 0.9, 0.8, 0.7, 0.6, 0.5. Device path native: float64 point-wise arithmetic,
    the same bytes as the CPU's on any device.
    """

    name = "black_corner"
    param_names = ("radius",)
    source = SAM_C + " (name); arithmetic and constants chosen by dermadv"
    SEVERITY: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5)

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (Param("radius", 0.5, 1.0, 1.0),)

    def severity_params(self, level: int, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        return np.array([[self.SEVERITY[check_severity(level) - 1]]])

    def _tensor(self, x: torch.Tensor, p: NDArray[np.float64]) -> torch.Tensor:
        import torch

        h, w = x.shape[1:3]
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        xs = torch.arange(w, dtype=torch.float64, device=x.device) - cx
        ys = torch.arange(h, dtype=torch.float64, device=x.device) - cy
        d = torch.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)  # H x W
        r = param_tensor(p[:, 0], x) * math.hypot(cx, cy)
        a = (r[:, None, None] + 1 - d[None]).clamp(0, 1)  # P x H x W
        return round_clip_tensor(x.double() * a[..., None])


#: characters ``char`` draws from (digits and letters of rulers, labels and annotations)
CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ+-/:.%"


@functools.lru_cache(maxsize=16)
def _font(size_px: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size_px)
    except TypeError:  # Pillow < 10.1: only the fixed-size bitmap font (``size`` then has no effect)
        return ImageFont.load_default()


@PERTURBATIONS.register("char", builtin=True)
class Characters(Transform):
    """Overlaid text (annotations, ruler digits): ``count`` strings of 1-4 characters of
    :data:`CHARSET`, each white or black, drawn anti-aliased with Pillow's default TrueType font
    (``ImageFont.load_default(size)``, Pillow >= 10.1 with FreeType) at a text size of ``size`` x
    min(H, W) pixels (rounded, at least 6), centred at a uniformly random point.

    Draws per string, in order from ``default_rng(seed)``: length ``integers(1, 5)``, 4 character
    indices (the first ``length`` used), centre ``uniform`` x, y in the image, colour
    ``integers(0, 2)`` (0 black, 1 white); so ``count = k`` shows the first k strings of ``count =
    k + 1``. Parameters: ``count`` integer in [0, 20], identity 0; ``size`` in [0.03, 0.15] (not a
    magnitude); ``seed``. Severities CHOSEN (SAM-C's constants are not published): count = 2, 4, 6,
    8, 10 at size 0.06. SAM-P ``char`` sequence (chosen): count = i at size 0.05, i = 0..30, one seed.
    Glyph rasterisation depends on the Pillow / FreeType version (deterministic for a given one).
    """

    name = "char"
    param_names = ("count", "size", "seed")
    source = SAM_C + " (name); rendering and constants chosen by dermadv"
    SEVERITY: tuple[int, ...] = (2, 4, 6, 8, 10)
    SEVERITY_SIZE = 0.06

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (Param("count", 0.0, 20.0, 0.0, integer=True), Param("size", 0.03, 0.15), seed_param())

    def severity_params(self, level: int, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        return np.array([[float(self.SEVERITY[check_severity(level) - 1]), self.SEVERITY_SIZE, 0.0]])

    def _draw(
        self, image: NDArray[np.uint8], count: int, size: float, rng: np.random.Generator
    ) -> NDArray[np.uint8]:
        from PIL import Image, ImageDraw

        h, w = image.shape[:2]
        pil = Image.fromarray(np.ascontiguousarray(image))
        draw = ImageDraw.Draw(pil)
        font = _font(max(6, int(round(size * min(h, w)))))
        for _ in range(count):
            length = int(rng.integers(1, 5))
            chars = rng.integers(0, len(CHARSET), size=4)
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            colour = (255, 255, 255) if int(rng.integers(0, 2)) else (0, 0, 0)
            text = "".join(CHARSET[k] for k in chars[:length])
            draw.text((cx, cy), text, fill=colour, font=font, anchor="mm")
        return np.asarray(pil, dtype=np.uint8)

    def transform(
        self, images: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        batch, p = batch_and_params(self, images, params)
        out = np.empty(batch.shape, dtype=np.uint8)
        for i in range(len(batch)):
            count = int(np.rint(p[i, 0]))
            if count <= 0:
                out[i] = batch[i]
            else:
                out[i] = self._draw(batch[i], count, float(p[i, 1]), np.random.default_rng(seed(p[i, 2])))
        return out


#: hair colour (dark brown-black), RGB
HAIR_RGB = (35.0, 25.0, 20.0)


def hair_mask(h: int, w: int, count: int, width: float, rng: np.random.Generator) -> NDArray[np.float64]:
    """Coverage in [0, 1] (H x W float64) of ``count`` curved strands of ``width`` px.

    Each strand is a quadratic Bezier curve drawn from, in order: start point ``uniform`` in the image
    (x, y), direction ``uniform(0, 2 pi)``, length ``uniform(0.3, 0.9) * min(H, W)``, bend (control
    point offset across the strand) ``uniform(-0.3, 0.3) * length``. 33 points of the curve are joined
    by Pillow ``ImageDraw.line`` (width round(2 width), at least 1, curved joints) on a 2x canvas, then
    box-averaged to H x W: anti-aliased coverage.
    """
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (2 * w, 2 * h), 0)
    draw = ImageDraw.Draw(canvas)
    t = np.linspace(0.0, 1.0, 33)[:, None]
    side = min(h, w)
    for _ in range(count):
        start = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        theta = rng.uniform(0, 2 * math.pi)
        length = rng.uniform(0.3, 0.9) * side
        bend = rng.uniform(-0.3, 0.3) * length
        along = np.array([math.cos(theta), math.sin(theta)])
        across = np.array([-along[1], along[0]])
        end = start + length * along
        ctrl = start + 0.5 * length * along + bend * across
        pts = (1 - t) ** 2 * start + 2 * (1 - t) * t * ctrl + t**2 * end
        draw.line(
            [(float(x), float(y)) for x, y in 2 * pts],
            fill=255,
            width=max(1, int(round(2 * width))),
            joint="curve",
        )
    small = canvas.resize((w, h), Image.Resampling.BOX)
    out: NDArray[np.float64] = np.asarray(small, dtype=np.float64) / 255.0
    return out


@PERTURBATIONS.register("hair", builtin=True)
class Hair(Transform):
    """Synthetic hair occlusion: ``count`` dark curved strands (:func:`hair_mask`), blended as
    out = v + darkness * a * (hair - v) per channel with hair = :data:`HAIR_RGB`, float64, rounded half
    to even.

    Parameters: ``count`` integer in [0, 30], identity 0; ``width`` px in [1, 5] x min(H, W) / 299
    (not a magnitude); ``darkness`` in [0, 1], identity 0; ``seed``. Severities CHOSEN: count = 2, 5,
    10, 15, 20 strands of width 2 px (at 299 px, scaled), darkness 0.9. Strand ``k`` is the same for
    every ``count > k`` (one generator, fixed draws per strand).
    """

    name = "hair"
    param_names = ("count", "width", "darkness", "seed")
    source = "dermadv (chosen): synthetic hair strands as quadratic Bezier curves"
    REFERENCE = 299.0
    SEVERITY: tuple[int, ...] = (2, 5, 10, 15, 20)

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        s = scale(image_shape, self.REFERENCE)
        return (
            Param("count", 0.0, 30.0, 0.0, integer=True),
            Param("width", 1.0 * s, 5.0 * s, None, unit="px"),
            Param("darkness", 0.0, 1.0, 0.0),
            seed_param(),
        )

    def severity_params(self, level: int, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        s = scale(image_shape, self.REFERENCE)
        return np.array([[float(self.SEVERITY[check_severity(level) - 1]), 2.0 * s, 0.9, 0.0]])

    def transform(
        self, images: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        batch, p = batch_and_params(self, images, params)
        n, h, w = batch.shape[:3]
        out = np.empty(batch.shape, dtype=np.uint8)
        colour = np.array(HAIR_RGB)
        for i in range(n):
            count, darkness = int(np.rint(p[i, 0])), float(p[i, 2])
            if count <= 0 or darkness == 0:
                out[i] = batch[i]
                continue
            a = hair_mask(h, w, count, float(p[i, 1]), np.random.default_rng(seed(p[i, 3])))
            v = batch[i].astype(np.float64)
            out[i] = round_clip(v + (darkness * a)[..., None] * (colour - v))
        return out


__all__ = ["BlackCorner", "CHARSET", "Characters", "HAIR_RGB", "Hair", "hair_mask"]
