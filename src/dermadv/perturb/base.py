"""Parametric image perturbations: ``apply(image, params P x D) -> P perturbed uint8 images``.

Every perturbation is a batched tensor operation over a whole population of parameter vectors, so
an attack can score all candidates of one generation in one forward pass. Each is exact and
documented down to its rounding: the uint8 images returned are exactly what the model is shown.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from dermadv.registry import Registry

if TYPE_CHECKING:
    import torch


def check_image(image: Any, what: str = "image") -> NDArray[np.uint8]:
    """Validate one uint8 H x W x 3 RGB array (scikit-learn style: say exactly what was wrong)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what}: expected a numpy uint8 H x W x 3 array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what}: expected a uint8 H x W x 3 RGB array, got {image.dtype} {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what}: empty image of shape {image.shape}")
    return image


def check_images(images: Any, what: str = "images") -> NDArray[np.uint8]:
    """Validate a uint8 N x H x W x 3 batch (a single H x W x 3 image becomes a batch of one)."""
    if not isinstance(images, np.ndarray):
        raise TypeError(f"{what}: expected a numpy uint8 N x H x W x 3 array, got {type(images).__name__}")
    batch: NDArray[np.uint8] = images[None] if images.ndim == 3 else images
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
        raise ValueError(f"{what}: expected a uint8 N x H x W x 3 array, got {batch.dtype} {batch.shape}")
    return batch


class Perturbation(ABC):
    """A family of image transforms indexed by a real parameter vector of length ``len(param_names)``.

    Subclasses set ``name`` and ``param_names`` and implement :meth:`bounds` and :meth:`apply`.
    """

    name: str = "perturbation"
    param_names: tuple[str, ...] = ()

    @property
    def dim(self) -> int:
        """Number of parameters D."""
        return len(self.param_names)

    @abstractmethod
    def bounds(self, image_shape: tuple[int, ...]) -> list[tuple[float, float]]:
        """(low, high) for each parameter, for an image of shape (H, W, 3)."""

    @abstractmethod
    def apply(
        self, image: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        """Perturb one uint8 H x W x 3 image with each row of ``params`` (P x D): uint8 P x H x W x 3.

        ``device`` is a torch device for perturbations computed with torch (e.g. the model's GPU);
        table look-ups and pixel writes ignore it (they are cheapest in numpy on the CPU).
        """

    def describe_params(
        self, params: NDArray[np.float64], image_shape: tuple[int, ...] | None = None
    ) -> dict[str, Any]:
        """The parameter vector as a readable dict of plain Python numbers (recorded in results)."""
        p = self.check_params(params)[0]
        return {n: float(v) for n, v in zip(self.param_names, p, strict=True)}

    def describe(self) -> dict[str, Any]:
        """Settings of this perturbation (recorded beside results)."""
        return {"name": self.name, "params": list(self.param_names)}

    def check_params(self, params: Any) -> NDArray[np.float64]:
        """Validate ``params`` as a finite float64 P x D array (a single vector becomes 1 x D)."""
        arr = np.asarray(params, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(
                f"{self.name}: params must be P x {self.dim} ({', '.join(self.param_names)}), "
                f"got shape {np.shape(params)}"
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"{self.name}: params contain NaN or infinite values")
        return arr

    def __repr__(self) -> str:
        settings = {k: v for k, v in self.describe().items() if k not in ("name", "params")}
        inner = ", ".join(f"{k}={v!r}" for k, v in settings.items())
        return f"{type(self).__name__}({inner})"


#: Perturbations by name (entry-point group ``dermadv.perturbations``): ``PERTURBATIONS.create("color",
#: delta="0.05")``. Each class registers itself where it is defined; a registered perturbation is a
#: search space for the ``evolve`` attack (``evolve.perturbation=NAME``).
PERTURBATIONS: Registry[type[Perturbation]] = Registry("perturbation")


def to_uint8(x: torch.Tensor) -> NDArray[np.uint8]:
    """Float tensor in pixel units -> uint8 numpy by round-half-to-even then clipping to 0..255."""
    import torch

    out: NDArray[np.uint8] = torch.round(x).clamp_(0, 255).to(torch.uint8).cpu().numpy()
    return out


def per_image_channels(values: Any, n: int, what: str) -> NDArray[np.float64]:
    """``values`` as float64 N x 3: one RGB triple for all ``n`` images, or one per image."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = np.broadcast_to(v, (n, 3))
    if v.shape != (n, 3):
        raise ValueError(f"{what}: expected 3 or {n} x 3 values, got shape {np.shape(values)}")
    return v


def apply_tables(images: NDArray[np.uint8], tables: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Per-channel lookup: ``out[p, ..., k] = tables[p, k, images[p or 0, ..., k]]``.

    ``images`` is uint8 1 x H x W x 3 (shared by all P tables) or P x H x W x 3; ``tables`` is
    uint8 P x 3 x 256. A point-wise pixel map applied this way is exact by construction: each of
    the 256 possible values is computed once with the documented arithmetic, then gathered (one
    vectorised gather for the whole population).
    """
    p, n = len(tables), len(images)
    if n not in (1, p):
        raise ValueError(f"apply_tables: {n} images for {p} tables (need 1 or {p})")
    flat = np.asarray(tables, dtype=np.uint8).reshape(p, 3 * 256)
    index = np.asarray(images, dtype=np.intp).reshape(n, -1, 3) + np.arange(3) * 256  # channel k -> k*256+v
    out: NDArray[np.uint8]
    if n == 1:
        # np.take, not flat[:, idx]: fancy indexing returns a transposed (non C-contiguous) array,
        # which made every later copy of the population (concatenate, stack) ~20x slower
        out = np.take(flat, index[0].reshape(-1), axis=1)
    else:
        out = np.take_along_axis(flat, index.reshape(n, -1), axis=1)
    return out.reshape(p, *np.shape(images)[1:])  # C-contiguous
