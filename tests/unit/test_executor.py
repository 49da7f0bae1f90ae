"""Attack specs build exactly what ``build_attacks`` builds (and pickle), with the fixed tiny TorchScript
CNN of the golden rows. The executors running every kind of unit on real images:
tests/integration/test_executor.py."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from dermadv.campaign.runner import attack_specs, build_attacks
from dermadv.errors import DermadvError
from dermadv.runs.specs import AttackSpec, ModelSpec

MODEL = Path(__file__).resolve().parents[1] / "golden" / "tiny_cnn.pt"
TINY = {"popsize": 4, "max_generations": 2, "threshold": 0.99, "eps": [1.0, 4.0]}


def test_attack_spec_builds_what_build_attacks_builds() -> None:
    specs = attack_specs(["fgsm", "pgd", "color"], TINY)
    assert specs["pgd"].options["eps"] == 4.0 and "eps" not in specs["color"].options  # the attack's own
    assert specs["color"].options == {"popsize": 4, "maxiter": 2, "threshold": 0.99}
    built = build_attacks(["fgsm", "pgd", "color"], TINY)
    assert {n: s.build().describe() for n, s in specs.items()} == {n: a.describe() for n, a in built.items()}
    with pytest.raises(DermadvError, match="unknown option"):
        AttackSpec("color", {"wobble": 1}).build()
    spec = ModelSpec(str(MODEL), ["mel"], ["nv"])
    assert spec.melanoma_classes == ("mel",) and pickle.loads(pickle.dumps(spec)) == spec
