"""The defence wrapper every defence derives from, and chains of defences from ``NAME:KEY=VALUE`` specs.

A :class:`Defence` is a :class:`~dermadv.models.base.Classifier` around another Classifier (the
*wrapped* model, possibly itself a defence). It keeps the wrapped model's interface -- classes and
class groups, ``input_size``, ``decoder``, ``resize_method``, ``batch_size``, ``needs_metadata``
and metadata passing -- and is black-box (``white_box = False``): none of the defences here passes
gradients. Queries are counted in forwards of the wrapped model: :attr:`Defence.forwards` counts the
images this wrapper sent to the model it wraps, :attr:`Defence.model_forwards` those that reached
the innermost (undefended) model, and :attr:`Defence.cost` is how many underlying forwards one
query costs (a test-time augmentation over 8 transforms costs 8).

Chains: ``apply_defences(model, ["color-constancy:p=6", "tta:rotations=8"])`` -- the image passes
through the defences in the order given (colour constancy first, then the 8 rotations, each of
which the model scores), i.e. the first spec is the outermost wrapper.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dermadv.errors import ModelError
from dermadv.models.base import Classifier, Metadata
from dermadv.models.defences import DEFENCES
from dermadv.registry import RegistryError

#: Attributes of the wrapped model a defence passes through (metadata encoders, torch device).
PASSED_THROUGH: tuple[str, ...] = ("metadata_encoder", "device", "notes")


class Defence(Classifier):
    """A classifier protecting ``model``; subclasses implement :meth:`_defend` and :meth:`settings`."""

    #: registered name (set by subclasses)
    defence: str = "defence"
    white_box = False

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        if not isinstance(model, Classifier):
            raise ModelError(
                f"defence {self.defence}: expected a Classifier to wrap, got {type(model).__name__}"
            )
        self.model = model
        self.classes = tuple(model.classes)
        self.input_size = tuple(model.input_size)  # type: ignore[assignment]
        self.decoder = model.decoder
        self.resize_method = model.resize_method
        self.batch_size = int(model.batch_size)
        self.needs_metadata = bool(model.needs_metadata)
        self._melanoma, self._benign = model.melanoma, model.benign
        self.forwards = 0

    def __getattr__(self, name: str) -> Any:
        if name in PASSED_THROUGH and "model" in self.__dict__:
            return getattr(self.__dict__["model"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ----- naming and cost ---------------------------------------------------------------------------
    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.base_model.name} [{chain_label(self)}]"

    def spec(self) -> str:
        """``NAME:KEY=VALUE,...`` of this defence alone (what ``--defence`` takes), settings that differ
        from their defaults only."""
        defaults = DEFENCES.options(self.defence) if self.defence in DEFENCES else {}
        changed = {
            k: v for k, v in self.settings().items() if k not in defaults or _same(defaults[k], v) is False
        }
        opts = ",".join(f"{k}={_text(v)}" for k, v in changed.items())
        return f"{self.defence}:{opts}" if opts else self.defence

    def settings(self) -> dict[str, Any]:
        """This defence's settings as plain JSON values (recorded by describe())."""
        return {}

    @property
    def own_cost(self) -> int:
        """Forwards of the wrapped model per image this defence scores."""
        return 1

    @property
    def cost(self) -> int:
        """Forwards of the innermost (undefended) model per query of this chain."""
        inner = self.model.cost if isinstance(self.model, Defence) else 1
        return self.own_cost * inner

    @property
    def model_forwards(self) -> int:
        """Images the innermost (undefended) model has scored through this chain."""
        return self.model.model_forwards if isinstance(self.model, Defence) else self.forwards

    def reset_forwards(self) -> None:
        """Set every forward counter of the chain to 0."""
        self.forwards = 0
        if isinstance(self.model, Defence):
            self.model.reset_forwards()

    @property
    def base_model(self) -> Classifier:
        """The undefended model at the bottom of the chain."""
        return self.model.base_model if isinstance(self.model, Defence) else self.model

    def chain(self) -> list[Defence]:
        """The defences in the order an image passes through them (this one first)."""
        return [self, *(self.model.chain() if isinstance(self.model, Defence) else [])]

    # ----- groups ------------------------------------------------------------------------------------
    def set_groups(self, melanoma: Any = None, benign: Any = None) -> Classifier:
        self.model.set_groups(melanoma, benign)
        self._melanoma, self._benign = self.model.melanoma, self.model.benign
        return self

    # ----- images ------------------------------------------------------------------------------------
    def load_image(self, path: str) -> NDArray[np.uint8]:
        return self.model.load_image(path)

    def prepare(self, images: NDArray[np.uint8] | Sequence[NDArray[np.uint8]]) -> NDArray[np.uint8]:
        """The wrapped model's own resizing (a defence sees exactly the batch the model would)."""
        return self.model.prepare(images)

    # ----- inference ---------------------------------------------------------------------------------
    def score(self, images: NDArray[np.uint8], metadata: Sequence[Metadata] | None) -> NDArray[np.float64]:
        """Probabilities of the wrapped model for a uint8 batch at ``input_size`` (counted)."""
        self.forwards += len(images)
        return self.model.predict_proba(images, metadata, batch_size=self.model.batch_size)

    def _predict(self, images: NDArray[np.uint8], metadata: list[Metadata] | None) -> NDArray[np.float64]:
        return self._defend(np.ascontiguousarray(images), metadata)

    def _defend(self, images: NDArray[np.uint8], metadata: list[Metadata] | None) -> NDArray[np.float64]:
        raise NotImplementedError

    # ----- description -------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        inner = self.base_model.describe()
        d = dict(inner)
        d.update(
            name=self.name,
            adapter=type(self).__name__,
            white_box=self.white_box,
            defences=[{"defence": x.defence, **x.settings()} for x in self.chain()],
            defence_spec=[x.spec() for x in self.chain()],
            query_cost=self.cost,
            undefended=inner,
        )
        return d


