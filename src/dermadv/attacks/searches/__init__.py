"""Search strategies behind one ask/tell interface (:class:`~dermadv.attacks.searches.base.Search`),
registered in ``SEARCHES`` like attacks and usable with any perturbation (``--search NAME``):

- ``de``: differential evolution, scipy's best1bin/deferred, bit-identical to it (:mod:`dermadv.attacks.de`);
- ``grid``: every point of a rotation x translation or colour-gain grid (Engstrom et al. 2019);
- ``random``: worst-of-k random search, uniform or low-discrepancy (scipy.stats.qmc) draws;
- ``sparse_rs``: Sparse-RS random search over pixel blocks (Croce et al. 2022) for few-pixel attacks;
- ``two_stage``: a coarse stage, then DE seeded with its best points, or a local (1+1)-ES;
- ``cmaes``: CMA-ES through the ``cma`` package (extra ``search``).

Build one with ``SEARCHES.create(name, bounds=..., seed=..., **options)``; an attack takes
``search=NAME`` and ``search_options="KEY=VALUE,..."``.
"""

from __future__ import annotations

from dermadv.attacks.searches.base import Search
from dermadv.attacks.searches.cmaes import CMAESSearch
from dermadv.attacks.searches.grid import GridSearch
from dermadv.attacks.searches.random import RandomSearch
from dermadv.attacks.searches.sparse_rs import SparseRSSearch
from dermadv.attacks.searches.two_stage import TwoStageSearch

__all__ = ["CMAESSearch", "GridSearch", "RandomSearch", "Search", "SparseRSSearch", "TwoStageSearch"]
