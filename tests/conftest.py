"""Fixtures shared by both layers; none of them reads data.

``tests/unit`` runs anywhere (synthetic arrays, ``dermadv.synthetic``, tiny models); ``tests/integration``
reads the real development images (its own conftest.py holds the data fixtures). The helper modules
``tests/*_support.py`` are importable from both layers: this directory is put on ``sys.path`` here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # the *_support modules, and "models_support:fn" model specs


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module: steadier and faster for tiny models on a shared 2-core CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sklesion() -> Any:
    """The sklesion Keras model (a named model; it ships with its package, no data needed)."""
    import torch

    from dermadv.models.registry import load_model

    torch.set_num_threads(1)  # on a shared 2-core machine one thread is many times faster than two
    return load_model("sklesion")


@pytest.fixture
def registries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What a test registers (and the example plugin's modules it imports) is gone afterwards."""
    from dermadv.cli import COMMANDS
    from dermadv.models.formats import MODEL_FORMATS
    from dermadv.models.registry import NAMED_MODELS
    from dermadv.report.html import REPORT_SECTIONS
    from plugin_support import PLUGIN_DIR

    for reg in (MODEL_FORMATS, REPORT_SECTIONS, COMMANDS, NAMED_MODELS):
        reg.load_plugins()
        monkeypatch.setattr(reg, "_entries", dict(reg._entries))
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    yield
    for name in [m for m in sys.modules if m.split(".")[0] == "dermadv_example_plugin"]:
        del sys.modules[name]
