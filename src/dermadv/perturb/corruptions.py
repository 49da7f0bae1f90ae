"""Fixed, named perturbations for the systematic sweep (``dermadv perturb``) and a small spec language.

Each spec names one deterministic transform of a whole batch at the model's input size, except
``decoder:NAME``, which re-decodes the original file with another JPEG decoder (a file-level change):

=====================  ==============================================================================
spec                   meaning
=====================  ==============================================================================
``none``               the unmodified set (always evaluated first: the baseline)
``rot180``, ``rot45``  rotation by 180 / 45 degrees; ``rot:ANGLE`` any angle. Uses
                       :func:`dermadv.perturb.affine.rotate` (black fill, bilinear), as the attack does
``shift:r:+50``        add +50 to the red channel (``r``, ``g``, ``b`` or ``rgb``), clipped to 0..255
``hue:0.05``           rotate hue by 0.05 of the colour circle (-0.5..0.5), as torchvision adjust_hue
``blur:1.5``           Gaussian blur, sigma 1.5 pixels (kernel 2*ceil(3 sigma)+1, reflect padding)
``jpeg:75``            JPEG re-compression at quality 75, decoded with the model's decoder
``brightness:1.2``     multiply every pixel by 1.2, clipped (ImageNet-C / MedMNIST-C style intensity)
``contrast:0.8``       blend with the image's mean grey (torchvision adjust_contrast)
``decoder:tf``         decode the file with the ``tf`` (or ``pil``; ``other`` = not the model's) decoder
``study``              the study's 20: rot180, rot45 and shifts of -50,-10,-5,+5,+10,+50 per channel
=====================  ==============================================================================

Specs are comma-separated: ``rot180,rot45,shift:r:+50,hue:0.05,blur:1.5,jpeg:75,decoder:other``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from dermadv.data.images import DECODERS
from dermadv.errors import DermadvError

if TYPE_CHECKING:
    import torch

CHANNELS = {"r": (0,), "g": (1,), "b": (2,), "rgb": (0, 1, 2)}
CHANNEL_NAMES = {"r": "Red", "g": "Green", "b": "Blue", "rgb": "All channels"}
STUDY_SHIFTS: tuple[int, ...] = (-50, -10, -5, 5, 10, 50)


class SpecError(DermadvError, ValueError):
    """A perturbation spec that cannot be parsed; the message names the spec and the grammar."""


@dataclass(frozen=True)
class Corruption:
    """One named, deterministic perturbation of a batch of uint8 images.

    ``spec`` is the canonical spec string (the key results are stored under); ``label`` is how
    tables show it; ``file_level`` corruptions act on the encoded file (see :meth:`load`).
    """

    spec: str
    kind: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)
    file_level: bool = False

    def apply(self, images: NDArray[np.uint8], decoder: str = "pil") -> NDArray[np.uint8]:
        """Perturb a uint8 N x H x W x 3 batch (already at the model's input size)."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"{self.spec}: expected uint8 N x H x W x 3 images, got {images.dtype} {images.shape}"
            )
        if self.file_level:
            raise ValueError(f"{self.spec} acts on image files: use Corruption.load(path, model)")
        return _APPLY[self.kind](images, decoder=decoder, **self.params)

    def decoder_for(self, model_decoder: str) -> str:
        """For ``decoder:...`` specs: the decoder to re-decode files with, given the model's."""
        name = str(self.params["decoder"])
        if name == "other":
            others = [d for d in DECODERS if d != model_decoder]
            return others[0]
        return name


# ----- batch transforms -------------------------------------------------------------------------
def identity(images: NDArray[np.uint8], **_: Any) -> NDArray[np.uint8]:
    return images.copy()


def rotate_batch(images: NDArray[np.uint8], angle: float, **_: Any) -> NDArray[np.uint8]:
    """Rotate every image by ``angle`` degrees about its centre: the attack's own rotation."""
    from dermadv.perturb.affine import rotate

    return np.asarray(rotate(images, float(angle), 0.0, 0.0), dtype=np.uint8)


def channel_shift(images: NDArray[np.uint8], channel: str, value: int, **_: Any) -> NDArray[np.uint8]:
    """Add ``value`` to the given channel(s), clipped to 0..255; other channels untouched."""
    out = images.copy()
    idx = list(CHANNELS[channel])
    out[..., idx] = np.clip(images[..., idx].astype(np.int16) + int(value), 0, 255).astype(np.uint8)
    return out


