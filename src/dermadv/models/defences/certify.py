"""Per-image certificates of the melanoma/benign call under colour gains and rotations.

Three methods, each named in every certificate it issues:

``exact-gain`` (enumeration; sound by construction)
    The study's colour perturbation ``trunc(min(x c_k, 255))`` (float64 product) is, for every pixel
    value v, a non-decreasing step function of c_k (floating-point rounding of v * c is monotone in c).
    So over c_k in [lo, hi] each channel takes finitely many outputs, one per *change point*: the
    smallest float c at which some present value v steps up to the next integer. Every image the
    attack can reach is the product of one output per channel; scoring all of them decides the
    question exactly. Feasible only when the channels hold few distinct values (synthetic images,
    flat regions): the count is reported, and above ``max_images`` no certificate is attempted.

``smoothing-gain`` (TSS, Li et al. 2021) and ``smoothing-rotation`` (Fischer et al. 2020)
    Randomized smoothing (Cohen et al. 2019) in the transform's parameter space: the smoothed call is
    ``g(a) = argmax_y P[f(T(x, a + t)) = y]`` with ``t ~ N(0, sigma^2)`` in log-gains (3-D) or degrees
    (1-D), f the base call (melanoma iff score >= threshold). With ``n0`` samples to pick the call and
    ``n`` to bound it, the one-sided Clopper-Pearson lower bound p_low of P(call) at level 1 - alpha
    gives the certified radius ``R = sigma * Phi^-1(p_low)`` (abstain when p_low <= 1/2). The range is
    certified when the ball of radius R contains it: for gains the box [lo, hi]^3 in log space (radius
    sqrt(3) * max|log c|), for rotations [-max_angle, max_angle]. A certificate is issued only if the
    certified call equals the clean call of the base model (the call an attacker tries to flip).

    Scope, stated in each such certificate: the guarantee is for the smoothed classifier of the *clean*
    image's parameter, T(x, a + t). A deployed smoothed model that only sees an attacked image computes
    T(T(x, a), t), which differs from T(x, a + t) by uint8 truncation (gains) or bilinear resampling
    (rotations); that difference is not bounded here.

Colour constancy is not exactly gain-invariant under the study's arithmetic (see
:func:`dermadv.models.defences.colour.gain_invariance_bound`); :func:`gain_invariance_note` says what
holds for one image, and no certificate is derived from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.metrics import melanoma_score
from dermadv.models.base import Classifier, Metadata
from dermadv.perturb.base import check_image
from dermadv.vocab import Group

METHODS: tuple[str, ...] = ("exact-gain", "smoothing-gain", "smoothing-rotation")


@dataclass
class Certificate:
    """One image's certificate (``certified`` None: not attempted or not sound; ``reason`` says why)."""

    image_id: str
    method: str
    perturbation: str
    range: list[float]
    clean_call: str  # "melanoma" | "benign": the base model's call on the unmodified image
    certified: bool | None
    correct: bool | None = None  # clean call == truth (None when the truth is unknown)
    radius: float | None = None
    required_radius: float | None = None
    p_lower: float | None = None
    smoothed_call: str | None = None
    n: int = 0
    forwards: int = 0
    reason: str = ""
    scope: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _calls(
    model: Classifier, images: NDArray[np.uint8], metadata: Metadata, threshold: float, bs: int
) -> NDArray[np.bool_]:
    """Melanoma calls (True) of the model for a batch, in chunks of ``bs`` images."""
    out = []
    for s in range(0, len(images), bs):
        chunk = images[s : s + bs]
        meta = None if metadata is None else [metadata] * len(chunk)
        out.append(melanoma_score(model, model.predict_proba(chunk, meta, batch_size=bs)) >= threshold)
    return np.concatenate(out) if out else np.zeros(0, dtype=bool)


def _group(call: bool) -> str:
    return Group.MELANOMA if call else Group.BENIGN


