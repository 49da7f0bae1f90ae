"""The attack and search registries, and the attack factory functions over them.

Every attack is registered where its class is defined, through the one mechanism of
:mod:`dermadv.registry`::

    @ATTACKS.register("color", builtin=True, study=4)
    class ColorAttack(EvolutionaryAttack):
        def __init__(self, delta: float = 0.1, *, popsize: int = 20, ...) -> None: ...

Metadata of the built-ins: ``builtin=True``; ``study=k`` for the study's five attacks (their position
in the study's order of presentation: fgsm, pgd, pixel, color, rotation), which are the default set
of a campaign; ``white_box_only=True`` for the gradient attacks. Other packages add attacks through
the ``dermadv.attacks`` entry-point group (or :func:`register_attack`); a plugin attack runs when it
is named. The registered name is the attack's name: results and run.json are keyed by it.

Searches (``SEARCHES``) are registered the same way: ``SEARCHES.create("de", bounds=..., popsize=5)``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from dermadv.attacks.base import Attack, AttackConfigError
from dermadv.registry import Registry, RegistryError

#: Attacks by name (the entry-point group ``dermadv.attacks``).
ATTACKS: Registry[type[Attack]] = Registry("attack")
#: Search strategies by name (the entry-point group ``dermadv.searches``).
SEARCHES: Registry[Any] = Registry("search")


def study_attacks() -> tuple[str, ...]:
    """The study's five attacks, in the study's order: what a campaign runs when none is named."""
    entries = [e for e in ATTACKS.entries() if e.meta.get("study") is not None]
    return tuple(e.name for e in sorted(entries, key=lambda e: e.meta["study"]))


def available_attacks() -> tuple[str, ...]:
    """All registered attack names: the study's five first, then the other built-ins, then plugins."""
    first = study_attacks()
    builtin = [n for n in ATTACKS.names(builtin=True) if n not in first]
    return (*first, *builtin, *(n for n in ATTACKS.names() if n not in first and n not in builtin))


def _config_error(exc: RegistryError) -> AttackConfigError:
    return exc if isinstance(exc, AttackConfigError) else AttackConfigError(str(exc))


def attack_class(name: str) -> type[Attack]:
    """The Attack subclass registered under ``name`` (AttackConfigError naming the valid ones)."""
    if name not in ATTACKS:
        raise AttackConfigError(f"unknown attack {name!r}; choose one of: {', '.join(available_attacks())}")
    return ATTACKS.get(name)


def attack_options(name: str) -> dict[str, Any]:
    """Every option of an attack with its default (``inspect.Parameter.empty`` if it has none)."""
    attack_class(name)
    return ATTACKS.options(name)


def make_attack(name: str, **options: Any) -> Attack:
    """Build an attack by name. Strings (from a command line) become each default's type; unknown
    options are an AttackConfigError naming the valid ones."""
    attack_class(name)
    try:
        attack = ATTACKS.create(name, **options)
    except RegistryError as exc:
        raise _config_error(exc) from None
    if not isinstance(attack, Attack):  # a plugin's factory (not a class) may return anything
        raise AttackConfigError(f"attack {name!r} built a {type(attack).__name__}, not an Attack")
    if getattr(attack, "name", None) != name:  # results and run.json are keyed by the registered name
        attack.name = name
    return attack


def register_attack(name: str, target: str | type[Attack]) -> None:
    """Register an attack class (or ``"module:Class"``) under ``name``; same as ``ATTACKS.add``.

    Prefer ``@ATTACKS.register(name)`` on the class, or an entry point in the ``dermadv.attacks`` group.
    """
    obj: Any = target
    if isinstance(target, str):
        module, sep, attr = target.partition(":")
        if not sep or not module or not attr:
            raise AttackConfigError(f"register_attack({name!r}): expected 'module:Class', got {target!r}")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise AttackConfigError(f"register_attack({name!r}): cannot import {target!r}: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, Attack)):
        raise AttackConfigError(f"register_attack({name!r}): {target!r} is not an Attack subclass")
    try:
        ATTACKS.add(name, obj)
    except RegistryError as exc:
        raise _config_error(exc) from None


def parse_attack_options(pairs: Sequence[str] | None, attacks: Sequence[str] | None = None) -> dict[str, str]:
    """``["color.delta=0.05", "pgd.steps=20"]`` (repeatable ``--attack-option NAME.KEY=VALUE``) ->
    ``{"color.delta": "0.05", "pgd.steps": "20"}``, the per-attack keys that
    ``campaign.runner.build_attacks`` accepts.

    Each NAME must be a registered attack (and one of ``attacks``, the campaign's, when given) and
    each KEY one of its options; otherwise an AttackConfigError saying which.
    """
    out: dict[str, str] = {}
    for pair in pairs or ():
        target, sep, value = str(pair).partition("=")
        attack, dot, key = target.strip().partition(".")
        key = key.strip().replace("-", "_")
        if not sep or not dot or not attack or not key:
            raise AttackConfigError(
                f"--attack-option {pair!r}: expected NAME.KEY=VALUE, e.g. color.delta=0.05 or pgd.steps=20"
            )
        check_attack_option(attack, key, attacks)
        out[f"{attack}.{key}"] = value.strip()
    return out


def check_attack_option(attack: str, key: str, attacks: Sequence[str] | None = None) -> None:
    """AttackConfigError unless ``attack`` is registered (and in ``attacks``) and takes ``key``."""
    valid = attack_options(attack)
    if attacks is not None and attack not in attacks:
        raise AttackConfigError(
            f"--attack-option {attack}.{key}: attack {attack!r} is not in this campaign "
            f"(attacks: {', '.join(attacks) or 'none'})"
        )
    if key not in valid:
        raise AttackConfigError(
            f"--attack-option {attack}.{key}: attack {attack!r} has no option {key!r}; "
            f"valid options: {', '.join(sorted(valid))}"
        )


def split_attack_options(
    options: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Campaign options -> (shared options, {attack: its own options}); ``"color.delta"`` is the
    option ``delta`` of the attack ``color``. None values mean "the default" and are dropped."""
    shared: dict[str, Any] = {}
    own: dict[str, dict[str, Any]] = {}
    for key, value in options.items():
        if value is None:
            continue
        attack, dot, opt = str(key).partition(".")
        if dot:
            own.setdefault(attack, {})[opt] = value
        else:
            shared[key] = value
    return shared, own


_PAIR_START = re.compile(r",(?=\s*[A-Za-z_]\w*\s*=)")


def parse_pairs(text: str | Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """``"max_shift=20,mutation=0.5,1"`` -> ``{"max_shift": "20", "mutation": "0.5,1"}`` (a comma
    starts a new pair only before ``KEY=``); a mapping is copied; None or "" gives {}."""
    if text is None:
        return {}
    if isinstance(text, Mapping):
        return {str(k): v for k, v in text.items()}
    out: dict[str, Any] = {}
    for item in _PAIR_START.split(str(text).strip()):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AttackConfigError(f"{what}: expected KEY=VALUE[,KEY=VALUE...], got {text!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out
