"""Test-time augmentation: the wrapped model's probabilities averaged over a fixed orbit of transforms.

The orbit is the product of up to three families (each image is scored once per element, so a query
costs ``len(orbit)`` forwards of the wrapped model):

- ``d4``: the dihedral group of the square -- the four right-angle turns (``np.rot90``, exact pixel
  permutations), each with and without a left-right mirror (8 elements; needs a square input);
- ``rotations=k``: turns by 360 j / k degrees, j = 0..k-1, about the centre (bilinear, black corners:
  :func:`dermadv.perturb.affine.rotate`, the rotation attack's own transform);
- ``gains=g1,g2,...``: per-channel colour gains, every combination of the values over the three
  channels (len^3 elements), applied with the colour attack's arithmetic (trunc(min(x c, 255))).

With no family given the orbit is D4. Probabilities are the arithmetic mean over the orbit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.errors import ModelError
from dermadv.models.base import Classifier, Metadata
from dermadv.models.defences import DEFENCES
from dermadv.models.defences.base import Defence

Transform = Callable[[NDArray[np.uint8]], NDArray[np.uint8]]


def dihedral(images: NDArray[np.uint8], turns: int, mirror: bool) -> NDArray[np.uint8]:
    """``images`` (N x H x W x 3) mirrored left-right (if ``mirror``) then turned ``turns`` x 90 degrees
    counter-clockwise."""
    x = images[:, :, ::-1] if mirror else images
    return np.ascontiguousarray(np.rot90(x, k=turns, axes=(1, 2)))


def _rotation(angle: float) -> Transform:
    def f(images: NDArray[np.uint8]) -> NDArray[np.uint8]:
        if angle == 0:
            return images
        from dermadv.perturb.affine import rotate

        return rotate(images, angle)

    return f


def _gain(c: tuple[float, float, float]) -> Transform:
    def f(images: NDArray[np.uint8]) -> NDArray[np.uint8]:
        if c == (1.0, 1.0, 1.0):
            return images
        from dermadv.perturb.color import color_balance

        return color_balance(images, c)

    return f


def _d4(turns: int, mirror: bool) -> Transform:
    def f(images: NDArray[np.uint8]) -> NDArray[np.uint8]:
        return dihedral(images, turns, mirror) if turns or mirror else images

    return f


@DEFENCES.register("tta", builtin=True)
class TestTimeAugmentation(Defence):
    """Mean probabilities over an orbit: ``d4`` (8), ``rotations`` (k angles), ``gains`` (len^3 gains)."""

    defence = "tta"
    __test__ = False  # not a pytest test class despite the name

    def __init__(
        self,
        model: Classifier,
        *,
        d4: bool = False,
        rotations: int = 0,
        gains: tuple[float, ...] = (),
    ) -> None:
        super().__init__(model)
        gains_t = tuple(float(g) for g in ((gains,) if isinstance(gains, (int, float)) else gains))
        if rotations < 0 or int(rotations) != rotations:
            raise ModelError(f"tta: rotations must be a whole number >= 0, got {rotations!r}")
        if any(not (0 < g < 10) for g in gains_t):
            raise ModelError(f"tta: gains must be positive factors such as 0.9,1.0,1.1, got {list(gains_t)}")
        if not d4 and rotations <= 1 and not gains_t:
            d4 = True  # the default orbit
        self.d4, self.rotations, self.gains = bool(d4), int(rotations), gains_t
        if self.d4 and self.input_size[0] != self.input_size[1]:
            raise ModelError(f"tta:d4 needs a square input; {model.name} takes {self.input_size}")
        self.orbit = self._orbit()
        if len(self.orbit) < 2:
            raise ModelError(
                "tta: the orbit has a single element (nothing to average); give d4, rotations>=2 or gains"
            )

    def _orbit(self) -> list[tuple[str, Transform]]:
        gains: list[tuple[str, Transform]] = [
            (f"gain({a:g},{b:g},{c:g})", _gain((a, b, c)))
            for a, b, c in itertools.product(self.gains, repeat=3)
        ] or [("", _gain((1.0, 1.0, 1.0)))]
        geo: list[tuple[str, Transform]] = [("", _d4(0, False))]
        if self.d4:
            geo = [(f"{'mirror+' if m else ''}rot90x{t}", _d4(t, m)) for m in (False, True) for t in range(4)]
        if self.rotations > 1:
            step = 360.0 / self.rotations
            rot = [(f"rot{j * step:g}", _rotation(j * step)) for j in range(self.rotations)]
            geo = [(f"{a}+{b}".strip("+"), _compose(fa, fb)) for a, fa in geo for b, fb in rot]
        return [(f"{g}+{n}".strip("+") or "identity", _compose(fg, fn)) for g, fg in gains for n, fn in geo]

    @property
    def own_cost(self) -> int:
        return len(self.orbit)

    def settings(self) -> dict[str, Any]:
        return {"d4": self.d4, "rotations": self.rotations, "gains": list(self.gains)}

    def orbit_names(self) -> list[str]:
        return [n for n, _ in self.orbit]

    def transformed(self, images: NDArray[np.uint8]) -> list[NDArray[np.uint8]]:
        """The images under each element of the orbit (what the wrapped model scores)."""
        return [np.ascontiguousarray(f(images)) for _, f in self.orbit]

    def _defend(self, images: NDArray[np.uint8], metadata: list[Metadata] | None) -> NDArray[np.float64]:
        views = self.transformed(images)
        meta = None if metadata is None else list(metadata) * len(views)
        probs = self.score(np.concatenate(views), meta)
        return probs.reshape(len(views), len(images), -1).mean(axis=0)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["tta"] = {"orbit": self.orbit_names(), "aggregation": "mean of probabilities"}
        return d


def _compose(first: Transform, second: Transform) -> Transform:
    def f(images: NDArray[np.uint8]) -> NDArray[np.uint8]:
        return second(first(images))

    return f
