"""Defences: a classifier that protects another one (issue 12 adds the first ones).

A defence is a :class:`dermadv.models.base.Classifier` wrapping a Classifier: it takes the model
to protect as its first argument and every setting as an explicit keyword argument with a default
(``DEFENCES.options(name)`` lists them; ``**kwargs`` is refused), and behaves as a Classifier itself
(same ``classes`` and class groups, uint8 RGB images in, probabilities out), so evaluation,
perturbation sweeps and attacks run on a defended model exactly as on a plain one::

    @DEFENCES.register("jpeg")
    class JpegDefence(Classifier):
        def __init__(self, model: Classifier, *, quality: int = 75) -> None: ...

    defended = DEFENCES.create("jpeg", model=load_model("sklesion"), quality="60")

A defence is white-box only if gradients flow through it (``torch_forward``); one that is not
differentiable says so with ``white_box = False`` and gradient attacks refuse it. Its ``describe()``
records the defence and its settings beside the wrapped model's description. Other packages add
defences through the ``dermadv.defences`` entry point.
"""

from __future__ import annotations

from dermadv.registry import Registry

#: Registered defences (none built in yet).
DEFENCES: Registry = Registry("defence")
