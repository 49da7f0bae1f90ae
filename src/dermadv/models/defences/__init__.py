"""Defences: a classifier that protects another one.

A defence is a :class:`dermadv.models.base.Classifier` wrapping a Classifier: it takes the model
to protect as its first argument and every setting as an explicit keyword argument with a default
(``DEFENCES.options(name)`` lists them; ``**kwargs`` is refused), and behaves as a Classifier itself
(same ``classes`` and class groups, uint8 RGB images in, probabilities out), so evaluation,
perturbation sweeps and attacks run on a defended model exactly as on a plain one::

    defended = DEFENCES.create("color-constancy", model=load_model("sklesion"), p="6")
    defended = apply_defences(load_model("sklesion"), ["color-constancy:p=6", "tta:rotations=8"])

Built-ins (:class:`dermadv.models.defences.base.Defence` subclasses, one module each):
``color-constancy`` (Shades of Gray / Gray World / max-RGB / general Gray World,
:mod:`~dermadv.models.defences.colour`), ``tta`` (test-time augmentation over D4, a rotation orbit
and/or a colour-gain orbit, :mod:`~dermadv.models.defences.tta`) and ``lowpass`` (a Gaussian
anti-aliasing filter, :mod:`~dermadv.models.defences.lowpass`).

A defence is white-box only if gradients flow through it (``torch_forward``); none of the built-ins
is, so gradient attacks refuse a defended model. Its ``describe()`` records the chain of defences
and their settings beside the wrapped model's description, and how many forwards of the undefended
model one query costs. Other packages add defences through the ``dermadv.defences`` entry point.
"""

from __future__ import annotations

from dermadv.registry import Registry

#: Registered defences (built-ins imported on the first lookup).
DEFENCES: Registry = Registry(
    "defence",
    builtins=(
        "dermadv.models.defences.colour",
        "dermadv.models.defences.tta",
        "dermadv.models.defences.lowpass",
    ),
)
