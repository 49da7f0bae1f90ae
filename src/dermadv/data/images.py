"""Image decoding and resizing. The JPEG decoder is an explicit, recorded choice.

Real models are sensitive to how a JPEG is decoded (IDCT and chroma upsampling differ between
libjpeg settings): decoding like TensorFlow reproduces a Keras model's published outputs, PIL's
decoder does not always. Every model adapter names its decoder; every run records it.

The same rules hold for every decoder and every command:

- an image whose header claims more than ``2 * PIL.Image.MAX_IMAGE_PIXELS`` pixels (a decompression
  bomb) is refused with a DataError, by both decoders, before anything is allocated;
- 16-bit images (PNG ``I;16``) are scaled to 8 bits (``round(v / 257)``), not clipped to white;
- EXIF orientation is NOT applied (as ``tf.io.decode_jpeg`` and ``PIL.Image.open`` do not): a model
  sees the stored pixels. ``dermadv data check`` warns about images whose EXIF orientation is not 1
  (:func:`image_warnings`), and about images far below a model's input size.
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


def max_pixels() -> int:
    """The decompression-bomb limit: twice PIL's ``Image.MAX_IMAGE_PIXELS`` (read at call time)."""
    limit = Image.MAX_IMAGE_PIXELS
    return 2 * int(limit) if limit else 0


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
            return _decode_tf(data, name)
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            im.load()
            rgb = _to_rgb(im)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{name}: {_bomb_message(exc)}") from exc
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


def _bomb_message(detail: object) -> str:
    return (
        f"image too large to decode ({detail}); refused as a possible decompression bomb "
        f"(limit {max_pixels()} pixels: raise PIL.Image.MAX_IMAGE_PIXELS if the image is genuine)"
    )


def _decode_tf(data: bytes, name: str) -> np.ndarray:
    """simplejpeg, strict (libjpeg warnings such as corrupt scan data are errors), size checked first."""
    import simplejpeg

    try:
        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        if max_pixels() and h * w > max_pixels():
            raise DataError(f"{name}: {_bomb_message(f'{w} x {h} pixels')}")
        return np.ascontiguousarray(
            simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=False)
        )
    except (ValueError, RuntimeError) as exc:
        raise DataError(f"{name}: corrupt JPEG ({exc})") from exc


def _to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB; 16-bit and 32-bit integer images are scaled (PIL's convert would clip them to white)."""
    if im.mode.startswith("I;16") or (im.mode == "I" and im.format == "PNG"):
        wide = np.asarray(im).astype(np.float64)
        return Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)).convert("RGB")
    if im.mode in ("I", "F"):
        wide = np.asarray(im).astype(np.float64)
        top = float(wide.max()) if wide.size else 0.0
        scale = 255.0 if top <= 255 else 65535.0 if top <= 65535 else top
        return Image.fromarray(np.clip(np.rint(wide * 255.0 / scale), 0, 255).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def is_jpeg_file(data: bytes) -> bool:
    """Whether encoded bytes are a JPEG (start with the SOI marker)."""
    return _is_jpeg(data)


def image_warnings(data: bytes, image: np.ndarray, min_side: int | None = None) -> list[tuple[str, str]]:
    """What a check should say about an image that decodes, as ``(problem kind, message)``: EXIF
    orientation not applied (``exif_orientation``), or a shorter side below ``min_side`` pixels
    (``small_image``). Empty when there is nothing to say."""
    out: list[tuple[str, str]] = []
    try:
        with Image.open(io.BytesIO(data)) as im:
            orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - an unreadable EXIF block is no reason to fail a decodable image
        orientation = 1
    if orientation not in (1, None):
        out.append(
            (
                "exif_orientation",
                f"EXIF orientation {orientation} is not applied: models see the stored pixels (rotated or "
                "mirrored from how viewers show it); save it upright if the orientation matters",
            )
        )
    if min_side is not None and min(image.shape[:2]) < min_side:
        out.append(
            (
                "small_image",
                f"image is {image.shape[1]} x {image.shape[0]} pixels, far below the model's input size "
                f"(shorter side under {min_side} px): upscaling leaves little for the model to see",
            )
        )
    return out


#: Which models decode with each decoder (for check messages).
DECODER_USERS: dict[str, str] = {
    "pil": "PyTorch and most ONNX models",
    "tf": "Keras/TensorFlow-trained models such as sklesion",
}


def check_image_bytes(
    data: bytes, decoders: Sequence[str] = DECODERS, name: str = "<bytes>", min_side: int | None = None
) -> list[tuple[str, str]]:
    """Decode ``data`` with each of ``decoders`` as a model would; DataError naming the decoder that
    fails. A JPEG is also decoded strictly once: corrupt scan data that PIL decodes silently (into
    damaged pixels) is an error too. Returns the warnings of :func:`image_warnings`."""
    if not decoders:
        raise ValueError("check_image_bytes needs at least one decoder")
    image: np.ndarray | None = None
    failures: dict[str, DataError] = {}
    for decoder in decoders:
        try:
            decoded = decode_bytes(data, decoder=decoder, name=name)
        except DataError as exc:
            failures[decoder] = exc
            continue
        image = decoded if image is None else image
    if failures:
        failed, error = next(iter(failures.items()))
        if image is None and (len(decoders) > 1 or failed == "pil"):
            raise error  # no decoder reads it: the message says what it is
        raise DataError(f"{error} [decoder {failed}: {DECODER_USERS[failed]}]") from error
    assert image is not None
    if _is_jpeg(data) and "tf" not in decoders:
        try:
            _decode_tf(data, name)
        except DataError as exc:
            raise DataError(
                f"{exc}; PIL decodes it anyway, into damaged pixels [decoder pil: {DECODER_USERS['pil']}]"
            ) from exc
    return image_warnings(data, image, min_side)


def load_image(path: str | Path, decoder: str = "pil") -> np.ndarray:
    """Read and decode an image file to uint8 RGB (H x W x 3); errors name the file."""
    path = Path(path)
    return decode_bytes(read_image_file(path), decoder=decoder, name=str(path))


def read_image_file(path: str | Path) -> bytes:
    """The bytes of an image file; DataError naming it when it is missing or unreadable."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: image file not found") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read image file ({exc.strerror})") from exc


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