def _to_tensor(images: NDArray[np.uint8]) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2)


def _to_numpy(t: torch.Tensor) -> NDArray[np.uint8]:
    out: NDArray[np.uint8] = np.ascontiguousarray(t.permute(0, 2, 3, 1).numpy()).astype(np.uint8)
    return out


def hue_shift(images: NDArray[np.uint8], factor: float, **_: Any) -> NDArray[np.uint8]:
    """Rotate hue in HSV space by ``factor`` of the colour circle (torchvision adjust_hue)."""
    from torchvision.transforms import functional as F

    return _to_numpy(F.adjust_hue(_to_tensor(images), float(factor)))


def gaussian_blur(images: NDArray[np.uint8], sigma: float, **_: Any) -> NDArray[np.uint8]:
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel 2*ceil(3 sigma)+1)."""
    from torchvision.transforms import functional as F

    k = 2 * math.ceil(3 * float(sigma)) + 1
    return _to_numpy(F.gaussian_blur(_to_tensor(images), [k, k], [float(sigma), float(sigma)]))


def brightness(images: NDArray[np.uint8], factor: float, **_: Any) -> NDArray[np.uint8]:
    """Multiply intensities by ``factor``, rounded and clipped to 0..255."""
    scaled = np.rint(images.astype(np.float32) * float(factor))
    out: NDArray[np.uint8] = np.clip(scaled, 0, 255).astype(np.uint8)
    return out


def contrast(images: NDArray[np.uint8], factor: float, **_: Any) -> NDArray[np.uint8]:
    """Blend each image with its mean grey level (torchvision adjust_contrast)."""
    from torchvision.transforms import functional as F

    return _to_numpy(F.adjust_contrast(_to_tensor(images), float(factor)))


def jpeg_recompress(
    images: NDArray[np.uint8], quality: int, decoder: str = "pil", **_: Any
) -> NDArray[np.uint8]:
    """Encode each image as JPEG at ``quality`` (Pillow, 4:2:0) and decode it with ``decoder``."""
    from PIL import Image

    from dermadv.data.images import decode_bytes

    out = np.empty_like(images)
    for i, im in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=int(quality))
        out[i] = decode_bytes(buf.getvalue(), decoder=decoder, name=f"<jpeg q={quality}>")
    return out


_APPLY: dict[str, Callable[..., NDArray[np.uint8]]] = {
    "none": identity,
    "rotation": rotate_batch,
    "shift": channel_shift,
    "hue": hue_shift,
    "blur": gaussian_blur,
    "brightness": brightness,
    "contrast": contrast,
    "jpeg": jpeg_recompress,
}


# ----- spec language ----------------------------------------------------------------------------
GRAMMAR = (
    "none | rot180 | rot45 | rot:ANGLE | shift:{r,g,b,rgb}:[+-]N | hue:F | blur:SIGMA | jpeg:Q | "
    "brightness:F | contrast:F | decoder:{pil,tf,other} | study"
)


_N = TypeVar("_N", int, float)


def _number(spec: str, text: str, kind: type[_N]) -> _N:
    try:
        return kind(text)
    except ValueError:
        raise SpecError(
            f"perturbation {spec!r}: {text!r} is not a {kind.__name__}; grammar: {GRAMMAR}"
        ) from None


def _fmt(x: float) -> str:
    return f"{x:g}"


# One parser per spec head: (the spec as given, its head, the text after "head:") -> Corruption.
def _rotation(spec: str, head: str, rest: str) -> Corruption:
    angle = _number(spec, rest, float)
    return Corruption(f"rot:{_fmt(angle)}", "rotation", f"Rotation {_fmt(angle)}°", {"angle": angle})


def _shift(spec: str, head: str, rest: str) -> Corruption:
    ch, _, val = rest.partition(":")
    if ch not in CHANNELS:
        raise SpecError(f"perturbation {spec!r}: channel must be one of r, g, b, rgb; grammar: {GRAMMAR}")
    v = _number(spec, val, int)
    if not -255 <= v <= 255:
        raise SpecError(f"perturbation {spec!r}: shift must be between -255 and 255")
    return Corruption(
        f"shift:{ch}:{v:+d}", "shift", f"{CHANNEL_NAMES[ch]} {v:+d}", {"channel": ch, "value": v}
    )


def _hue(spec: str, head: str, rest: str) -> Corruption:
    f = _number(spec, rest, float)
    if not -0.5 <= f <= 0.5:
        raise SpecError(f"perturbation {spec!r}: hue shift must be in [-0.5, 0.5] (fraction of the circle)")
    return Corruption(f"hue:{_fmt(f)}", "hue", f"Hue {f:+g}", {"factor": f})


def _blur(spec: str, head: str, rest: str) -> Corruption:
    sigma = _number(spec, rest, float)
    if not 0 < sigma <= 50:
        raise SpecError(f"perturbation {spec!r}: blur sigma must be in (0, 50] pixels")
    return Corruption(f"blur:{_fmt(sigma)}", "blur", f"Gaussian blur σ={_fmt(sigma)}", {"sigma": sigma})


def _jpeg(spec: str, head: str, rest: str) -> Corruption:
    q = _number(spec, rest, int)
    if not 1 <= q <= 100:
        raise SpecError(f"perturbation {spec!r}: JPEG quality must be 1..100")
    return Corruption(f"jpeg:{q}", "jpeg", f"JPEG quality {q}", {"quality": q})


def _factor(spec: str, head: str, rest: str) -> Corruption:
    """``brightness:F`` and ``contrast:F``."""
    f = _number(spec, rest, float)
    if not 0 <= f <= 10:
        raise SpecError(f"perturbation {spec!r}: {head} factor must be in [0, 10]")
    return Corruption(f"{head}:{_fmt(f)}", head, f"{head.capitalize()} ×{_fmt(f)}", {"factor": f})


def _decoder(spec: str, head: str, rest: str) -> Corruption:
    if rest not in (*DECODERS, "other"):
        raise SpecError(f"perturbation {spec!r}: decoder must be one of {', '.join(DECODERS)}, other")
    return Corruption(
        f"decoder:{rest}", "decoder", f"JPEG decoder: {rest}", {"decoder": rest}, file_level=True
    )


_PARSERS: dict[str, Callable[[str, str, str], Corruption]] = {
    "rot": _rotation,
    "shift": _shift,
    "hue": _hue,
    "blur": _blur,
    "jpeg": _jpeg,
    "brightness": _factor,
    "contrast": _factor,
    "decoder": _decoder,
}


def parse_one(spec: str) -> Corruption:
    """Parse one spec (see the module docstring) into a :class:`Corruption`."""
    s = spec.strip().lower().replace(" ", "")
    if not s:
        raise SpecError(f"empty perturbation spec; grammar: {GRAMMAR}")
    if s in ("none", "original", "unmodified"):
        return Corruption("none", "none", "Unmodified")
    head, _, rest = s.partition(":")
    if head.startswith("rot") and head != "rot":  # rot180, rot45
        head, rest = "rot", head[3:]
    parser = _PARSERS.get(head)
    if parser is None:
        raise SpecError(f"unknown perturbation {spec!r}; grammar: {GRAMMAR}")
    return parser(spec, head, rest)


def study_specs() -> list[str]:
    """The study's systematic perturbations (Supplementary Figure 1), in its order."""
    shifts = [f"shift:{c}:{v:+d}" for c in ("r", "g", "b") for v in STUDY_SHIFTS]
    return ["rot:180", "rot:45", *shifts]


def parse_specs(text: str | Sequence[str] | None) -> list[Corruption]:
    """Parse a comma-separated list (or list of specs); ``None`` means ``study``. The unmodified
    baseline comes first exactly once; duplicates are dropped, order kept."""
    items: list[str]
    if text is None:
        items = ["study"]
    elif isinstance(text, str):
        items = [t for t in text.split(",") if t.strip()]
    else:
        items = list(text)
    if not items:
        raise SpecError(f"no perturbations given; grammar: {GRAMMAR}")
    out: dict[str, Corruption] = {"none": parse_one("none")}
    for item in items:
        expanded = study_specs() if item.strip().lower() == "study" else [item]
        for spec in expanded:
            c = parse_one(spec)
            out.setdefault(c.spec, c)
    return list(out.values())
