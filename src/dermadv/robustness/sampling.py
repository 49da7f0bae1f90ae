"""Parameter draws for robustness runs: low-discrepancy points over a transform's clinical range.

Each (image, transform, severity) gets its own sequence of draws, seeded by a hash of the run seed,
the image id and the transform key, so a rerun, a resume, another executor or another batching give
the same draws in the same order. The sequence is generated in full (``n_max`` points, cheap) and
consumed as a prefix, so stopping early (sequential stopping) never changes the draws made.

Samplers (``scipy.stats.qmc``): ``sobol`` (scrambled Sobol', the default; its balance properties hold
for prefixes of length 2^m, which is why the default sample count is a power of two), ``lhs``
(Latin hypercube over the whole ``n_max``; a stopped prefix is not stratified) and ``random``
(independent uniform draws). A unit-cube point u maps onto the range [low, high] as
``low + u (high - low)``; integer parameters (JPEG quality, noise seeds) as
``min(high, floor(low + u (high - low + 1)))``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from dermadv.perturb.base import Param

SAMPLERS: tuple[str, ...] = ("sobol", "lhs", "random")


def draw_seed(seed: int, image_id: str, transform_key: str) -> int:
    """The seed of one image's draws under one transform: the campaigns' job seed of (run seed, image
    id, transform), so it depends only on what is drawn, never on order, batching or workers."""
    from dermadv.campaign.seeds import job_seed

    return job_seed(seed, image_id, transform_key)


def unit_points(sampler: str, dim: int, n: int, seed: int) -> NDArray[np.float64]:
    """``n`` points in [0, 1)^dim from ``sampler`` seeded with ``seed``."""
    from scipy.stats import qmc

    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if n < 1 or dim < 1:
        raise ValueError(f"need n >= 1 and dim >= 1, got n={n}, dim={dim}")
    rng = np.random.default_rng(seed)
    if sampler == "random":
        return rng.random((n, dim))
    engine = (
        qmc.Sobol(dim, scramble=True, seed=rng) if sampler == "sobol" else qmc.LatinHypercube(dim, seed=rng)
    )
    with (
        warnings.catch_warnings()
    ):  # Sobol' warns when n is not a power of 2; the docstring says why it is fine
        warnings.simplefilter("ignore", UserWarning)
        points: NDArray[np.float64] = engine.random(n)
    return points


def scale_points(points: NDArray[np.float64], space: Sequence[Param]) -> NDArray[np.float64]:
    """Map unit-cube points (n x D) onto the parameter ranges of ``space``."""
    u = np.asarray(points, dtype=np.float64)
    if u.ndim != 2 or u.shape[1] != len(space):
        raise ValueError(f"points must be n x {len(space)}, got {u.shape}")
    out = np.empty_like(u)
    for k, p in enumerate(space):
        if p.integer:
            out[:, k] = np.minimum(p.high, np.floor(p.low + u[:, k] * (p.high - p.low + 1)))
        else:
            out[:, k] = p.low + u[:, k] * (p.high - p.low)
    return out


def draws(
    space: Sequence[Param],
    n: int,
    *,
    sampler: str = "sobol",
    seed: int = 0,
    image_id: str = "",
    key: str = "",
) -> NDArray[np.float64]:
    """The first ``n`` parameter draws (n x D) for ``image_id`` under transform ``key``."""
    return scale_points(unit_points(sampler, len(space), n, draw_seed(seed, image_id, key)), space)
