"""Errors with messages meant for users: every one names the file or value and what was wrong."""

from __future__ import annotations


class DermadvError(Exception):
    """Base class: the CLI prints the message (no traceback) and exits with status 2."""


class DataError(DermadvError):
    """A dataset, image or split file is missing, unreadable or inconsistent."""


class ModelError(DermadvError):
    """A model file or specification cannot be loaded or used."""


class ModelOutputError(ModelError):
    """A model returned outputs that are not valid probabilities over its declared classes."""


class MetadataError(ModelError, DataError):
    """One image's clinical metadata (age, sex, site) is outside what a model accepts: a data problem of
    that image (a campaign stores an error row for it), raised by the model's metadata encoder."""


class NotWhiteBoxError(ModelError):
    """A gradient attack was asked of a model with no differentiable torch forward."""


class MissingExtraError(DermadvError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package, self.extra = package, extra
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed. "
            f"Install it with: pip install 'dermadv[{extra}]'"
        )


def require(module: str, extra: str, purpose: str):  # noqa: ANN201 - returns a module
    """Import an optional dependency or raise MissingExtraError naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(module.split(".")[0], extra, purpose) from exc
