"""Parametric image perturbations: ``apply(image, params P x D) -> P perturbed uint8 images``.

Every perturbation is a batched tensor operation over a whole population of parameter vectors, so
an attack can score all candidates of one generation in one forward pass. Each is exact and
documented down to its rounding: the uint8 images returned are exactly what the model is shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Param:
    """One named parameter of a perturbation's clinical parameter space.

    ``low``/``high``: the clinically plausible range (what robustness runs sample, severity 5 reaches
    its edge). ``identity``: the value that leaves the image unchanged, if there is one (severity s
    scales the distance from it by s/5); ``None`` for parameters that are not a magnitude (a noise
    seed, a pixel position). ``integer``: values are rounded to integers before use (JPEG quality,
    seeds). ``unit``: shown in tables and docs.
    """

    name: str
    low: float
    high: float
    identity: float | None = None
    integer: bool = False
    unit: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise ValueError(f"parameter {self.name}: need finite low <= high, got [{self.low}, {self.high}]")
        if self.identity is not None and not self.low <= self.identity <= self.high:
            raise ValueError(
                f"parameter {self.name}: identity {self.identity} outside [{self.low}, {self.high}]"
            )

    def at_severity(self, level: int) -> Param:
        """This parameter's range at severity ``level`` (1..5): the part of the clinical range within
        ``level / 5`` of the identity value on each side (the whole range for non-magnitudes)."""
        if self.identity is None:
            return self
        f = check_severity(level) / 5.0
        lo = self.identity + (self.low - self.identity) * f
        hi = self.identity + (self.high - self.identity) * f
        return Param(self.name, lo, hi, self.identity, self.integer, self.unit)


SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)


def check_severity(level: Any) -> int:
    """A severity level as an int in 1..5 (ImageNet-C / SAM-C convention)."""
    if isinstance(level, bool) or int(level) != level or not 1 <= int(level) <= 5:
        raise ValueError(f"severity must be an integer 1..5, got {level!r}")
    return int(level)


class Perturbation:
    """A family of image transforms indexed by a real parameter vector of length ``len(param_names)``.

    One transform model serves three uses: an attack *searches* :meth:`bounds`, a robustness run
    *samples* :meth:`space` (the clinical range, optionally at a severity 1..5), and a sweep point or
    a SAM-C style corruption is the transform at *fixed* parameters (:meth:`severity_params`, or any
    vector). Subclasses set ``name`` and ``param_names`` and implement either :meth:`space` or
    :meth:`bounds` (each defaults to the other), and either :meth:`transform` (each image with its own
    parameter row) or :meth:`apply` (one image, many rows); each defaults to the other too.
    ``source`` says where the definition comes from (paper, benchmark, code), shown by ``describe()``.

    Stochastic transforms (noise, hair, elastic) take their random draw from an integer ``seed``
    parameter, so that a parameter vector always means exactly one image.
    """

    name: str = "perturbation"
    param_names: tuple[str, ...] = ()
    #: where this transform is defined (paper, benchmark, code); recorded by describe()
    source: str = ""
    #: a variation that happens in clinical practice (``dermadv robustness --transforms all`` samples
    #: these); False for pure search spaces such as a few arbitrary pixels
    clinical: bool = True

    def __init__(self) -> None:
        """No options (subclasses take theirs as explicit keyword arguments)."""

    @property
    def dim(self) -> int:
        """Number of parameters D."""
        return len(self.param_names)

    # ----- parameter space --------------------------------------------------------------------------
    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        """The clinical parameter space for an image of shape (H, W, 3); by default :meth:`bounds`
        with the class attribute ``identity`` (a tuple of identity values or None per parameter)."""
        if type(self).bounds is Perturbation.bounds:
            raise NotImplementedError(f"{type(self).__name__} must implement space() or bounds()")
        ident: tuple[float | None, ...] = getattr(self, "identity", (None,) * self.dim)
        return tuple(
            Param(n, float(lo), float(hi), i)
            for n, (lo, hi), i in zip(self.param_names, self.bounds(image_shape), ident, strict=True)
        )

    def bounds(self, image_shape: tuple[int, ...]) -> list[tuple[float, float]]:
        """(low, high) for each parameter, for an image of shape (H, W, 3): the attack's search space."""
        if type(self).space is Perturbation.space:
            raise NotImplementedError(f"{type(self).__name__} must implement space() or bounds()")
        return [(p.low, p.high) for p in self.space(image_shape)]

    def severity_space(self, level: int, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        """The space at severity ``level`` 1..5 (each magnitude within level/5 of its identity)."""
        return tuple(p.at_severity(level) for p in self.space(image_shape))

    def severity_params(self, level: int, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        """The fixed 1 x D parameter vector of severity ``level`` (a SAM-C style corruption point).

        Default: every magnitude at the edge of :meth:`severity_space` farther from its identity, other
        parameters at their low end (seed 0). Transforms with published severity constants override this.
        """
        row = [
            p.low if p.identity is None or abs(p.low - p.identity) > abs(p.high - p.identity) else p.high
            for p in self.severity_space(level, image_shape)
        ]
        return np.asarray([row], dtype=np.float64)

    # ----- applying -----------------------------------------------------------------------------------
    def apply(
        self, image: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        """Perturb one uint8 H x W x 3 image with each row of ``params`` (P x D): uint8 P x H x W x 3.

        ``device`` is a torch device for perturbations computed with torch (e.g. the model's GPU);
        table look-ups and pixel writes ignore it (they are cheapest in numpy on the CPU).
        """
        if type(self).transform is Perturbation.transform:
            raise NotImplementedError(f"{type(self).__name__} must implement apply() or transform()")
        image = check_image(image)
        p = self.check_params(params)
        return self.transform(np.broadcast_to(image, (len(p), *image.shape)), p, device=device)

    def transform(
        self, images: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        """Perturb each image of a uint8 N x H x W x 3 batch with its own row of ``params`` (N x D,
        or 1 x D for all): uint8 N x H x W x 3. Never modifies ``images`` (it may be a read-only view)."""
        batch = check_images(images)
        p = self.check_params(params)
        if len(p) == 1 and len(batch) > 1:
            p = np.broadcast_to(p, (len(batch), self.dim))
        if len(p) != len(batch):
            raise ValueError(f"{self.name}: {len(batch)} images but {len(p)} parameter rows")
        if type(self).apply is Perturbation.apply:
            raise NotImplementedError(f"{type(self).__name__} must implement apply() or transform()")
        out = np.empty(batch.shape, dtype=np.uint8)
        for i in range(len(batch)):
            out[i] = self.apply(batch[i], p[i : i + 1], device=device)[0]
        return out

    # ----- on the device ------------------------------------------------------------------------------
    #: True where :meth:`transform_tensor` computes on the tensor's own device (the GPU path keeps a
    #: campaign's candidates there); False: the numpy path with one host round trip per call
    device_native: bool = False

    def transform_tensor(self, images: torch.Tensor, params: NDArray[np.float64]) -> torch.Tensor:
        """The device path: uint8 N x H x W x 3 torch tensor on any device, with N = P (a row per image)
        or N = 1 (one image, every row of the P x D ``params``) -> uint8 P x H x W x 3 on that device.

        Native implementations (``device_native``) give the bytes of :meth:`transform` exactly where
        their docstring says so (table look-ups and pixel writes are exact everywhere; float kernels
        such as ``grid_sample`` may round a value one grey level differently on a GPU). The default
        runs :meth:`apply`/:meth:`transform` on a host copy and moves the result back.
        """
        import torch

        x = check_tensor_images(images, self.name)
        p = self.check_params(params)
        host = x.cpu().numpy()
        out = self.apply(host[0], p) if len(host) == 1 else self.transform(host, p)
        return torch.from_numpy(out).to(x.device)

    def with_decoder(self, decoder: str) -> Perturbation:
        """This perturbation for a model whose JPEG decoder is ``decoder`` (only JPEG cares)."""
        return self

    # ----- describing -------------------------------------------------------------------------------
    def describe_params(
        self, params: NDArray[np.float64], image_shape: tuple[int, ...] | None = None
    ) -> dict[str, Any]:
        """The parameter vector as a readable dict of plain Python numbers (recorded in results)."""
        p = self.check_params(params)[0]
        return {n: float(v) for n, v in zip(self.param_names, p, strict=True)}

    def describe(self) -> dict[str, Any]:
        """Settings of this perturbation (recorded beside results)."""
        out: dict[str, Any] = {"name": self.name, "params": list(self.param_names)}
        if self.source:
            out["source"] = self.source
        return out

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
        settings = {k: v for k, v in self.describe().items() if k not in ("name", "params", "source")}
        inner = ", ".join(f"{k}={v!r}" for k, v in settings.items())
        return f"{type(self).__name__}({inner})"


class TablePerturbation(Perturbation):
    """A point-wise map of each channel's 256 values (colour gains, channel shifts, brightness):
    subclasses implement :meth:`tables`, and ``apply``, ``transform`` and the device path follow.

    The documented arithmetic runs once per value into uint8 tables on the host; the images are then
    gathered through them (:func:`apply_tables`, or :func:`apply_tables_tensor` on the tensor's device),
    so every path gives the same bytes.
    """

    device_native = True  # the same tables, gathered on the device: identical bytes

    def tables(self, params: NDArray[np.float64]) -> NDArray[np.uint8]:
        """uint8 P x 3 x 256: channel k maps value v to ``tables[p, k, v]`` for each row of ``params``."""
        raise NotImplementedError

    def _rows(self, n: int, params: Any) -> NDArray[np.float64]:
        p = self.check_params(params)
        if len(p) == 1 and n > 1:
            return np.broadcast_to(p, (n, self.dim))
        if n not in (1, len(p)):
            raise ValueError(f"{self.name}: {n} images but {len(p)} parameter rows")
        return p

    def apply(
        self, image: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        # one image, P tables: one gather from the single image (not P copies of it)
        return apply_tables(check_image(image)[None], self.tables(self.check_params(params)))

    def transform(
        self, images: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        batch = check_images(images)
        return apply_tables(batch, self.tables(self._rows(len(batch), params)))

    def transform_tensor(self, images: torch.Tensor, params: NDArray[np.float64]) -> torch.Tensor:
        x = check_tensor_images(images, self.name)
        return apply_tables_tensor(x, self.tables(self._rows(x.shape[0], params)))


#: Perturbations by name (entry-point group ``dermadv.perturbations``): ``PERTURBATIONS.create("color",
#: delta="0.05")``. Each class registers itself where it is defined; a registered perturbation is a
#: search space for the ``evolve`` attack (``evolve.perturbation=NAME``).
PERTURBATIONS: Registry[type[Perturbation]] = Registry("perturbation")


def to_uint8(x: torch.Tensor) -> NDArray[np.uint8]:
    """Float tensor in pixel units -> uint8 numpy by round-half-to-even then clipping to 0..255."""
    import torch

    out: NDArray[np.uint8] = torch.round(x).clamp_(0, 255).to(torch.uint8).cpu().numpy()
    return out


def check_tensor_images(images: Any, what: str = "images") -> torch.Tensor:
    """Validate a uint8 N x H x W x 3 torch tensor (the device path's images)."""
    import torch

    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{what}: expected a torch uint8 N x H x W x 3 tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(
            f"{what}: expected a uint8 N x H x W x 3 tensor, got {images.dtype} {tuple(images.shape)}"
        )
    return images


def takes_tensors(model: Any) -> bool:
    """Whether ``model`` scores uint8 tensors where they lie (``predict_tensor``: the device path)."""
    return callable(getattr(type(model), "predict_tensor", None))


def gpu_path(model: Any, perturbation: Perturbation) -> bool:
    """The device path's automatic choice: perturb and score on the model's device when the model takes
    tensors, computes on a GPU (the CPU keeps the numpy path) and the perturbation is native there."""
    device = getattr(model, "device", None)
    return takes_tensors(model) and getattr(device, "type", "cpu") != "cpu" and perturbation.device_native


def image_tensor(image: NDArray[np.uint8], device: Any) -> torch.Tensor:
    """One uint8 H x W x 3 image as a uint8 1 x H x W x 3 tensor on ``device`` (uploaded once)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(image)[None]).to(device)


def rows_for(images: torch.Tensor, params: NDArray[np.float64], what: str) -> NDArray[np.float64]:
    """``params`` as P rows for ``images`` (N = 1 with any P, or N = P; one row broadcast to N)."""
    n = images.shape[0]
    if len(params) == 1 and n > 1:
        return np.broadcast_to(params, (n, params.shape[1]))
    if n not in (1, len(params)):
        raise ValueError(f"{what}: {n} images but {len(params)} parameter rows")
    return params


def apply_tables_tensor(images: torch.Tensor, tables: NDArray[np.uint8]) -> torch.Tensor:
    """:func:`apply_tables` on the images' device: the same tables (computed on the host with the
    documented arithmetic, P x 3 x 256 bytes) gathered on the device, so the bytes are identical."""
    import torch

    p, n = len(tables), images.shape[0]
    if n not in (1, p):
        raise ValueError(f"apply_tables_tensor: {n} images for {p} tables (need 1 or {p})")
    dev = images.device
    flat = torch.from_numpy(np.ascontiguousarray(tables, dtype=np.uint8).reshape(p, 3 * 256)).to(dev)
    index = images.reshape(n, -1, 3).long() + torch.arange(3, device=dev) * 256
    out = torch.gather(flat, 1, index.reshape(n, -1).expand(p, -1))
    return out.reshape(p, *images.shape[1:])


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
