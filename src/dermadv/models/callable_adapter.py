"""Any Python callable as a black-box classifier: ``--model package.module:function``.

The function receives a uint8 N x H x W x 3 RGB batch at ``input_size`` and returns N x K
probabilities over ``classes``. ``classes`` and ``input_size`` come from options or from attributes
of the same name on the function; if the function accepts a ``metadata`` keyword it also gets the
per-image metadata. ``path/to/file.py:function`` works too.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.errors import ModelError
from dermadv.models.base import Classifier, Metadata
from dermadv.models.formats import option_values, register_format
from dermadv.models.registry import as_classes, as_size

DEFAULT_INPUT_SIZE = (224, 224)


def resolve_callable(spec: str, what: str = "model") -> Callable[..., Any]:
    """Import ``module:attr`` (``attr`` may be dotted; ``module`` may be a ``.py`` path)."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ModelError(f"{what} {spec!r}: expected 'package.module:function'")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser().resolve()
            if not path.is_file():
                raise ModelError(f"{what} {spec!r}: file {path} not found")
            mod_id = f"dermadv_user_{path.stem}_{abs(hash(str(path)))}"
            loader_spec = importlib.util.spec_from_file_location(mod_id, path)
            assert loader_spec is not None and loader_spec.loader is not None
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_id] = module
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ModelError:
        raise
    except ImportError as exc:
        raise ModelError(f"{what} {spec!r}: cannot import module {module_name!r} ({exc})") from exc
    except Exception as exc:  # the user's module raised while importing
        raise ModelError(
            f"{what} {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"{what} {spec!r}: {attr!r} is not callable")
    return obj


class CallableClassifier(Classifier):
    """Wraps ``f(images uint8 N x H x W x 3) -> N x K probabilities`` (black-box)."""

    white_box = False

    def __init__(
        self,
        function: Callable[..., Any],
        classes: tuple[str, ...],
        input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
        *,
        name: str = "callable",
        decoder: str = "pil",
        resize_method: str = "bilinear",
        batch_size: int = 32,
        spec: str | None = None,
    ) -> None:
        super().__init__()
        self.function = function
        self.classes = tuple(classes)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.name = name
        self.decoder = decoder
        self.resize_method = resize_method
        self.batch_size = batch_size
        self.spec = spec
        params: Mapping[str, inspect.Parameter]
        try:
            params = inspect.signature(function).parameters
        except (TypeError, ValueError):  # builtins without a signature
            params = {}
        self._takes_metadata = "metadata" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
        self.set_groups()

    @classmethod
    def from_spec(
        cls,
        spec: str,
        classes: str | list[str] | None = None,
        input_size: int | str | tuple[int, int] | None = None,
        decoder: str | None = None,
        resize: str | None = None,
        batch_size: int | str | None = None,
        device: str | None = None,
        **unknown: Any,
    ) -> CallableClassifier:
        """Import ``module:function``; options override the function's own attributes."""
        if unknown:
            raise ModelError(
                f"{spec}: unknown callable-model option(s) {sorted(unknown)}; known: classes, "
                "input_size, decoder, resize, batch_size"
            )
        function = resolve_callable(spec)
        names = as_classes(classes if classes is not None else getattr(function, "classes", None))
        if names is None:
            raise ModelError(
                f"{spec}: the class names are unknown; pass them in output order, e.g. "
                "--model-option classes=mel,nv (or give the function a `classes` attribute)"
            )
        size = as_size(input_size if input_size is not None else getattr(function, "input_size", None))
        return cls(
            function,
            names,
            size or DEFAULT_INPUT_SIZE,
            name=spec,
            decoder=decoder or str(getattr(function, "decoder", "pil")),
            resize_method=resize or "bilinear",
            batch_size=int(batch_size) if batch_size else int(getattr(function, "batch_size", 32)),
            spec=spec,
        )

    def _predict(self, images: np.ndarray, metadata: list[Metadata] | None) -> np.ndarray:
        try:
            if self._takes_metadata:
                out = self.function(images, metadata=metadata)
            else:
                out = self.function(images)
        except Exception as exc:  # the user's code failed: say where, keep the cause chained
            raise ModelError(f"{self.name}: the model function raised {type(exc).__name__}: {exc}") from exc
        try:
            return np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{self.name}: returned {type(out).__name__}, not an N x K array") from exc

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["callable"] = self.spec
        return d


def claims_callable(spec: str) -> bool:
    """``package.module:function`` or ``path/to/file.py:function`` (files were tried first)."""
    module, sep, attr = spec.rpartition(":")
    return bool(sep and module and attr)


@register_format(
    "callable",
    claims=claims_callable,
    spec_form="module:function",
    description="any Python callable taking uint8 N x H x W x 3 and returning N x K probabilities",
    label="callable",
    white_box=False,
)
@dataclass(frozen=True)
class CallableFormat:
    """Options override the function's own ``classes``/``input_size``/... attributes."""

    classes: str | None = None
    input_size: int | str | None = None
    decoder: str | None = None
    resize: str | None = None
    batch_size: int | str | None = None

    def load(self, source: str | Path, device: str | None = None) -> CallableClassifier:
        return CallableClassifier.from_spec(str(source), device=device, **option_values(self))
