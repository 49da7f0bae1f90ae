"""Shared plumbing of the transform modules (batching, seeds, float <-> uint8, image-size scaling).

Conventions every transform module follows:

- ``transform(images N x H x W x 3, params N x D or 1 x D)``; ``apply`` is the base class default
  (the one image broadcast to P rows, never copied);
- integer parameters (seeds, counts, JPEG quality) are rounded half-to-even (``np.rint``) before use;
- float results become uint8 by round-half-to-even, then clipping to 0..255 (:func:`round_clip_tensor`,
  :func:`round_clip`; the rule of :func:`dermadv.perturb.base.to_uint8`), unless a docstring says
  otherwise;
- pixel-valued constants are given at a stated reference size and scaled by ``min(H, W) / reference``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from dermadv.perturb.base import Perturbation, check_images, check_tensor_images, rows_for

if TYPE_CHECKING:
    import torch


class Transform(Perturbation):
    """Base of the transform modules' classes (shared helpers live in this module)."""


class TensorTransform(Transform):
    """A transform whose one tensor core :meth:`_tensor` serves both paths (``device_native``).

    ``transform`` (numpy in and out) puts the batch on its ``device`` argument (default CPU), runs the
    core and copies the result back; ``transform_tensor`` runs the same core on the tensor's own
    device, so on a GPU the images never leave it. The core never writes its input and never returns
    a view of it.
    """

    device_native = True

    def _tensor(self, x: torch.Tensor, p: NDArray[np.float64]) -> torch.Tensor:
        """uint8 N x H x W x 3 tensor (N = 1 for every row, or N = P) and float64 P x D params ->
        a new uint8 P x H x W x 3 tensor on x's device (any strides)."""
        raise NotImplementedError

    def transform(
        self, images: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        batch, p = batch_and_params(self, images, params)
        return np.ascontiguousarray(self._tensor(u8_tensor(batch, device), p).cpu().numpy())

    def transform_tensor(self, images: torch.Tensor, params: NDArray[np.float64]) -> torch.Tensor:
        x = check_tensor_images(images, self.name)
        return self._tensor(x, rows_for(x, self.check_params(params), self.name)).contiguous()


def batch_and_params(
    pert: Perturbation, images: Any, params: Any
) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """Validated uint8 N x H x W x 3 batch and float64 N x D params (one row broadcast to all)."""
    batch = check_images(images)
    p = pert.check_params(params)
    if len(p) == 1 and len(batch) != 1:
        p = np.broadcast_to(p, (len(batch), pert.dim))
    if len(p) != len(batch):
        raise ValueError(f"{pert.name}: {len(batch)} images but {len(p)} parameter rows")
    return batch, p


def scale(image_shape: tuple[int, ...], reference: float) -> float:
    """Pixel constants given at ``reference`` px, scaled to this image: ``min(H, W) / reference``."""
    return min(int(image_shape[0]), int(image_shape[1])) / float(reference)


def seed(value: float) -> int:
    """An integer seed parameter (rounded half-to-even) as a non-negative int for default_rng."""
    s = int(np.rint(value))
    if s < 0:
        raise ValueError(f"seed must be >= 0, got {value!r}")
    return s


def unique_rows(p: NDArray[np.float64]) -> Iterator[tuple[NDArray[np.float64], NDArray[np.intp]]]:
    """(row, indices of the images having it): a library call with scalar arguments runs once per
    distinct parameter vector, on all images sharing it."""
    rows, inverse = np.unique(np.asarray(p), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    for k, row in enumerate(rows):
        yield row, np.flatnonzero(inverse == k)


def device_of(device: Any) -> Any:
    return device if device is not None else "cpu"


def u8_tensor(batch: NDArray[np.uint8], device: Any = None) -> torch.Tensor:
    """uint8 numpy -> uint8 torch tensor on ``device``; a read-only or strided input (a broadcast
    view) is copied first, so the caller's array is never shared writable with torch."""
    import torch

    return torch.from_numpy(np.require(batch, np.uint8, ["C", "W"])).to(device_of(device))


def u8_nhwc(x: torch.Tensor) -> torch.Tensor:
    """float N x 3 x H x W tensor (pixel units) -> uint8 N x H x W x 3 tensor on its device (a
    permuted view): :func:`round_clip_tensor`."""
    return round_clip_tensor(x).permute(0, 2, 3, 1)


def round_clip_tensor(x: torch.Tensor) -> torch.Tensor:
    """float tensor (pixel units) -> uint8 tensor of the same layout: round half to even, clip."""
    import torch

    return torch.round(x).clamp_(0, 255).to(torch.uint8)


def param_tensor(values: NDArray[np.float64], like: torch.Tensor) -> torch.Tensor:
    """float64 numpy values as a float64 tensor on ``like``'s device."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)).to(like.device)


def index_tensor(idx: NDArray[np.intp], like: torch.Tensor) -> torch.Tensor:
    """Integer indices as an int64 tensor on ``like``'s device."""
    import torch

    return torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(like.device)


def by_unique_rows(
    x: torch.Tensor,
    p: NDArray[np.float64],
    fn: Callable[[torch.Tensor, NDArray[np.float64]], torch.Tensor | None],
) -> torch.Tensor:
    """A tensor core run once per distinct parameter row: ``fn(src, row)`` gets the uint8 images having
    that row (1 x H x W x 3 when ``x`` is one image shared by every row, else those of x) and returns
    their uint8 results, or None to keep them unchanged. Returns a new uint8 P x H x W x 3 tensor."""
    import torch

    out = torch.empty((len(p), *x.shape[1:]), dtype=torch.uint8, device=x.device)
    for row, idx in unique_rows(p):
        where = index_tensor(idx, x)
        src = x if len(x) == 1 else x.index_select(0, where)
        res = fn(src, row)
        res = src if res is None else res
        out[where] = res.expand(len(where), -1, -1, -1) if len(res) == 1 else res
    return out


def keep_rows(out: torch.Tensor, x: torch.Tensor, keep: NDArray[np.bool_]) -> torch.Tensor:
    """``out`` (uint8 P x H x W x 3) with the rows where ``keep`` is True replaced by the input images
    ``x`` (N = 1 shared, or N = P): identity parameter rows return their image unchanged."""
    if keep.any():
        where = index_tensor(np.flatnonzero(keep), x)
        out[where] = x[:1].expand(len(where), -1, -1, -1) if len(x) == 1 else x.index_select(0, where)
    return out


def round_clip(x: NDArray[Any]) -> NDArray[np.uint8]:
    """float numpy array (pixel units) -> uint8: round half to even, clip to 0..255."""
    out: NDArray[np.uint8] = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return out


def gaussian_kernel1d(sigma: float, truncate: float = 3.0) -> NDArray[np.float64]:
    """Normalised 1-D Gaussian taps at integer offsets -r..r, r = int(truncate * sigma + 0.5)
    (scipy.ndimage.gaussian_filter's radius, which skimage's gaussian calls)."""
    r = max(1, int(truncate * sigma + 0.5))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    out: NDArray[np.float64] = k / k.sum()
    return out


def reflect_filter_matrix(n: int, taps: NDArray[np.float64]) -> NDArray[np.float64]:
    """n x n matrix of a 1-D filter with symmetric ('reflect', d c b a | a b c d) boundaries, however
    long the filter: ``out = M @ signal``. Lets a wide Gaussian run as two small matrix products."""
    r = len(taps) // 2
    idx = np.arange(n)[:, None] + np.arange(-r, r + 1)[None, :]
    period = 2 * n
    idx = np.mod(idx, period)
    idx = np.where(idx >= n, period - 1 - idx, idx)
    flat = (np.arange(n)[:, None] * n + idx).reshape(-1)
    m = np.bincount(flat, weights=np.tile(taps, n), minlength=n * n).astype(np.float64)
    return m.reshape(n, n)


def reflect101_index(n: int, pad: int) -> NDArray[np.int64]:
    """Source indices of ``-pad .. n - 1 + pad`` under reflect-101 boundaries (c b | a b c | b a,
    OpenCV's default and torch's ``reflect``), for any ``pad`` (repeated reflection)."""
    i = np.arange(-pad, n + pad)
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    j = np.mod(i, period)
    out: NDArray[np.int64] = np.where(j >= n, period - j, j).astype(np.int64)
    return out


def pad_reflect101(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """N x C x H x W tensor padded by reflect-101 (any pad size, unlike ``F.pad(mode='reflect')``)."""
    import torch

    h, w = x.shape[-2:]
    iy = torch.from_numpy(reflect101_index(h, pad_h)).to(x.device)
    ix = torch.from_numpy(reflect101_index(w, pad_w)).to(x.device)
    return x.index_select(-2, iy).index_select(-1, ix)


def pad_edge(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """N x C x H x W tensor padded by repeating the edge pixels (any pad size)."""
    import torch

    h, w = x.shape[-2:]
    iy = torch.from_numpy(np.clip(np.arange(-pad_h, h + pad_h), 0, h - 1)).to(x.device)
    ix = torch.from_numpy(np.clip(np.arange(-pad_w, w + pad_w), 0, w - 1)).to(x.device)
    return x.index_select(-2, iy).index_select(-1, ix)


def pixel_grid_norm(n: int) -> NDArray[np.float64]:
    """grid_sample (align_corners=False) normalised coordinates of the n pixel centres."""
    out: NDArray[np.float64] = (2 * np.arange(n, dtype=np.float64) + 1) / n - 1
    return out
