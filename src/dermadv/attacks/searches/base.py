"""The ask/tell interface every search strategy follows, and a base class with its bookkeeping.

A search never calls the model. The attack *asks* it for candidates (a P x D array of parameter
vectors within ``bounds``), scores them (for many images in one forward pass), and *tells* it their
energies (lower is better) and optional extras (the model's probabilities, one row per candidate).
The attack may stop scoring inside an asked batch (its criterion was met) and then stops the search
with :meth:`Search.stop`; a search is only told batches that were scored in full.

:class:`~dermadv.attacks.de.DESearch` (registered as ``de``) predates this base class and follows the
same protocol (``ask``, ``tell``, ``stop``, ``done``, ``stop_reason``, ``best_x``, ``best_energy``,
``best_extra``, ``generation``, ``nfev``); the searches of this package subclass :class:`Search`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.attacks.de import check_bounds


def make_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A Generator from a seed (or the Generator itself)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def positive_int(value: Any, what: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, or a ValueError naming ``what``."""
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Search(ABC):
    """One search over ``bounds`` (D x 2): :meth:`ask` candidates, :meth:`tell` their energies.

    Subclasses set ``name`` and implement :meth:`_ask` (the next candidates, in the unit cube) and
    :meth:`_told` (react to the energies of the last ask). The base class validates, keeps the best
    candidate seen, counts evaluations (``nfev``) and iterations (``generation``: batches told).
    """

    name: str = "search"

    def __init__(self, bounds: Sequence[tuple[float, float]], seed: int | np.random.Generator | None = 0):
        self.bounds = check_bounds(bounds)
        self.dim = len(self.bounds)
        self.rng = make_rng(seed)
        self._low = self.bounds[:, 0]
        self._width = self.bounds[:, 1] - self.bounds[:, 0]
        self.stop_reason: str | None = None
        self.generation = 0
        self.nfev = 0
        self._asked: NDArray[np.float64] | None = None  # unit-cube candidates of the last ask
        self._best_u: NDArray[np.float64] | None = None
        self._best_e = float("inf")
        self._best_extra: Any = None

    # ----- state --------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    @property
    def best_x(self) -> NDArray[np.float64]:
        if self._best_u is None:
            raise RuntimeError(f"{self.name}: nothing has been told yet")
        return self.scale(self._best_u)

    @property
    def best_energy(self) -> float:
        return self._best_e

    @property
    def best_extra(self) -> Any:
        return self._best_extra

    @property
    def size(self) -> int | None:
        """Candidates per ask when that is fixed (None when it varies)."""
        return None

    def scale(self, unit: NDArray[np.float64]) -> NDArray[np.float64]:
        """Unit-cube coordinates -> parameters within the bounds."""
        out: NDArray[np.float64] = self._low + np.asarray(unit, dtype=np.float64) * self._width
        return out

    def unit(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Parameters -> unit-cube coordinates."""
        out: NDArray[np.float64] = (np.asarray(x, dtype=np.float64) - self._low) / self._width
        return out

    def stop(self, reason: str, force: bool = False) -> None:
        """End the search (``force`` replaces the reason of a search that has just ended)."""
        if force or not self.done:
            self.stop_reason = reason

    # ----- ask / tell ---------------------------------------------------------------------------
    def ask(self) -> NDArray[np.float64]:
        """The next candidates (P x D, in parameter units); the same ones again until told."""
        if self.done:
            raise RuntimeError(f"{self.name}: the search has stopped ({self.stop_reason}); nothing to ask")
        if self._asked is None:
            u = np.clip(np.atleast_2d(np.asarray(self._ask(), dtype=np.float64)), 0.0, 1.0)
            if u.shape[1] != self.dim or len(u) == 0:
                raise RuntimeError(f"{self.name}: asked {u.shape}, expected P x {self.dim} with P >= 1")
            self._asked = u
        return self.scale(self._asked)

    def tell(self, energies: Any, extras: Any = None) -> None:
        """Energies (and optional extras, one row each) of every candidate of the last :meth:`ask`."""
        if self._asked is None:
            raise RuntimeError(f"{self.name}: tell() without a preceding ask()")
        e = np.asarray(energies, dtype=np.float64).reshape(-1)
        if e.shape != (len(self._asked),):
            raise ValueError(f"{self.name}: expected {len(self._asked)} energies, got {e.shape[0]}")
        if np.isnan(e).any():
            raise ValueError(f"{self.name}: energies contain NaN")
        x = None if extras is None else np.asarray(extras)
        if x is not None and len(x) != len(e):
            raise ValueError(f"{self.name}: expected {len(e)} rows of extras, got {len(x)}")
        u, self._asked = self._asked, None
        self.nfev += len(e)
        self.generation += 1
        best = int(np.argmin(e))
        if e[best] < self._best_e:  # strictly better: the earliest of equal energies is kept
            self._best_u, self._best_e = u[best].copy(), float(e[best])
            self._best_extra = None if x is None else x[best]
        self._told(u, e, x)

    @abstractmethod
    def _ask(self) -> NDArray[np.float64]:
        """The next candidates in the unit cube (P x D); called once per tell."""

    @abstractmethod
    def _told(self, unit: NDArray[np.float64], energies: NDArray[np.float64], extras: Any) -> None:
        """React to the energies of the candidates ``unit`` (stop when the budget is spent)."""

    def describe(self) -> dict[str, Any]:
        """The search's name and settings (public attributes set by its constructor)."""
        return {"name": self.name}
