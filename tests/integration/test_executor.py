"""One executor for every kind of work unit: the local and the Ray executor give the same results.

Units are attack jobs (``AttackUnit``), sweep perturbations (``SweepUnit``) and a kind defined only
here (``RotateShiftDraws``: melanoma scores of images under rotations and colour shifts at given
parameters, as robustness draws will be), all run unchanged by ``LocalExecutor`` and ``RayExecutor``.
The model is the fixed tiny TorchScript CNN of the golden rows; the images are real ISIC images.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from dermadv.campaign.runner import AttackUnit, attack_specs, attack_units, build_attacks, plan_jobs, run_unit
from dermadv.data import select_samples
from dermadv.errors import DataError, DermadvError
from dermadv.metrics import melanoma_score
from dermadv.models.registry import load_model
from dermadv.perturb.points import parse_one
from dermadv.perturb.sweep import SweepUnit, score_point
from dermadv.runs.executor import LocalExecutor, WorkerState, WorkUnit, make_executor
from dermadv.runs.specs import ModelSpec, PerturbationSpec

MODEL = Path(__file__).resolve().parents[1] / "golden" / "tiny_cnn.pt"
TINY = {"popsize": 4, "max_generations": 2, "threshold": 0.99, "eps": [1.0, 4.0]}
SWEEP = ("none", "rot:45", "shift:g:-10", "decoder:other")
DRAWS = ((0.0, 0.0, 0.0, 0.0), (30.0, 10.0, -5.0, 0.0), (200.0, -20.0, 0.0, 15.0))


@dataclasses.dataclass(frozen=True)
class RotateShiftDraws(WorkUnit):
    """Melanoma scores of ``samples`` after each draw (angle in degrees, RGB channel shifts)."""

    kind: ClassVar[str] = "rotate-shift-draws"
    samples: tuple[Any, ...]
    draws: tuple[tuple[float, float, float, float], ...]

    def run(self, state: WorkerState) -> np.ndarray:
        from dermadv.perturb.affine import rotate
        from dermadv.perturb.intensity import shift_channels

        images = np.stack([state.prepared(s) for s in self.samples])
        out = np.empty((len(self.draws), len(self.samples)))
        for k, (angle, *shift) in enumerate(self.draws):
            batch = shift_channels(rotate(images, angle), shift)
            out[k] = melanoma_score(state.model, state.model.predict_proba(batch))
        return out

    def paths(self) -> list[str]:
        return [str(s.path) for s in self.samples]

    def image_keys(self) -> list[str]:
        return [s.image_id for s in self.samples]

    def n_jobs(self) -> int:
        return len(self.draws)


@pytest.fixture(scope="module")
def melanomas(isic2019_dir: Path) -> list[Any]:
    return select_samples(isic2019_dir, classes=("mel",), limit=3)


@pytest.fixture(scope="module")
def mixed(isic2019_dir: Path) -> list[Any]:
    return select_samples(isic2019_dir, classes=("mel", "nv"), limit=10)


def _units(melanomas: list[Any], mixed: list[Any]) -> list[WorkUnit]:
    """Attack units (one image, and two evolved together), sweep units and the draws unit."""
    names = ["fgsm", "color"]
    specs = attack_specs(names, TINY)
    jobs = plan_jobs(melanomas, names, seed=3)
    units: list[WorkUnit] = [*attack_units(jobs[:2], specs), *attack_units(jobs[2:], specs, batch_images=2)]
    units += [SweepUnit(PerturbationSpec(s), tuple(mixed), 4) for s in SWEEP]
    units.append(RotateShiftDraws(tuple(mixed[:6]), DRAWS))
    return units


def _plain(result: Any) -> Any:
    """A unit's result in comparable form (AttackResults without their wall time)."""
    if result is None:
        return None
    if isinstance(result, np.ndarray):
        return ("array", result.shape, result.tolist())
    if isinstance(result, list):
        return [_plain(r) for r in result]
    d = result.to_dict()
    d.pop("seconds")
    return d, _plain(result.original), _plain(result.adversarial)


