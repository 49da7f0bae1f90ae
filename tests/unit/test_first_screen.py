"""The report's first screen: the headline per model, in words, every number linked to its section."""

from __future__ import annotations

import re

from dermadv.report.first_screen import ModelFacts, _attacks, _defence, _defence_line, _verdict


def _attack(name: str, k: int, n: int, invisible: int | None = 0) -> dict:
    return {
        "attack": name,
        "successful": k,
        "attempted": n,
        "success_rate": k / n,
        "ci_low": 0.1,
        "ci_high": 0.9,
        "invisible": invisible,
    }


def _metrics(sens: float, spec: float) -> dict:
    return {"sensitivity": {"value": sens}, "specificity": {"value": spec}}


def test_defence_found_in_a_model_description():
    assert _defence(
        {"name": "jpeg(sklesion)", "defence": {"name": "jpeg"}, "model": {"name": "sklesion"}}
    ) == (
        "jpeg",
        "sklesion",
    )
    assert _defence({"name": "x", "defence": "median"}) == ("median", None)
    assert _defence({"name": "sklesion"}) == (None, None) and _defence(None) == (None, None)


def test_best_defence_and_its_cost():
    base = ModelFacts("sklesion", metrics=_metrics(0.8, 0.9), attacks=[_attack("color", 3, 4)])
    jpeg = ModelFacts(
        "jpeg(sklesion)",
        metrics=_metrics(0.7, 0.9),
        attacks=[_attack("color", 1, 4)],
        defence="jpeg",
        base="sklesion",
    )
    blur = ModelFacts("blur(sklesion)", attacks=[_attack("color", 2, 4)], defence="blur", base="sklesion")
    line = _defence_line({f.name: f for f in (base, jpeg, blur)})
    assert line is not None and "jpeg" in line and "blur" not in line
    assert '<a class="num" href="#attacks">25%</a>' in line and 'href="#attacks">75%</a> without it' in line
    assert 'sensitivity <a class="num" href="#metrics">0.80 → 0.70</a>' in line
    assert _defence_line({"sklesion": base}) is None  # no defended model: nothing said


def test_attack_lines_and_verdict():
    f = ModelFacts("m", attacks=[_attack("color", 2, 4, invisible=1), _attack("pixel", 0, 4)])
    fooled, held = _attacks(f)
    assert (
        "a colour-balance change" in fooled and 'href="#attacks">2 of 4 (50%, 95% CI 10%–90%)</a>' in fooled
    )
    assert 'href="#examples">1</a> of them below the just-noticeable difference' in fooled
    assert "a change of a few pixels" in held and 'href="#attacks">0 of 4</a>' in held
    assert "1 of 2 attack types" in _verdict(f)
    assert "No attack tried" in _verdict(ModelFacts("n", attacks=[_attack("pixel", 0, 3)]))
    assert _verdict(ModelFacts("o")) == ""
    assert all(t in ("attacks", "examples") for t in re.findall(r'href="#([a-z]+)"', fooled + held))


def test_defence_found_in_a_defended_models_description():
    """The description a real defence wrapper writes (dermadv.models.defences) names its chain."""
    from dermadv.models.defences.base import apply_defences
    from robustness_support import constant_fn, model

    defended = apply_defences(model(constant_fn), ["color-constancy:p=6", "tta:rotations=4"])
    label, base = _defence(defended.describe())
    assert label is not None and "color-constancy" in label and "tta" in label
    assert base == "constant_fn"
