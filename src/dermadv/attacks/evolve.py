"""``evolve``: differential evolution over any registered perturbation (``PERTURBATIONS``).

``make_attack("evolve", perturbation="shift", perturbation_options="max_shift=20")`` searches the
additive channel shift of :class:`~dermadv.perturb.ChannelShift` within +-20; from the command line,
``dermadv attack --attacks evolve -a evolve.perturbation=shift -a evolve.perturbation_options=max_shift=20``.
A perturbation a plugin registers is searched the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from dermadv.attacks.base import AttackConfigError
from dermadv.attacks.evolutionary import EvolutionaryAttack
from dermadv.attacks.registry import ATTACKS, parse_pairs
from dermadv.perturb.base import PERTURBATIONS
from dermadv.registry import RegistryError, coerce


@ATTACKS.register("evolve", builtin=True)
class EvolveAttack(EvolutionaryAttack):
    """DE over the registered perturbation ``perturbation``, built with ``perturbation_options``
    (a mapping, or ``"KEY=VALUE[,KEY=VALUE...]"``; values become the types of its defaults).

    Search, budget, stopping and criterion options: see :class:`EvolutionaryAttack`. ``params`` of a
    result: the perturbation's own ``describe_params``. ``describe()`` records the perturbation's
    registered name and options.
    """

    name = "evolve"

    def __init__(
        self,
        perturbation: str = "shift",
        perturbation_options: str | Mapping[str, Any] = "",
        *,
        popsize: int = 20,
        maxiter: int = 20,
        mutation: float | tuple[float, float] = (0.5, 1.0),
        recombination: float = 1.0,
        init: str = "latinhypercube",
        tol: float = 0.0,
        atol: float = -1.0,
        threshold: float = 0.9,
        fitness: str = "auto",
        batch_score: bool = True,
        batch_size: int | str | None = None,
        search: str = "de",
        search_options: str | Mapping[str, Any] = "",
        chunk: int = 0,
        max_queries: int = 0,
        stop: str = "threshold",
        criterion: str = "group",
        device_path: str = "auto",
    ) -> None:
        name = str(perturbation).strip()
        given = parse_pairs(perturbation_options, "evolve: perturbation_options")
        try:
            valid = PERTURBATIONS.options(name)
            defaults = {k: None if d is inspect.Parameter.empty else d for k, d in valid.items()}
            opts = {
                k: coerce(v, defaults.get(k), f"perturbation {name!r}: option {k}") for k, v in given.items()
            }
            space = PERTURBATIONS.create(name, **opts)
        except RegistryError as exc:
            raise AttackConfigError(f"evolve: {exc}") from None
        super().__init__(
            space,
            popsize=popsize,
            maxiter=maxiter,
            mutation=mutation,
            recombination=recombination,
            init=init,
            tol=tol,
            atol=atol,
            threshold=threshold,
            fitness=fitness,
            batch_score=batch_score,
            batch_size=batch_size,
            search=search,
            search_options=search_options,
            chunk=chunk,
            max_queries=max_queries,
            stop=stop,
            criterion=criterion,
            device_path=device_path,
        )
        self.perturbation_name = name
        self.perturbation_options = opts

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            perturbation_name=self.perturbation_name,
            perturbation_options={k: _plain(v) for k, v in sorted(self.perturbation_options.items())},
        )
        return d


def _plain(value: Any) -> Any:
    """JSON-ready: tuples become lists (run.json compares settings after a JSON round trip)."""
    return list(value) if isinstance(value, tuple) else value
