"""Robustness runs on callable models with a known flip region and uniform images (no data needed):
draws, flip probabilities against the analytic value, sequential stopping, batching, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dermadv.errors import DataError
from dermadv.perturb.base import Param
from dermadv.robustness.run import StopRule, TransformKey, parse_transforms, run_robustness
from dermadv.robustness.sampling import draws, scale_points
from robustness_support import (
    analytic_green_flip_probability,
    constant_fn,
    exact_fn,
    green_model_fn,
    model,
    uniform_samples,
)


# ----- draws -------------------------------------------------------------------------------------
def test_draws_are_seeded_by_image_and_transform_and_prefix_stable() -> None:
    space = (Param("a", 0.9, 1.1, 1.0), Param("q", 10, 20, None, integer=True))
    a = draws(space, 64, seed=3, image_id="x", key="color")
    assert a.shape == (64, 2)
    np.testing.assert_array_equal(a, draws(space, 64, seed=3, image_id="x", key="color"))
    np.testing.assert_array_equal(a[:16], draws(space, 16, seed=3, image_id="x", key="color"))  # a prefix
    assert not np.array_equal(a, draws(space, 64, seed=3, image_id="y", key="color"))
    assert not np.array_equal(a, draws(space, 64, seed=4, image_id="x", key="color"))
    assert not np.array_equal(a, draws(space, 64, seed=3, image_id="x", key="rotation"))
    assert (a[:, 0] >= 0.9).all() and (a[:, 0] < 1.1).all()
    assert set(np.unique(a[:, 1])) <= set(range(10, 21)) and a[:, 1].max() == 20  # integers, both ends
    for sampler in ("lhs", "random"):
        b = draws(space, 32, sampler=sampler, seed=0, image_id="x", key="k")
        assert b.shape == (32, 2) and (b[:, 0] >= 0.9).all()


def test_integer_mapping_is_uniform_over_the_integers() -> None:
    u = (np.arange(1100)[:, None] + 0.5) / 1100  # evenly spread unit points
    q = scale_points(u, (Param("q", 0, 10, None, integer=True),))[:, 0]
    assert np.bincount(q.astype(int)).tolist() == [100] * 11


def test_parse_transforms() -> None:
    keys = parse_transforms("color,rotation@3", None)
    assert [k.key for k in keys] == ["color", "rotation@3"]
    assert [k.key for k in parse_transforms("color", "2-3")] == ["color@2", "color@3"]
    assert "pixel" not in [k.name for k in parse_transforms("all")]  # no magnitude: not a clinical variation
    with pytest.raises(ValueError, match="unknown transform 'sharpen'"):
        parse_transforms("sharpen")
    with pytest.raises(ValueError, match="severity"):
        parse_transforms("color@9")


# ----- flip probability against an analytic value ---------------------------------------------------
def test_flip_probability_covers_the_analytic_value(tmp_path: Path) -> None:
    samples = uniform_samples(tmp_path / "img", 6, lesions=3)
    res = run_robustness(
        model(green_model_fn),
        samples,
        tmp_path / "run",
        [TransformKey("color")],
        stop=StopRule(samples=256, enabled=False),
        progress=False,
    )
    truth = analytic_green_flip_probability()  # c_g >= 1.055 of [0.9, 1.1]: 0.225
    images = res.summary["images"]
    assert len(images) == 6 and all(r["draws"] == 256 and r["forwards"] == 257 for r in images)
    for r in images:  # scrambled Sobol' points: every image's estimate is close, its interval covers it
        assert r["ci_low"] <= truth <= r["ci_high"]
        assert abs(r["flip_probability"] - truth) < 0.03
    row = res.summary["rows"][0]
    # identical images: the spread over lesions is only the (small, quasi-Monte Carlo) draw error
    assert abs(row["flip_rate"] - truth) < 0.01
    assert row["flip_ci_low"] <= row["flip_rate"] <= row["flip_ci_high"]
    assert row["fragile_any"] == 1.0 and row["fragile_half"] == 0.0
    assert row["accuracy_clean"] == 1.0 and abs(row["accuracy"] - (1 - truth)) < 0.03
    # where flips happen: only above the green limit, never because of red or blue
    curve = res.summary["where"]["color"]["by_parameter"]["c_g"]
    edges, share = np.array(curve["edges"]), curve["flip_share"]
    for lo, hi, s in zip(edges[:-1], edges[1:], share, strict=True):
        if hi <= 1.055:
            assert s == 0.0
        elif lo >= 1.056:
            assert s == 1.0
    red = res.summary["where"]["color"]["by_parameter"]["c_r"]["flip_share"]
    assert max(red) - min(red) < 0.2
    assert res.summary["where"]["color"]["map"]["x"].startswith("c_g")
    for f in ("json", "csv", "images_csv", "strata_csv", "png_flips", "png_where_color"):
        assert Path(res.files[f]).stat().st_size > 0, f


# ----- sequential stopping -------------------------------------------------------------------------
def test_sequential_stopping_settles_robust_and_fragile_images_early(tmp_path: Path) -> None:
    samples = uniform_samples(tmp_path / "img", 3)
    stop = StopRule(samples=256, check_every=16, stop_below=0.02, stop_above=0.5, precision=0.01)
    robust = run_robustness(
        model(constant_fn), samples, tmp_path / "a", [TransformKey("color")], stop=stop, progress=False
    )
    # 0 flips in n draws: the 95% Clopper-Pearson upper bound 1 - 0.025**(1/n) < 0.02 from n = 183 on
    first = next(n for n in range(16, 257, 16) if 1 - 0.025 ** (1 / n) < 0.02)
    for r in robust.summary["images"]:
        assert (r["stop"], r["draws"], r["forwards"]) == ("below", first, first + 1)
    fragile = run_robustness(
        model(exact_fn), samples, tmp_path / "b", [TransformKey("color")], stop=stop, progress=False
    )
    for r in fragile.summary["images"]:
        assert r["stop"] == "above" and r["draws"] == 16 and r["flips"] >= 14
    row = fragile.summary["rows"][0]
    assert row["forwards"] == 3 * 17 and row["forwards_fixed_n"] == 3 * 257
    assert row["forwards_saved"] == pytest.approx(1 - 17 / 257)


# ----- the same rows whatever the batching; resume -------------------------------------------------
def _rows(run: Path) -> list[dict]:
    return json.loads((run / "robustness.json").read_text())["images"]


def test_rows_do_not_depend_on_batch_size(tmp_path: Path) -> None:
    samples = uniform_samples(tmp_path / "img", 5)
    keys = [TransformKey("color"), TransformKey("rotation", 2)]
    stop = StopRule(samples=48, check_every=16)
    for bs, name in ((1, "b1"), (7, "b7"), (500, "b500")):
        run_robustness(
            model(green_model_fn, batch_size=bs),
            samples,
            tmp_path / name,
            keys,
            stop=stop,
            batch_size=bs,
            progress=False,
        )
    assert _rows(tmp_path / "b1") == _rows(tmp_path / "b7") == _rows(tmp_path / "b500")
    assert (tmp_path / "b1" / "robustness.csv").read_bytes() == (
        tmp_path / "b500" / "robustness.csv"
    ).read_bytes()


def test_resume_reuses_finished_units_and_recomputes_changed_images(tmp_path: Path) -> None:
    samples = uniform_samples(tmp_path / "img", 6)
    keys = [TransformKey("color")]
    stop = StopRule(samples=32, check_every=16)
    m = model(green_model_fn)
    first = run_robustness(m, samples, tmp_path / "run", keys, stop=stop, images_per_unit=2, progress=False)
    assert len(first.computed) == 3 and not first.resumed
    units = sorted((tmp_path / "run" / "robustness" / "color").glob("*.json"))
    assert len(units) == 3
    units[1].unlink()  # as if killed before this unit was written
    again = run_robustness(m, samples, tmp_path / "run", keys, stop=stop, images_per_unit=2, progress=False)
    assert len(again.computed) == 1 and len(again.resumed) == 2
    assert again.summary["images"] == first.summary["images"]  # nothing doubled, nothing moved
    # an image file that changed is scored again (its unit only), and said so
    from PIL import Image

    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(samples[0].path)
    changed = run_robustness(m, samples, tmp_path / "run", keys, stop=stop, images_per_unit=2, progress=False)
    assert changed.changed_images == [samples[0].image_id] and len(changed.computed) == 1
    # other result settings are refused, naming what differs
    with pytest.raises(DataError, match="seed"):
        run_robustness(
            m, samples, tmp_path / "run", keys, stop=stop, images_per_unit=2, seed=1, progress=False
        )


def test_bad_selections_are_named(tmp_path: Path) -> None:
    samples = uniform_samples(tmp_path / "img", 2)
    m = model(constant_fn)
    with pytest.raises(DataError, match="no images"):
        run_robustness(m, [], tmp_path / "r", [TransformKey("color")], progress=False)
    with pytest.raises(DataError, match="twice"):
        run_robustness(m, samples + samples[:1], tmp_path / "r", [TransformKey("color")], progress=False)


def test_sam_submission_from_a_template(tmp_path: Path) -> None:
    from dermadv.robustness.submission import score_sam_template

    samples = uniform_samples(tmp_path / "SAM-C" / "gaussian_noise" / "1", 3)
    template = tmp_path / "MyModel_SAM-C.csv"
    rel = [str(s.path.relative_to(tmp_path)) for s in samples]
    template.write_text("image_path,nevus,melanoma\n" + "".join(f"{p},,\n" for p in rel))
    out = tmp_path / "filled.csv"
    assert score_sam_template(model(green_model_fn), template, tmp_path, out) == 3
    lines = out.read_text().splitlines()
    assert lines[0] == "image_path,nevus,melanoma"
    assert [line.split(",")[0] for line in lines[1:]] == rel  # the template's paths, unchanged
    for line in lines[1:]:
        nevus, melanoma = map(float, line.split(",")[1:])
        assert melanoma == pytest.approx(0.9) and nevus == pytest.approx(0.1)
    samples[1].path.unlink()
    with pytest.raises(DataError, match="not found"):
        score_sam_template(model(green_model_fn), template, tmp_path, out)


def test_sam_c_and_sam_p_benchmarks_through_a_run(tmp_path: Path) -> None:
    from dataclasses import replace

    from dermadv.perturb.benchmarks import SAM_C, SAM_P
    from dermadv.robustness.run import benchmark_keys

    samples = uniform_samples(tmp_path / "img", 4)
    samples = [replace(s, diagnosis="nv") if i % 2 else s for i, s in enumerate(samples)]
    res = run_robustness(
        model(exact_fn), samples, tmp_path / "run", benchmark_keys(["sam-c", "sam-p"]), progress=False
    )
    c, p = res.summary["sam_c"], res.summary["sam_p"]
    assert list(c["bce_per_corruption"]) == list(SAM_C) and all(len(v) == 5 for v in c["bce"].values())
    assert (
        c["clean_bce"] == 0.5
    )  # exact_fn calls every unmodified image melanoma: sensitivity 1, specificity 0
    assert c["mbce"] == pytest.approx(np.mean(list(c["bce_per_corruption"].values())))
    assert c["relative_mbce"] == pytest.approx(c["mbce"] - 0.5)
    assert list(p["flip_probability"]) == list(SAM_P) and all(
        0 <= v <= 1 for v in p["flip_probability"].values()
    )
    images = {
        r["image_id"]: r for r in json.loads((tmp_path / "run" / "robustness.json").read_text())["images"]
    }
    assert not images  # benchmark items are not sampled transforms: no per-image flip rows
    assert res.summary["forwards"] == 4 * (14 * 6 + 10 * 32)  # clean + 5 severities per corruption; 31 frames


def test_precision_rule_is_a_separate_question(tmp_path: Path) -> None:
    """Off by default: an image with no flip stops only once "below stop_below" is settled; asked for, a
    half-width of at most ``precision`` stops it earlier (0 flips in 32: CP upper 0.109, half-width 0.054)."""
    samples = uniform_samples(tmp_path / "img", 2)
    default = run_robustness(
        model(constant_fn), samples, tmp_path / "a", [TransformKey("color")], progress=False
    )
    assert {(r["stop"], r["draws"]) for r in default.summary["images"]} == {("below", 192)}
    precise = run_robustness(
        model(constant_fn),
        samples,
        tmp_path / "b",
        [TransformKey("color")],
        stop=StopRule(precision=0.1),
        progress=False,
    )
    assert {(r["stop"], r["draws"]) for r in precise.summary["images"]} == {("precise", 32)}  # 16: 0.103
