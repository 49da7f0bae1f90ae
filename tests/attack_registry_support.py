"""A real plugin for tests/*/test_attack_registry.py: a per-channel gamma perturbation and the attack
that searches it by DE. Registered by name as ``attack_registry_support:GammaAttack``."""

from __future__ import annotations

from typing import Any

import numpy as np

from dermadv.attacks import EvolutionaryAttack
from dermadv.perturb import Perturbation
from dermadv.perturb.base import apply_tables, check_image

GAMMA_ATTACK = f"{__name__}:GammaAttack"


class Gamma(Perturbation):
    """Params (g_r, g_g, g_b) in [1/ratio, ratio]: x -> round(255 * (x / 255) ** g) per channel."""

    name = "gamma"
    param_names = ("g_r", "g_g", "g_b")

    def __init__(self, ratio: float = 1.5) -> None:
        if not float(ratio) > 1:
            raise ValueError(f"Gamma: ratio must be > 1, got {ratio!r}")
        self.ratio = float(ratio)

    def bounds(self, image_shape: tuple[int, ...]) -> list[tuple[float, float]]:
        return [(1 / self.ratio, self.ratio)] * 3

    def apply(self, image: np.ndarray, params: np.ndarray, device: Any = None) -> np.ndarray:
        g = self.check_params(params)[:, :, None]
        v = np.arange(256, dtype=np.float64) / 255
        tables = np.clip(np.round(255 * v[None, None, :] ** g), 0, 255).astype(np.uint8)
        return apply_tables(check_image(image)[None], tables)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": list(self.param_names), "ratio": self.ratio}


class GammaAttack(EvolutionaryAttack):
    """A plugin attack: DE over :class:`Gamma`, its options explicit."""

    name = "gamma"

    def __init__(
        self, ratio: float = 1.5, *, popsize: int = 20, maxiter: int = 20, threshold: float = 0.9
    ) -> None:
        super().__init__(Gamma(ratio), popsize=popsize, maxiter=maxiter, threshold=threshold)
