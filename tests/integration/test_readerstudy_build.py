"""Build a study from a real attack campaign (the campaign runner and colour attack, on real
melanomas) and check what readers would see: opaque, same-size PNGs; provenance hidden in the manifest."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermadv.campaign.runner import run_campaign
from dermadv.data import select_samples
from dermadv.data.images import load_image, resize_uint8
from dermadv.readerstudy.build import build_from_runs

SIZE = 64


def redness_model(threshold: float):
    """A white-box 'classifier' calling a lesion melanoma when its mean red (0-255) exceeds ``threshold``:
    the colour-balance attack (red gain down to 0.9) can flip it, as it flips real CNNs."""
    torch = pytest.importorskip("torch")

    from dermadv.models.base import TorchModuleClassifier

    class Redness(torch.nn.Module):
        def forward(self, x):  # x: normalised N x 3 x H x W
            r = x[:, 0].mean(dim=(1, 2))
            return torch.stack([40.0 * (r - threshold / 255.0), torch.zeros_like(r)], dim=1)

    return TorchModuleClassifier(
        Redness(), ("mel", "nv"), (SIZE, SIZE), mean=(0.0,) * 3, std=(1.0,) * 3, name="redness", device="cpu"
    )


def test_build_from_a_real_campaign(isic2019_dir, tmp_path):
    samples = select_samples(isic2019_dir, classes=("mel",), limit=10)
    model = redness_model(0.0)
    x = np.stack([model.prepare([load_image(s.path)])[0] for s in samples]).astype(np.float64)
    red = x[..., 0].mean(axis=(1, 2))
    model = redness_model(float(np.median(red)) * 0.95)  # mean red of the median melanoma, minus 5%
    run = tmp_path / "run"
    out = run_campaign(
        model,
        samples,
        run,
        ["color"],
        attack_options={"popsize": 4, "max_generations": 6},
        data_info={"path": str(isic2019_dir)},
        progress=False,
    )
    assert out.ran == 10
    study, summary = build_from_runs([run], tmp_path / "study", per_attack=3, unmodified=8, seed=1)
    from dermadv.campaign.store import ResultsStore

    with ResultsStore(run, create=False) as store:
        successes = {r["image_id"]: r for r in store.rows(outcome="success")}
    adv = [im for im in study.images if im.condition == "adversarial"]
    assert len(adv) == min(3, len(successes)) > 0
    for im in adv:
        row = successes[im.source_image_id]
        assert float(im.extra["final_conf"]) == pytest.approx(row["final_conf"]) and row["final_conf"] < 0.5
        assert json.loads(im.extra["params"]) == row["params"]
    unm = [im for im in study.images if im.condition == "unmodified"]
    assert summary["unmodified_source"] == str(isic2019_dir)
    assert sorted(im.ground_truth for im in unm) == ["melanoma"] * 4 + ["naevus"] * 4
    assert not {im.source_image_id for im in unm} & {im.source_image_id for im in adv}
    # readers see same-size PNGs with random names; an unmodified image is the model's prepared input
    for im in study.images:
        assert Path(im.file).stem == im.key and len(im.key) == 16
        with Image.open(study.root / "images" / im.file) as pic:
            assert pic.format == "PNG" and pic.size == (SIZE, SIZE) and not pic.info
    # file sizes are no signal: uncompressed PNGs of one size have one byte count, whatever the content
    # (compressed, the attacked images' sizes differ from the unmodified ones')
    from dermadv.readerstudy.build import png_size

    sizes = {im.condition: set() for im in study.images}
    for im in study.images:
        sizes[im.condition].add(png_size(study.root / "images" / im.file))
    assert sizes["adversarial"] == sizes["unmodified"] and len(sizes["unmodified"]) == 1
    assert summary["warnings"] == []
    first = unm[0]
    src = next(
        s for s in select_samples(isic2019_dir, classes=("mel", "nv")) if s.image_id == first.source_image_id
    )
    expected = resize_uint8(load_image(src.path), (SIZE, SIZE))
    assert np.array_equal(np.asarray(Image.open(study.root / "images" / first.file).convert("RGB")), expected)
    with (study.root / "manifest.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == len(study.images)
    build = json.loads((study.root / "study.json").read_text())["build"]
    assert build["per_attack"] == 3 and build["unmodified"] == 8  # the numbers asked, kept as provenance
    assert build["unmodified_drawn"] == {"melanoma": 4, "naevus": 4}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_attacks_draw_distinct_lesions_before_repeating(isic2019_dir, tmp_path, seed):
    """Every attack fooled the same 6 melanomas: 3 images per attack for 2 attacks must show 6 different
    lesions (a reader who sees one lesion twice is not blinded to it); asking for more repeats lesions
    and says so."""
    from dermadv.campaign.store import ResultsStore
    from readerstudy_support import isic_images

    run = tmp_path / "run"
    with ResultsStore(run) as store:
        for image_id, dx in isic_images(isic2019_dir, 6, 0):
            img = load_image(isic2019_dir / "images" / f"{image_id}.jpg")[:64, :64]
            for attack in ("color", "rotation"):
                store.add(
                    {
                        "image_id": image_id, "attack": attack, "direction": "mel->nv", "outcome": "success",
                        "true_group": "melanoma", "initial_probs": [0.8, 0.2], "final_probs": [0.3, 0.7],
                        "initial_conf": 0.8, "final_conf": 0.3, "params": {}, "queries": 10,
                        "generations": 1, "seconds": 0.1, "original": img,
                        "adversarial": np.clip(img.astype(int) + 3, 0, 255).astype(np.uint8),
                    },
                    diagnosis=dx,
                )  # fmt: skip
    study, summary = build_from_runs([run], tmp_path / "study", per_attack=3, unmodified=0, seed=seed)
    sources = [im.source_image_id for im in study.images]
    assert len(sources) == 6 and len(set(sources)) == 6 and not summary["shortfalls"]
    # melanomas only: built, with a warning (kept in study.json)
    assert len(summary["warnings"]) == 1 and "every image is melanoma" in summary["warnings"][0]
    assert study.settings["build"]["warnings"] == summary["warnings"]
    study, summary = build_from_runs([run], tmp_path / "study4", per_attack=4, unmodified=0, seed=seed)
    assert len(study.images) == 8 and len({im.source_image_id for im in study.images}) == 6
    assert any("repeat a lesion" in s for s in summary["shortfalls"])


def test_one_class_hand_study_is_built_with_a_warning(isic2019_dir, tmp_path):
    from readerstudy_support import make_hand_study

    study = make_hand_study(isic2019_dir, tmp_path, n_mel=2, n_nv=0, n_adv=1)
    settings = json.loads((study / "study.json").read_text())
    assert any("every image is melanoma" in w for w in settings["build"]["warnings"])
    from readerstudy_support import cli

    out = cli(["reader-study", "build", "--images", str(tmp_path / "src"), "--manifest",
               str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "again")])  # fmt: skip
    assert "warning: every image is melanoma" in out.stderr
