"""Attacks = perturbation + search + criterion, behind one factory: ``make_attack(name, **options)``.

Built-in attacks (``ATTACK_NAMES``): ``fgsm``, ``pgd`` (white-box gradient attacks), ``pixel``,
``color``, ``rotation`` (black-box, batched differential evolution). Options are the attack class's
keyword arguments; strings (from a command line) are converted to the type of the default, e.g.
``make_attack("fgsm", eps="1,2,4")`` or ``make_attack("color", delta="0.2", maxiter="10")``.

Example::

    model = load_model("run/model.pt")
    image = model.prepare(model.load_image("ISIC_0000013.jpg"))[0]   # what the model sees
    result = make_attack("color").run(model, image, image_id="ISIC_0000013", seed=0)
    result.outcome, result.params["c"], result.queries, result.adversarial  # uint8 at input size

Success (the study's): a melanoma the model called melanoma (P(mel group) > P(benign group)) is
now called benign (P(benign group) > P(mel group)); see :mod:`dermadv.attacks.criteria`.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from dermadv.attacks.base import Attack, AttackConfigError, AttackResult
from dermadv.attacks.color import ColorAttack
from dermadv.attacks.criteria import DIRECTIONS, Misclassification
from dermadv.attacks.de import DEOptions, DESearch, differential_evolution
from dermadv.attacks.evolutionary import EvolutionaryAttack
from dermadv.attacks.fgsm import FGSM
from dermadv.attacks.pgd import PGD
from dermadv.attacks.pixel import PixelAttack
from dermadv.attacks.rotation import RotationAttack

#: name -> "module:Class"; extend with :func:`register_attack`.
_REGISTRY: dict[str, str] = {
    "fgsm": "dermadv.attacks.fgsm:FGSM",
    "pgd": "dermadv.attacks.pgd:PGD",
    "pixel": "dermadv.attacks.pixel:PixelAttack",
    "color": "dermadv.attacks.color:ColorAttack",
    "rotation": "dermadv.attacks.rotation:RotationAttack",
}

#: The built-in attacks, in the study's order of presentation.
ATTACK_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def register_attack(name: str, target: str) -> None:
    """Make ``make_attack(name)`` build ``target`` ("module:Class", an :class:`Attack` subclass)."""
    _REGISTRY[name] = target


def available_attacks() -> tuple[str, ...]:
    """All registered attack names (built-in first)."""
    return tuple(_REGISTRY)


def attack_class(name: str) -> type[Attack]:
    """The Attack subclass registered under ``name``."""
    if name not in _REGISTRY:
        raise AttackConfigError(f"unknown attack {name!r}; choose one of {', '.join(_REGISTRY)}")
    module, _, attr = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def attack_options(name: str) -> dict[str, Any]:
    """Option names of an attack with their defaults (including the shared search options)."""
    out: dict[str, Any] = {}
    for klass in attack_class(name).__mro__:  # follow **options up the chain of constructors
        if klass is object or "__init__" not in vars(klass):
            continue
        params = list(inspect.signature(klass.__init__).parameters.values())[1:]
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in out:
                if p.default is not p.empty:
                    out[p.name] = p.default
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return out


def _coerce(name: str, key: str, value: Any, default: Any) -> Any:
    """Convert a command-line string to the type of the option's default."""
    if not isinstance(value, str) or isinstance(default, str):
        return value
    text = value.strip()
    try:
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, (tuple, list)):
            return tuple(float(v) for v in text.split(",") if v.strip())
        if isinstance(default, int) or (default is None and text.isdigit()):
            return int(text)
        if "," in text:
            return tuple(float(v) for v in text.split(","))
        return float(text)
    except ValueError:
        raise AttackConfigError(
            f"attack {name!r}: option {key}={value!r} is not a valid {type(default).__name__}"
        ) from None


def make_attack(name: str, **options: Any) -> Attack:
    """Build an attack by name; unknown options are an error naming the valid ones."""
    cls = attack_class(name)
    valid = attack_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise AttackConfigError(
            f"attack {name!r}: unknown option(s) {unknown}; valid options: {', '.join(sorted(valid))}"
        )
    kwargs = {k: _coerce(name, k, v, valid[k]) for k, v in options.items()}
    try:
        return cls(**kwargs)
    except AttackConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise AttackConfigError(f"attack {name!r}: {exc}") from None


__all__ = [
    "ATTACK_NAMES",
    "DIRECTIONS",
    "FGSM",
    "PGD",
    "Attack",
    "AttackConfigError",
    "AttackResult",
    "ColorAttack",
    "DEOptions",
    "DESearch",
    "EvolutionaryAttack",
    "Misclassification",
    "PixelAttack",
    "RotationAttack",
    "attack_class",
    "attack_options",
    "available_attacks",
    "differential_evolution",
    "make_attack",
    "register_attack",
]
