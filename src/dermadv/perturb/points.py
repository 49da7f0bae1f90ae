"""Sweep points: a registered perturbation at fixed parameters, and the spec language naming them.

A sweep point (``dermadv perturb``) is one deterministic transform of a whole batch at the model's
input size: a :class:`~dermadv.perturb.base.Perturbation` from ``PERTURBATIONS`` at one parameter
vector. The only exception is ``decoder:NAME``, which re-decodes the original file with another JPEG
decoder (a file-level change, not a transform of pixels).

=========================  ===========================================================================
spec                       meaning
=========================  ===========================================================================
``none``                   the unmodified set (always evaluated first: the baseline)
``rot180``, ``rot45``      rotation by 180 / 45 degrees; ``rot:ANGLE`` any angle, ``rot:A,DX,DY`` with a
                           shift in pixels (the ``rotation`` perturbation: bilinear, black fill)
``shift:r:+50``            add +50 to the red channel (``r``, ``g``, ``b`` or ``rgb``), clipped to 0..255
                           (the ``shift`` perturbation); ``shift:SR,SG,SB`` any three offsets
``color:1.1,0.9,1``        per-channel gains, truncated as the study's colour attack (``color``)
``hue:0.05``               rotate hue by 0.05 of the colour circle (-0.5..0.5), as torchvision adjust_hue
``blur:1.5``               Gaussian blur, sigma 1.5 pixels (the ``gaussian_blur`` perturbation)
``jpeg:75``                JPEG re-compression at quality 75, decoded with the model's decoder
``brightness:1.2``         multiply every pixel by 1.2, clipped
``contrast:0.8``           blend with the image's mean grey (torchvision adjust_contrast)
``NAME:V1,V2,...``         any registered perturbation at these parameter values, in its parameter order
``NAME@S``                 any registered perturbation at severity S (1..5), e.g. ``gaussian_noise@3``
``decoder:tf``             decode the file with the ``tf`` (or ``pil``; ``other`` = not the model's) decoder
``study``                  the study's 20: rot180, rot45 and shifts of -50,-10,-5,+5,+10,+50 per channel
``sam-c``                  SAM-C's 14 corruptions at severities 1..5 (70 points; Maron et al. 2021)
=========================  ===========================================================================

Specs are comma-separated, except that the values of a ``NAME:V1,V2,...`` point may contain commas:
a token that does not start a new spec (a bare number) continues the previous one. The canonical
spec string of a point (the key its results are stored under) does not depend on how it was written:
``rotation:45,0,0`` and ``rot45`` are both ``rot:45``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from dermadv.data.images import DECODERS
from dermadv.errors import DermadvError
from dermadv.perturb.base import PERTURBATIONS, Perturbation, check_images, check_severity

CHANNELS = {"r": (0,), "g": (1,), "b": (2,), "rgb": (0, 1, 2)}
CHANNEL_NAMES = {"r": "Red", "g": "Green", "b": "Blue", "rgb": "All channels"}
STUDY_SHIFTS: tuple[int, ...] = (-50, -10, -5, 5, 10, 50)
#: spec heads of the sweep's short forms -> registered perturbation names
ALIASES = {"rot": "rotation", "blur": "gaussian_blur"}
_SHORT = {v: k for k, v in ALIASES.items()}

GRAMMAR = (
    "none | rot180 | rot45 | rot:ANGLE[,DX,DY] | shift:{r,g,b,rgb}:[+-]N | shift:SR,SG,SB | color:CR,CG,CB | "
    "hue:F | blur:SIGMA | jpeg:Q | brightness:F | contrast:F | NAME:V1,V2,... | NAME@SEVERITY | "
    "decoder:{pil,tf,other} | study | sam-c"
)


class SpecError(DermadvError, ValueError):
    """A perturbation spec that cannot be parsed; the message names the spec and the grammar."""


@dataclass(frozen=True)
class SweepPoint:
    """One named, deterministic perturbation of a batch of uint8 images.

    ``spec`` is the canonical spec string (the key results are stored under); ``label`` is how
    tables show it. ``perturbation`` is the registered name, with either fixed ``values`` or a
    ``severity`` (whose parameters depend on the image size); ``None`` for the unmodified set and for
    the file-level ``decoder`` points.
    """

    spec: str
    label: str
    perturbation: str | None = None
    values: tuple[float, ...] | None = None
    severity: int | None = None
    decoder: str | None = None

    @property
    def file_level(self) -> bool:
        """True for ``decoder:...`` points, which act on the encoded file (see :meth:`decoder_for`)."""
        return self.decoder is not None

    def build(self, decoder: str = "pil") -> Perturbation | None:
        """The registered perturbation (for a model whose JPEG decoder is ``decoder``), or None."""
        if self.perturbation is None:
            return None
        space: Perturbation = PERTURBATIONS.create(self.perturbation)
        return space.with_decoder(decoder)

    def params(self, image_shape: tuple[int, ...]) -> NDArray[np.float64]:
        """The 1 x D parameter vector of this point for images of shape (H, W, 3)."""
        space = self.build()
        if space is None:
            raise ValueError(f"{self.spec}: has no parameters")
        if self.severity is not None:
            return space.severity_params(self.severity, image_shape)
        return space.check_params(np.asarray(self.values, dtype=np.float64))

    def apply(self, images: NDArray[np.uint8], decoder: str = "pil") -> NDArray[np.uint8]:
        """Perturb a uint8 N x H x W x 3 batch (already at the model's input size)."""
        try:
            batch = check_images(images)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{self.spec}: {e}") from None
        if self.file_level:
            raise ValueError(f"{self.spec} acts on image files: re-decode them with decoder_for()")
        space = self.build(decoder)
        if space is None:
            return batch.copy()
        return space.transform(batch, self.params(batch.shape[1:]))

    def decoder_for(self, model_decoder: str) -> str:
        """For ``decoder:...`` points: the decoder to re-decode files with, given the model's."""
        if self.decoder is None:
            raise ValueError(f"{self.spec} is not a decoder change")
        if self.decoder == "other":
            return next(d for d in DECODERS if d != model_decoder)
        return self.decoder


# ----- spec language ----------------------------------------------------------------------------
_N = TypeVar("_N", int, float)


def _number(spec: str, text: str, kind: type[_N]) -> _N:
    try:
        value = kind(text)
    except ValueError:
        raise SpecError(
            f"perturbation {spec!r}: {text!r} is not a {kind.__name__}; grammar: {GRAMMAR}"
        ) from None
    if not np.isfinite(value):
        raise SpecError(f"perturbation {spec!r}: {text!r} is not a finite number")
    return value


def _fmt(x: float) -> str:
    return f"{x:g}" if float(x) != int(x) or abs(x) >= 1e16 else str(int(x))


def _shift_point(spec: str, values: tuple[float, ...]) -> SweepPoint:
    if any(not -255 <= v <= 255 for v in values):
        raise SpecError(f"perturbation {spec!r}: shift must be between -255 and 255")
    nonzero = [k for k, v in enumerate(values) if v != 0]
    if all(float(v).is_integer() for v in values):
        if len(nonzero) == 1:
            ch, v = "rgb"[nonzero[0]], int(values[nonzero[0]])
            return SweepPoint(f"shift:{ch}:{v:+d}", f"{CHANNEL_NAMES[ch]} {v:+d}", "shift", values)
        if len(set(values)) == 1 and values[0] != 0:
            v = int(values[0])
            return SweepPoint(f"shift:rgb:{v:+d}", f"{CHANNEL_NAMES['rgb']} {v:+d}", "shift", values)
    text = ",".join(_fmt(v) for v in values)
    return SweepPoint(f"shift:{text}", f"Shift ({text})", "shift", values)


def _channel_shift(spec: str, rest: str) -> SweepPoint:
    ch, _, val = rest.partition(":")
    if ch not in CHANNELS:
        raise SpecError(f"perturbation {spec!r}: channel must be one of r, g, b, rgb; grammar: {GRAMMAR}")
    v = _number(spec, val, int)
    if not -255 <= v <= 255:
        raise SpecError(f"perturbation {spec!r}: shift must be between -255 and 255")
    values = tuple(float(v) if k in CHANNELS[ch] else 0.0 for k in range(3))
    return _shift_point(spec, values)


#: what the sweep's short forms accept (the transforms' clinical ranges are narrower; a sweep may go beyond)
LIMITS: dict[str, tuple[str, float, float]] = {
    "hue": ("hue shift (fraction of the colour circle)", -0.5, 0.5),
    "gaussian_blur": ("blur sigma (pixels)", 1e-9, 50.0),
    "jpeg": ("JPEG quality", 1.0, 100.0),
    "brightness": ("brightness factor", 0.0, 10.0),
    "contrast": ("contrast factor", 0.0, 10.0),
}


def _check_range(spec: str, name: str, values: tuple[float, ...]) -> None:
    if name in LIMITS:
        what, lo, hi = LIMITS[name]
        if not lo <= values[0] <= hi:
            raise SpecError(f"perturbation {spec!r}: {what} must be in [{lo:g}, {hi:g}], got {values[0]:g}")
        if name == "jpeg" and not float(values[0]).is_integer():
            raise SpecError(f"perturbation {spec!r}: JPEG quality must be an integer, got {values[0]:g}")


def _valued_point(spec: str, name: str, values: tuple[float, ...]) -> SweepPoint:
    """A registered perturbation at explicit values, with its canonical spec and label."""
    space = PERTURBATIONS.create(name)
    if len(values) != space.dim:
        raise SpecError(
            f"perturbation {spec!r}: {name} takes {space.dim} values ({', '.join(space.param_names)}), "
            f"got {len(values)}"
        )
    _check_range(spec, name, values)
    text = ",".join(_fmt(v) for v in values)
    if name == "rotation" and values[1:] == (0.0, 0.0):
        return SweepPoint(f"rot:{_fmt(values[0])}", f"Rotation {_fmt(values[0])}°", name, values)
    if name == "shift":
        return _shift_point(spec, values)
    v0 = _fmt(values[0])
    labels = {  # one value each, except rotation (3) and color (3); built lazily for the one asked for
        "rotation": lambda: f"Rotation {v0}°, shift ({_fmt(values[1])}, {_fmt(values[2])}) px",
        "hue": lambda: f"Hue {values[0]:+g}",
        "gaussian_blur": lambda: f"Gaussian blur σ={v0}",
        "jpeg": lambda: f"JPEG quality {v0}",
        "brightness": lambda: f"Brightness ×{v0}",
        "contrast": lambda: f"Contrast ×{v0}",
        "color": lambda: f"Colour gains ({text})",
    }
    make = labels.get(name)
    label = (
        make()
        if make is not None
        else f"{name} ({', '.join(f'{p}={_fmt(v)}' for p, v in zip(space.param_names, values, strict=True))})"
    )
    return SweepPoint(f"{_SHORT.get(name, name)}:{text}", label, name, values)


def _registered(spec: str, head: str) -> str:
    name = ALIASES.get(head, head)
    if name not in PERTURBATIONS.names():
        known = ", ".join(PERTURBATIONS.names())
        raise SpecError(f"unknown perturbation {spec!r}; registered: {known}; grammar: {GRAMMAR}")
    return name


def parse_one(spec: str) -> SweepPoint:
    """Parse one spec (see the module docstring) into a :class:`SweepPoint`."""
    s = spec.strip().lower().replace(" ", "")
    if not s:
        raise SpecError(f"empty perturbation spec; grammar: {GRAMMAR}")
    if s in ("none", "original", "unmodified"):
        return SweepPoint("none", "Unmodified")
    if "@" in s:
        head, _, level = s.partition("@")
        name = _registered(spec, head)
        try:
            sev = check_severity(_number(spec, level, int))
        except ValueError as e:
            raise SpecError(f"perturbation {spec!r}: {e}") from None
        return SweepPoint(f"{_SHORT.get(name, name)}@{sev}", f"{name} severity {sev}", name, severity=sev)
    head, _, rest = s.partition(":")
    if head.startswith("rot") and head not in ("rot", "rotation") and not rest:  # rot180, rot45
        head, rest = "rot", head[3:]
    if head == "decoder":
        if rest not in (*DECODERS, "other"):
            raise SpecError(f"perturbation {spec!r}: decoder must be one of {', '.join(DECODERS)}, other")
        return SweepPoint(f"decoder:{rest}", f"JPEG decoder: {rest}", decoder=rest)
    if head == "shift" and rest[:1].isalpha():
        return _channel_shift(spec, rest)
    name = _registered(spec, head)
    if not rest:
        raise SpecError(f"perturbation {spec!r}: give values ({name}:V1,...) or a severity ({name}@S)")
    values = tuple(_number(spec, v, float) for v in rest.split(","))
    if name == "rotation" and len(values) == 1:
        values = (values[0], 0.0, 0.0)
    return _valued_point(spec, name, values)


def study_specs() -> list[str]:
    """The study's systematic perturbations (Supplementary Figure 1), in its order."""
    shifts = [f"shift:{c}:{v:+d}" for c in ("r", "g", "b") for v in STUDY_SHIFTS]
    return ["rot:180", "rot:45", *shifts]


def sam_c_specs() -> list[str]:
    """SAM-C's 14 corruptions at severities 1..5, in the benchmark's order."""
    from dermadv.perturb.benchmarks import SAM_C

    return [f"{name}@{s}" for name in SAM_C for s in range(1, 6)]


_GROUPS = {"study": study_specs, "sam-c": sam_c_specs, "samc": sam_c_specs}


def _tokens(text: str) -> list[str]:
    """Split on commas; a token that is a bare number continues the previous spec (``color:1.1,0.9,1``)."""
    out: list[str] = []
    for tok in (t.strip() for t in text.split(",")):
        if not tok:
            continue
        if out and _is_number(tok):
            out[-1] = f"{out[-1]},{tok}"
        else:
            out.append(tok)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_specs(text: str | Sequence[str] | None) -> list[SweepPoint]:
    """Parse a comma-separated list (or list of specs); ``None`` means ``study``. The unmodified
    baseline comes first exactly once; duplicates are dropped, order kept."""
    items = ["study"] if text is None else _tokens(text) if isinstance(text, str) else list(text)
    if not items:
        raise SpecError(f"no perturbations given; grammar: {GRAMMAR}")
    out: dict[str, SweepPoint] = {"none": parse_one("none")}
    for item in items:
        group = _GROUPS.get(item.strip().lower())
        for spec in group() if group else [item]:
            c = parse_one(spec)
            out.setdefault(c.spec, c)
    return list(out.values())
