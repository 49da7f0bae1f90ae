"""Digital corruptions: JPEG re-compression (the sweep's ``jpeg:Q`` and ImageNet-C's), pixelation.

Both are exact library calls (Pillow), one image at a time (an encoder works on one image; the loop
is over images, not pixels); ``device`` is ignored.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.perturb._ops import Transform, batch_and_params
from dermadv.perturb.base import PERTURBATIONS, Param, check_severity
from dermadv.perturb.photometric import IMAGENET_C, SAM_C


@PERTURBATIONS.register("jpeg", builtin=True)
class Jpeg(Transform):
    """JPEG re-compression: each image encoded by Pillow at ``quality`` (its defaults: 4:2:0 chroma
    subsampling, standard tables) and decoded by :func:`dermadv.data.images.decode_bytes` with
    ``decoder`` (``pil`` or ``tf``: the model's own JPEG decoder). Bit-identical to the sweep's ``jpeg:Q``.

    Parameter ``quality``: integer 1..100 (rounded half to even). There is no identity: even quality
    100 changes pixels (chroma subsampling, rounding), so ``identity`` is None and the severity
    points are the published ImageNet-C qualities 25, 18, 15, 10, 7.
    """

    name = "jpeg"
    param_names = ("quality",)
    source = "Pillow JPEG encoder; the dermadv sweep's jpeg:Q"
    SEVERITY: tuple[int, ...] = (25, 18, 15, 10, 7)

    def __init__(self, decoder: str = "pil") -> None:
        from dermadv.data.images import DECODERS

        if decoder not in DECODERS:
            raise ValueError(
                f"{self.name}: unknown JPEG decoder {decoder!r}; choose one of {', '.join(DECODERS)}"
            )
        self.decoder = decoder

    def with_decoder(self, decoder: str) -> Jpeg:
        """A copy of this transform decoding with ``decoder`` (the model's JPEG decoder)."""
        return type(self)(decoder)

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (Param("quality", 1.0, 100.0, None, integer=True),)

    def severity_params(self, level: int, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        return np.array([[float(self.SEVERITY[check_severity(level) - 1])]])

    def transform(
        self, images: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        from PIL import Image

        from dermadv.data.images import decode_bytes

        batch, p = batch_and_params(self, images, params)
        quality = np.rint(p[:, 0]).astype(int)
        bad = (quality < 1) | (quality > 100)
        if bad.any():
            raise ValueError(f"{self.name}: quality must be 1..100, got {p[bad, 0][0]}")
        out = np.empty(batch.shape, dtype=np.uint8)
        for i, (im, q) in enumerate(zip(batch, quality, strict=True)):
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(im)).save(buf, format="JPEG", quality=int(q))
            out[i] = decode_bytes(buf.getvalue(), decoder=self.decoder, name=f"<jpeg q={q}>")
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "decoder": self.decoder}


@PERTURBATIONS.register("jpeg_compression", builtin=True)
class JpegCompression(Jpeg):
    """SAM-C / ImageNet-C ``jpeg_compression``: :class:`Jpeg` with the published ImageNet-C severity
    qualities 25, 18, 15, 10, 7 (ImageNet-C decodes with Pillow: decoder ``pil``)."""

    name = "jpeg_compression"
    source = IMAGENET_C + "; " + SAM_C


@PERTURBATIONS.register("pixelate", builtin=True)
class Pixelate(Transform):
    """Pixelation: Pillow BOX downscale to (int(W c), int(H c)) then BOX upscale back to (W, H), as
    ImageNet-C (which uses its 224 px size for both sides). Parameter ``c`` in [0.1, 1], identity 1
    (unchanged). Severities: published ImageNet-C c = 0.6, 0.5, 0.4, 0.3, 0.25 (relative, no
    scaling needed).
    """

    name = "pixelate"
    param_names = ("c",)
    source = IMAGENET_C + "; " + SAM_C
    SEVERITY: tuple[float, ...] = (0.6, 0.5, 0.4, 0.3, 0.25)

    def space(self, image_shape: tuple[int, ...]) -> tuple[Param, ...]:
        return (Param("c", 0.1, 1.0, 1.0),)

    def severity_params(self, level: int, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        return np.array([[self.SEVERITY[check_severity(level) - 1]]])

    def transform(
        self, images: NDArray[np.uint8], params: NDArray[np.float64], device: Any = None
    ) -> NDArray[np.uint8]:
        from PIL import Image

        batch, p = batch_and_params(self, images, params)
        h, w = batch.shape[1:3]
        out = np.empty(batch.shape, dtype=np.uint8)
        for i, (im, c) in enumerate(zip(batch, p[:, 0], strict=True)):
            small = (max(1, int(w * c)), max(1, int(h * c)))
            if small == (w, h):
                out[i] = im
                continue
            pil = Image.fromarray(np.ascontiguousarray(im)).resize(small, Image.Resampling.BOX)
            out[i] = np.asarray(pil.resize((w, h), Image.Resampling.BOX), dtype=np.uint8)
        return out


__all__ = ["Jpeg", "JpegCompression", "Pixelate"]
