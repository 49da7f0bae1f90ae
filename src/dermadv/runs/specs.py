"""Frozen, picklable descriptions of what work needs: a model, an attack, a perturbation.

Work travels to workers as these specs, never as live objects: a worker rebuilds the object from
its spec (a Ray worker loads the model once per process). Each spec has one ``load()``/``build()``
that turns it into the object the work uses.

- :class:`ModelSpec` -- the arguments of :func:`dermadv.models.registry.load_model`;
- :class:`AttackSpec` -- an attack name and its own options (``dermadv.attacks.make_attack``);
- :class:`PerturbationSpec` -- one perturbation spec string (``dermadv.perturb.points``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dermadv.attacks.base import Attack
    from dermadv.models.base import Classifier
    from dermadv.perturb.points import SweepPoint


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Arguments of :func:`dermadv.models.registry.load_model`, sent to workers instead of the model."""

    spec: str
    melanoma_classes: Sequence[str] | None = None  # stored as a tuple
    benign_classes: Sequence[str] | None = None  # stored as a tuple
    device: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("melanoma_classes", "benign_classes"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "options", dict(self.options))

    def absolute(self) -> ModelSpec:
        """The same spec with a local model file (or ``file.py:function``) as an absolute path."""
        spec = self.spec
        path = Path(spec).expanduser()
        if path.exists():
            spec = str(path.resolve())
        elif ":" in spec:
            module, _, func = spec.rpartition(":")
            if module.endswith(".py") and Path(module).expanduser().is_file():
                spec = f"{Path(module).expanduser().resolve()}:{func}"
        return dataclasses.replace(self, spec=spec)

    def load(self) -> Classifier:
        """Load the Classifier (in a worker)."""
        from dermadv.models.registry import load_model

        return load_model(
            self.spec,
            melanoma_classes=self.melanoma_classes,
            benign_classes=self.benign_classes,
            device=self.device,
            **dict(self.options),
        )

    def file(self) -> Path | None:
        """The model file, when the spec names one on this machine."""
        path = Path(self.spec)
        return path if path.is_file() else None


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """An attack by name with its own options: ``build()`` is ``make_attack(name, **options)``."""

    name: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", dict(self.options))

    def build(self) -> Attack:
        """The :class:`dermadv.attacks.Attack` (an unknown option is an error naming the valid ones)."""
        from dermadv.attacks import make_attack

        return make_attack(self.name, **dict(self.options))


@dataclasses.dataclass(frozen=True)
class PerturbationSpec:
    """One perturbation, as its spec string (``rot:45``, ``shift:r:+10``, ``decoder:other``...)."""

    spec: str

    def build(self) -> SweepPoint:
        """The :class:`dermadv.perturb.points.SweepPoint` (SpecError for a bad spec)."""
        from dermadv.perturb.points import parse_one

        return parse_one(self.spec)
