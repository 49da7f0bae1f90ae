"""TorchScript models (``torch.jit.save`` archives: ``*.pt``, ``*.pth``, ``*.ts``) as white-box classifiers.

The module takes normalised N x 3 x H x W floats (``mean``/``std`` in 0..1 units, torchvision
convention) and returns logits or probabilities. Its preprocessing comes from a ``dermadv.json``
extra file when the archive carries one (:func:`dermadv.models.export.export_torchscript` writes it),
otherwise from options; the class list is then required.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermadv.errors import ModelError
from dermadv.models.accel import inference_settings
from dermadv.models.base import TorchModuleClassifier
from dermadv.models.checkpoint import IMAGENET_MEAN, IMAGENET_STD
from dermadv.models.formats import option_values, register_format
from dermadv.models.registry import as_floats, as_size, classes_or_meta

#: Name of the JSON extra file holding classes and preprocessing inside a TorchScript archive.
EXTRA_FILE = "dermadv.json"


class TorchScriptClassifier(TorchModuleClassifier):
    """A scripted or traced torch module behind the Classifier interface (white-box)."""

    #: Where the preprocessing came from: the archive's ``dermadv.json`` or the load options.
    metadata_source: str = "options"

    def __init__(self, module: Any, classes: Any, input_size: Any, *, source: str = "", **kwargs: Any):
        super().__init__(module, classes, input_size, **kwargs)
        self.source = source

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        device: str | None = None,
        classes: str | list[str] | None = None,
        input_size: int | str | tuple[int, int] | None = None,
        mean: str | list[float] | None = None,
        std: str | list[float] | None = None,
        output: str | None = None,
        decoder: str | None = None,
        batch_size: int | str | None = None,
        precision: str | None = None,
        compile: str | None = None,
        channels_last: str | None = None,
        cuda_graphs: str | None = None,
        **unknown: Any,
    ) -> TorchScriptClassifier:
        """Load ``path`` with ``torch.jit.load``; options override the archive's ``dermadv.json``."""
        import torch

        path = Path(path)
        if unknown:
            raise ModelError(
                f"{path}: unknown TorchScript option(s) {sorted(unknown)}; known: classes, "
                "input_size, mean, std, output, decoder, batch_size, precision, compile, channels_last, "
                "cuda_graphs"
            )
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        extra = {EXTRA_FILE: ""}
        try:
            with warnings.catch_warnings():  # torch.jit is deprecated upstream; the files still exist
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except (RuntimeError, ValueError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path}: not a loadable TorchScript archive ({first[:200]})") from exc
        meta: dict[str, Any] = {}
        raw = extra.get(EXTRA_FILE) or b""
        if raw:
            try:
                meta = json.loads(raw)
            except ValueError as exc:
                raise ModelError(f"{path}: the {EXTRA_FILE} extra file is not valid JSON ({exc})") from exc
        names = classes_or_meta(classes, meta, f"{path}: TorchScript file ({EXTRA_FILE} extra file missing)")
        size = as_size(input_size if input_size is not None else meta.get("input_size"))
        if size is None:
            raise ModelError(
                f"{path}: TorchScript file has no {EXTRA_FILE} metadata, so its input size is unknown; "
                "pass it, e.g. --model-option input_size=224"
            )
        out_kind = output or meta.get("output", "logits")
        if out_kind not in ("logits", "probs"):
            raise ModelError(f"{path}: output must be 'logits' or 'probs', got {out_kind!r}")
        model = cls(
            module,
            names,
            size,
            mean=as_floats(mean if mean is not None else meta.get("mean"), 3, "mean") or IMAGENET_MEAN,
            std=as_floats(std if std is not None else meta.get("std"), 3, "std") or IMAGENET_STD,
            name=meta.get("name") or path.stem,
            decoder=decoder or meta.get("decoder", "pil"),
            output=out_kind,
            device=device,
            batch_size=batch_size if batch_size == "auto" else int(batch_size or meta.get("batch_size", 32)),
            source=str(path),
            inference=inference_settings(
                {
                    "precision": precision,
                    "compile": compile,
                    "channels_last": channels_last,
                    "cuda_graphs": cuda_graphs,
                },
                str(path),
            ),
        )
        model.resize_method = meta.get("resize", model.resize_method)
        model.metadata_source = "dermadv.json" if meta else "options"
        if meta.get("melanoma_classes") or meta.get("benign_classes"):
            model.set_groups(meta.get("melanoma_classes") or None, meta.get("benign_classes") or None)
        return model

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"file": self.source, "preprocessing_from": getattr(self, "metadata_source", "options")})
        return d


def is_torchscript(path: Path) -> bool:
    """TorchScript archives hold compiled code (``*/code/``); torch.save checkpoints do not."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in n or n.startswith("code/") for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def sniff_torchscript(path: Path) -> bool:
    """Every ``.ts`` file, and ``.pt``/``.pth`` archives holding compiled code."""
    return path.suffix.lower() == ".ts" or is_torchscript(path)


@register_format(
    "torchscript",
    suffixes=(".pt", ".pth", ".ts"),
    sniff=sniff_torchscript,
    description="TorchScript module (torch.jit.save); defaults from a dermadv.json extra file when present",
    label="TorchScript",
    white_box=True,
)
@dataclass(frozen=True)
class TorchScriptFormat:
    """Options override the archive's ``dermadv.json``; without it ``classes`` is required."""

    classes: str | None = None
    input_size: int | str | None = None
    mean: str | None = None
    std: str | None = None
    output: str | None = None
    decoder: str | None = None
    batch_size: int | str | None = None
    precision: str | None = None
    compile: str | None = None
    channels_last: str | None = None
    cuda_graphs: str | None = None

    def load(self, source: Path, device: str | None = None) -> TorchScriptClassifier:
        return TorchScriptClassifier.from_file(source, device=device, **option_values(self))