def _correct(call: bool, truth: str | None) -> bool | None:
    return None if truth is None else (_group(call) == truth)


# ----- exact enumeration over colour gains ---------------------------------------------------------------
def change_points(values: NDArray[np.int64], lo: float, hi: float) -> NDArray[np.float64]:
    """Sorted floats c in [lo, hi] at which ``trunc(min(v * c, 255))`` steps for some v in ``values``
    (``lo`` included): the table is constant from each point to the next."""
    points = {float(lo)}
    for v in np.unique(values):
        v = float(v)
        if v == 0:
            continue
        m_lo, m_hi = math.floor(v * lo) + 1, min(255, math.floor(v * hi))
        for m in range(m_lo, m_hi + 1):
            c = m / v
            while c > lo and math.floor(v * np.nextafter(c, -np.inf)) >= m:  # step down onto the first c
                c = float(np.nextafter(c, -np.inf))
            while math.floor(v * c) < m:  # rounding put v * c just below m: step up
                c = float(np.nextafter(c, np.inf))
            if lo < c <= hi:
                points.add(c)
    return np.array(sorted(points), dtype=np.float64)


def reachable_channel_tables(values: NDArray[np.int64], lo: float, hi: float) -> list[NDArray[np.uint8]]:
    """The distinct outputs (256-entry tables restricted to nothing: full tables) of one channel's gain
    over [lo, hi], computed with the colour perturbation's own arithmetic."""
    from dermadv.perturb.color import color_tables

    cs = change_points(values, lo, hi)
    tables = color_tables(np.repeat(cs[:, None], 3, axis=1))[:, 0, :]  # P x 256
    present = np.unique(values)
    _, first = np.unique(tables[:, present], axis=0, return_index=True)
    return [tables[i] for i in sorted(first)]


def exact_gain_certificate(
    model: Classifier,
    image: NDArray[np.uint8],
    metadata: Metadata = None,
    *,
    image_id: str = "image",
    truth: str | None = None,
    delta: float = 0.1,
    threshold: float = 0.5,
    max_images: int = 100_000,
    batch_size: int | None = None,
) -> Certificate:
    """Decide by enumeration whether any gain c in [1 - delta, 1 + delta]^3 flips the call (see module)."""
    image = check_image(model.prepare([image])[0])
    lo, hi = 1.0 - float(delta), 1.0 + float(delta)
    bs = int(batch_size or model.batch_size)
    clean = bool(_calls(model, image[None], metadata, threshold, bs)[0])
    per_channel = [reachable_channel_tables(image[..., k].astype(np.int64).ravel(), lo, hi) for k in range(3)]
    counts = [len(t) for t in per_channel]
    total = int(np.prod(counts, dtype=np.float64))
    base = Certificate(
        image_id,
        "exact-gain",
        "color",
        [lo, hi],
        _group(clean),
        None,
        _correct(clean, truth),
        details={"reachable_images": total, "per_channel": counts},
        scope="every image trunc(min(x c, 255)) reachable with c in the box (exhaustive)",
    )
    base.forwards = 1  # the clean call
    if total > max_images:
        base.reason = (
            f"not attempted: {total:.3g} distinct reachable images (channels hold {counts} distinct outputs) "
            f"exceed max_images={max_images}; use a smoothing certificate"
        )
        return base
    flat = image.reshape(-1, 3)
    index = np.indices(counts).reshape(3, -1).T
    flips = 0
    forwards = 1
    first_flip: list[int] | None = None
    for s in range(0, len(index), bs):
        rows = index[s : s + bs]
        batch = np.stack(
            [np.stack([per_channel[k][r[k]][flat[:, k]] for k in range(3)], axis=1) for r in rows]
        ).reshape(len(rows), *image.shape)
        calls = _calls(model, batch, metadata, threshold, bs)
        forwards += len(rows)
        bad = np.flatnonzero(calls != clean)
        if len(bad) and first_flip is None:
            first_flip = [int(v) for v in rows[bad[0]]]
        flips += len(bad)
        if flips:
            break  # one flip decides it
    base.forwards = forwards
    base.certified = flips == 0
    base.n = forwards - 1
    base.reason = (
        "no reachable image changes the call" if flips == 0 else "a reachable image changes the call"
    )
    if first_flip is not None:
        base.details["flipping_tables"] = first_flip
    return base