def _same(default: Any, value: Any) -> bool:
    if isinstance(default, (tuple, list)) or isinstance(value, (tuple, list)):
        return list(default or []) == list(value or [])
    if isinstance(default, (int, float)) and isinstance(value, (int, float)):
        return float(default) == float(value)
    return bool(default == value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ";".join(_text(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


_PAIR_START = re.compile(r",(?=\s*[A-Za-z_]\w*\s*=)")


def parse_defence(spec: str) -> tuple[str, dict[str, str]]:
    """``"tta:rotations=8,gains=0.9;1.1"`` -> ``("tta", {"rotations": "8", "gains": "0.9,1.1"})``.

    A comma starts a new option only before ``KEY=`` (so ``gains=0.9,1.0,1.1`` is one option); ``;``
    may separate list items too. A ModelError names the spec when it is malformed.
    """
    text = str(spec).strip()
    name, _, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise ModelError(f"--defence {spec!r}: expected NAME or NAME:KEY=VALUE[,KEY=VALUE...]")
    options: dict[str, str] = {}
    for item in _PAIR_START.split(rest.strip()) if rest.strip() else []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ModelError(f"--defence {spec!r}: option {item!r} is not KEY=VALUE")
        options[key.strip().replace("-", "_")] = value.strip().replace(";", ",")
    return name, options


def make_defence(model: Classifier, spec: str) -> Defence:
    """Wrap ``model`` in the defence of one spec (ModelError naming the spec and the valid choices)."""
    name, options = parse_defence(spec)
    if name not in DEFENCES:
        raise ModelError(
            f"--defence {spec!r}: unknown defence {name!r}; choose one of: {', '.join(DEFENCES.names())}"
        )
    try:
        out = DEFENCES.create(name, model=model, **options)
    except RegistryError as exc:
        raise ModelError(f"--defence {spec!r}: {exc}") from None
    if not isinstance(out, Defence):
        raise ModelError(f"--defence {spec!r}: {name!r} built a {type(out).__name__}, not a Defence")
    return out


def apply_defences(model: Classifier, specs: Sequence[str] | None) -> Classifier:
    """``model`` behind the chain ``specs`` (first spec = first thing the image meets); none: ``model``."""
    items = [s for s in (specs or []) if str(s).strip() and str(s).strip().lower() != "none"]
    for spec in reversed(items):
        model = make_defence(model, spec)
    return model


def chain_label(model: Classifier) -> str:
    """``"none"`` for an undefended model, else the chain as ``spec + spec``."""
    return " + ".join(d.spec() for d in model.chain()) if isinstance(model, Defence) else "none"


def underlying_forwards(model: Classifier) -> int | None:
    """Forwards of the undefended model counted so far (None for an undefended model: not counted)."""
    return model.model_forwards if isinstance(model, Defence) else None


def query_cost(model: Classifier) -> int:
    """Underlying forwards per query: 1 for an undefended model."""
    return model.cost if isinstance(model, Defence) else 1
