"""Image decoding and resizing. The JPEG decoder is an explicit, recorded choice.

Real models are sensitive to how a JPEG is decoded (IDCT and chroma upsampling differ between
libjpeg settings): decoding like TensorFlow reproduces a Keras model's published outputs, PIL's
decoder does not always. Every model adapter names its decoder; every run records it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dermadv.errors import DataError

#: Decoders by name. "pil": Pillow's libjpeg defaults. "tf": simplejpeg with fastdct=True and
#: fastupsample=False, which matches tf.io.decode_jpeg's defaults (integer IDCT, fancy upsampling).
DECODERS: tuple[str, ...] = ("pil", "tf")

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


def _is_jpeg(data: bytes) -> bool:
    return data[:2] == _JPEG_SOI


def decode_bytes(data: bytes, decoder: str = "pil", name: str = "<bytes>") -> np.ndarray:
    """Decode an encoded image to a uint8 H x W x 3 RGB array, or raise DataError naming ``name``."""
    if decoder not in DECODERS:
        raise DataError(f"unknown JPEG decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    if not data:
        raise DataError(f"{name}: file is empty")
    if _is_jpeg(data):
        # A JPEG must end with EOI; libjpeg would otherwise pad a truncated scan with grey silently.
        if _JPEG_EOI not in data[-1024:] and _JPEG_EOI not in data[2:]:
            raise DataError(f"{name}: truncated JPEG (no end-of-image marker)")
        if decoder == "tf":
            import simplejpeg

            try:
                return np.ascontiguousarray(
                    simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=False)
                )
            except (ValueError, RuntimeError) as exc:
                raise DataError(f"{name}: corrupt JPEG ({exc})") from exc
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            im.load()
            rgb = im.convert("RGB")
    except UnidentifiedImageError as exc:
        raise DataError(f"{name}: not a readable image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{name}: corrupt or truncated image ({exc})") from exc
    suffix = Path(name).suffix.lower()
    if suffix in (".jpg", ".jpeg") and fmt != "JPEG":
        raise DataError(f"{name}: file is named {suffix} but holds a {fmt} image")
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise DataError(f"{name}: unexpected image shape {arr.shape}")
    return arr


def load_image(path: str | Path, decoder: str = "pil") -> np.ndarray:
    """Read and decode an image file to uint8 RGB (H x W x 3); errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: image file not found") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read image file ({exc.strerror})") from exc
    return decode_bytes(data, decoder=decoder, name=str(path))


def _noaa_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of half-pixel-centre bilinear sampling along one axis (edges clamped)."""
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(np.intp)
    return i0, np.minimum(i0 + 1, n_in - 1), src - i0


def resize_uint8(image: np.ndarray, size: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """Resize one uint8 H x W x 3 image to ``size`` = (height, width).

    ``bilinear`` is Pillow's antialiased bilinear filter (what torchvision's Resize does on PIL
    images); ``bilinear-noaa`` is plain bilinear interpolation with half-pixel centres and no
    antialiasing (what tf.image.resize / Keras Resizing do).
    """
    h, w = size
    if image.shape[0] == h and image.shape[1] == w:
        return image
    if method == "bilinear":
        return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)
    if method == "bilinear-noaa":
        # float64 numpy, not torch: torch's float32 kernels round differently with the thread count
        # (1 of ~5000 pixels moved by 1 level), which moved sklesion's probabilities by up to 1e-3.
        r0, r1, fr = _noaa_axis(image.shape[0], h)
        c0, c1, fc = _noaa_axis(image.shape[1], w)
        x = image.astype(np.float64)
        rows = x[r0] * (1 - fr)[:, None, None] + x[r1] * fr[:, None, None]
        out = rows[:, c0] * (1 - fc)[None, :, None] + rows[:, c1] * fc[None, :, None]
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    raise ValueError(f"unknown resize method {method!r}; use 'bilinear' or 'bilinear-noaa'")


def as_batch(images: np.ndarray | Sequence[np.ndarray], what: str = "images") -> list[np.ndarray]:
    """Validate images as uint8 RGB and return them as a list of H x W x 3 arrays."""
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4:
            raise ValueError(f"{what}: expected N x H x W x 3 uint8, got array of shape {images.shape}")
        items = list(images)
    else:
        items = list(images)
    for i, im in enumerate(items):
        if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            desc = f"{im.dtype} {im.shape}" if isinstance(im, np.ndarray) else type(im).__name__
            raise ValueError(f"{what}[{i}]: expected a uint8 H x W x 3 RGB array, got {desc}")
    return items