# ----- randomized smoothing ------------------------------------------------------------------------------
def _lower_bound(k: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson lower bound of a binomial proportion at level 1 - alpha."""
    from scipy.stats import beta

    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))


def _gain_images(image: NDArray[np.uint8], t: NDArray[np.float64]) -> NDArray[np.uint8]:
    from dermadv.perturb.color import color_balance

    return color_balance(np.broadcast_to(image, (len(t), *image.shape)), np.exp(t))


def _rotation_images(image: NDArray[np.uint8], t: NDArray[np.float64]) -> NDArray[np.uint8]:
    from dermadv.perturb.affine import rotate

    return rotate(np.broadcast_to(image, (len(t), *image.shape)), t[:, 0])


SCOPE = (
    "smoothed classifier of the clean image's transform parameter, g(a) = argmax P[f(T(x, a + t))]; "
    "a model seeing only the attacked uint8 image computes T(T(x, a), t), whose difference from "
    "T(x, a + t) (truncation / resampling) is not bounded"
)


def smoothing_certificate(
    model: Classifier,
    image: NDArray[np.uint8],
    metadata: Metadata = None,
    *,
    kind: str = "gain",
    image_id: str = "image",
    truth: str | None = None,
    delta: float = 0.1,
    max_angle: float = 10.0,
    sigma: float | None = None,
    n0: int = 32,
    n: int = 256,
    alpha: float = 0.001,
    threshold: float = 0.5,
    seed: int = 0,
    batch_size: int | None = None,
) -> Certificate:
    """Randomized-smoothing certificate over log-gains (``kind="gain"``, box [1-delta, 1+delta]^3) or
    rotation angles (``kind="rotation"``, [-max_angle, max_angle] degrees); see the module docstring.

    ``sigma``: noise scale in log-gain units (default 0.1) or degrees (default max_angle / 2).
    """
    if kind not in ("gain", "rotation"):
        raise ValueError(f"kind must be 'gain' or 'rotation', got {kind!r}")
    if not (0 < alpha < 0.5) or n0 < 1 or n < 1:
        raise ValueError(f"need 0 < alpha < 0.5, n0 >= 1 and n >= 1, got alpha={alpha}, n0={n0}, n={n}")
    image = check_image(model.prepare([image])[0])
    bs = int(batch_size or model.batch_size)
    rng = np.random.default_rng([int(seed), 0xCE27])
    if kind == "gain":
        lo, hi = 1.0 - float(delta), 1.0 + float(delta)
        required = math.sqrt(3) * max(abs(math.log(lo)), abs(math.log(hi)))
        s = 0.1 if sigma is None else float(sigma)
        dim, make, rng_range, pert, method = 3, _gain_images, [lo, hi], "color", "smoothing-gain"
        source = "TSS (Li et al. 2021): Gaussian smoothing over log-gains, Cohen et al. 2019 radius"
    else:
        required = float(max_angle)
        s = required / 2 if sigma is None else float(sigma)
        dim, make, rng_range, pert, method = (
            1,
            _rotation_images,
            [-required, required],
            "rotation",
            "smoothing-rotation",
        )
        source = "Fischer et al. 2020: Gaussian smoothing over the rotation angle, Cohen et al. 2019 radius"
    if not s > 0:
        raise ValueError(f"sigma must be positive, got {s}")
    clean = bool(_calls(model, image[None], metadata, threshold, bs)[0])

    def sample(count: int) -> int:
        t = rng.normal(0.0, s, size=(count, dim))
        hits = 0
        for start in range(0, count, bs):
            hits += int(_calls(model, make(image, t[start : start + bs]), metadata, threshold, bs).sum())
        return hits

    mel0 = sample(n0)
    guess = mel0 * 2 >= n0  # the call the selection samples favour
    mel = sample(n)
    k = mel if guess else n - mel
    p_low = _lower_bound(k, n, alpha)
    cert = Certificate(
        image_id,
        method,
        pert,
        rng_range,
        _group(clean),
        False,
        _correct(clean, truth),
        required_radius=required,
        p_lower=p_low,
        smoothed_call=_group(guess),
        n=n,
        forwards=1 + n0 + n,
        scope=SCOPE,
        details={"sigma": s, "n0": n0, "alpha": alpha, "method_source": source, "count": k},
    )
    if p_low <= 0.5:
        cert.reason = f"abstain: lower bound {p_low:.4f} of P(smoothed call) is not above 1/2"
        return cert
    from scipy.stats import norm

    cert.radius = float(s * norm.ppf(p_low))
    if guess != clean:
        cert.reason = "the smoothed call differs from the base model's clean call: nothing to certify"
    elif cert.radius < required:
        cert.reason = f"radius {cert.radius:.4f} does not cover the range (needs {required:.4f})"
    else:
        cert.certified = True
        cert.reason = f"radius {cert.radius:.4f} >= {required:.4f}"
    return cert


def gain_invariance_note(model: Classifier, image: NDArray[np.uint8], delta: float = 0.1) -> dict[str, Any]:
    """What colour constancy in front of ``model`` guarantees for ``image`` under gains in
    [1 - delta, 1 + delta]^3: never an exact certificate (the output moves by up to ``bound`` grey
    levels, or without bound where pixels clip)."""
    from dermadv.models.defences.base import Defence
    from dermadv.models.defences.colour import ColorConstancy, gain_invariance_bound

    chain = model.chain() if isinstance(model, Defence) else []
    if not chain or not isinstance(chain[0], ColorConstancy):
        return {
            "exact": "not sound",
            "reason": "the model does not start with colour constancy: no invariance",
        }
    cc = chain[0]
    image = check_image(model.prepare([image])[0])
    corners = np.array(np.meshgrid(*[[1 - delta, 1 + delta]] * 3)).reshape(3, -1).T
    bounds = [gain_invariance_bound(image, c, cc.p, cc.sigma, cc.target) for c in corners]
    if any(b is None for b in bounds):
        return {
            "exact": "not sound",
            "reason": f"pixels clip at gains up to {1 + delta:g} (max value {int(image.max())}): the gain "
            "does not scale the illuminant estimate, nothing cancels",
        }
    bound = max(b for b in bounds if b is not None)
    return {
        "exact": "not sound",
        "reason": f"no clipping, but uint8 truncation moves the corrected image by up to {bound:.2f} grey "
        "levels (gain_invariance_bound at the box corners): invariance holds only up to that residual",
        "bound_grey_levels": bound,
    }


def certified_accuracy(certs: Sequence[Certificate]) -> dict[str, Any]:
    """Share of images certified with a correct clean call (Wilson 95% CI), per method; images without a
    certificate attempt (``certified`` None) count as not certified and are reported."""
    from dermadv.metrics import proportion

    out: dict[str, Any] = {}
    for method in sorted({c.method for c in certs}):
        chosen = [c for c in certs if c.method == method and c.correct is not None]
        if not chosen:
            continue
        k = sum(1 for c in chosen if c.certified and c.correct)
        out[method] = {
            **proportion(k, len(chosen)),
            "certified": sum(1 for c in chosen if c.certified),
            "not_attempted": sum(1 for c in chosen if c.certified is None),
            "clean_correct": sum(1 for c in chosen if c.correct),
        }
    return out