def test_local_executor_runs_every_kind_of_unit(
    one_thread: None, melanomas: list[Any], mixed: list[Any], tmp_path: Path
) -> None:
    units = _units(melanomas, mixed)
    for unit in units:  # frozen specs and plain data only: what travels to workers
        assert pickle.loads(pickle.dumps(unit)) == unit
    executor = make_executor("local", ModelSpec(str(MODEL)))
    assert isinstance(executor, LocalExecutor)
    got = list(executor.run(units))
    assert [u for u, _ in got] == units
    # the same as running the pieces by hand with the model loaded here
    model = load_model(str(MODEL))
    attack, draws = got[0], got[-1]
    sweep = next(pair for pair in got if isinstance(pair[0], SweepUnit))
    job = attack[0].jobs[0]
    ((_, want),) = run_unit(model, build_attacks(["fgsm"], TINY), [job])
    assert _plain(attack[1]) == [_plain(want)]
    assert attack[1][0].outcome in ("success", "failure", "misclassified")
    c = parse_one(sweep[0].perturbation.spec)
    assert np.array_equal(sweep[1], score_point(model, c, mixed, None, None, 4))
    assert draws[1].shape == (len(DRAWS), 6) and np.allclose(draws[1][0], sweep[1][:6])  # draw 0 = identity
    stats = executor.stats()
    assert stats["executor"] == "local" and stats["units"] == len(units)
    assert stats["jobs"] == 6 + len(SWEEP) + len(DRAWS)
    assert stats["images"] == len({k for u in units for k in u.image_keys()})
    # a corrupt image is an error result, not a stopped run
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    sample = dataclasses.replace(job.sample, image_id="ISIC_broken", path=bad)
    broken = dataclasses.replace(job, image_id="ISIC_broken", sample=sample)
    ((unit, results),) = executor.run([AttackUnit(attack[0].attack, (broken,))])
    assert results[0].outcome == "error" and "bad.jpg" in results[0].error
    with pytest.raises(DermadvError, match="--executor ray"):
        make_executor("local", ModelSpec(str(MODEL)), workers=2)
    with pytest.raises(DermadvError, match="must be one of"):
        make_executor("dask", ModelSpec(str(MODEL)))


def test_lost_units_and_image_cache(melanomas: list[Any], mixed: list[Any]) -> None:
    units = _units(melanomas, mixed)
    attack_unit = next(u for u in units if isinstance(u, AttackUnit) and len(u.jobs) == 2)
    sweep_unit = next(u for u in units if isinstance(u, SweepUnit))
    lost = attack_unit.lost("the Ray worker running this unit died 3 time(s)")
    assert [r.outcome for r in lost] == ["error"] * len(attack_unit.jobs)
    assert [r.image_id for r in lost] == [j.image_id for j in attack_unit.jobs]
    with pytest.raises(DermadvError, match="perturbation none: .*rerun to resume"):
        sweep_unit.lost("died")
    state = WorkerState(load_model(str(MODEL)), image_cache_size=2)
    for s in mixed[:4]:
        state.prepared(s)
    state.trim_images(keep={mixed[0].image_id})
    assert list(state.images) == [mixed[0].image_id, mixed[3].image_id]
    with pytest.raises(DataError, match="no image file"):
        state.prepared(dataclasses.replace(mixed[5], path=None))


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A Ray instance with 2 CPUs (2 workers); this module's unit kind is pickled by value."""
    ray = pytest.importorskip("ray", reason="dermadv[ray] not installed")
    os.environ["RAY_DISABLE_USAGE_STATS"] = "1"
    os.environ["RAY_memory_monitor_refresh_ms"] = "0"  # see test_ray.py
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_ray_executor_gives_the_local_results_for_every_kind_of_unit(
    one_thread: None, ray_cluster: None, melanomas: list[Any], mixed: list[Any]
) -> None:
    units = _units(melanomas, mixed)
    local = {id(u): _plain(r) for u, r in LocalExecutor(load_model(str(MODEL))).run(units)}
    executor = make_executor(
        "ray", ModelSpec(str(MODEL)), model=load_model(str(MODEL)), workers=2, verbose=False
    )
    seen = []
    for unit, result in executor.run(units):
        seen.append(id(unit))
        assert _plain(result) == local[id(unit)], unit.label()
    assert sorted(seen) == sorted(local)  # each unit once
    stats = executor.stats()
    assert stats["executor"] == "ray" and stats["workers"] == 2 and stats["units"] == len(units)
    assert stats["jobs"] == sum(w["jobs"] for w in stats["per_worker"]) == 6 + len(SWEEP) + len(DRAWS)
    assert stats["images"] == len({k for u in units for k in u.image_keys()})
