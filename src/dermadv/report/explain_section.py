"""The report's explanations section: what drives the call before and after each attack."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.report.html import REPORT_SECTIONS, ReportContext, img_tag
from dermadv.report.runs import Run

METHOD_TITLES = {
    "occlusion": "occlusion",
    "integrated_gradients": "Integrated Gradients",
    "gradcam": "Grad-CAM",
}


def _rgb(path: str | Path) -> np.ndarray | None:
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        return None
    with Image.open(p) as im:
        return np.asarray(im.convert("RGB"))


def explanation_grid(rows: Sequence[dict[str, Any]], title: str) -> bytes:
    """One row per (image, method): original | adversarial | pixel difference | map of the original |
    map of the adversarial | map difference (adversarial - original). Maps: red = towards melanoma."""
    from dermadv.explain import map_to_rgb
    from dermadv.report.figures import _plt, _png, amplified_difference

    plt = _plt()
    fig, axes = plt.subplots(len(rows), 6, figsize=(13, 2.3 * len(rows)), squeeze=False)
    for ax, r in zip(axes, rows, strict=True):
        diff, factor = amplified_difference(r["original"], r["adversarial"])
        a, b = r["map_original"], r["map_adversarial"]
        scale = max(float(np.abs(a).max()), float(np.abs(b).max())) or 1.0
        d = b - a
        s = r["scores"]
        panels = [
            (r["original"], f"{r['image_id']}\nunmodified: mel {s['original']:.3f}"),
            (r["adversarial"], f"{r['attack']} ({r['outcome']})\nadversarial: mel {s['adversarial']:.3f}"),
            (diff, f"pixel difference ×{factor:.0f}\n(grey = unchanged)"),
            (map_to_rgb(a, scale), f"{r['method']}: unmodified"),
            (map_to_rgb(b, scale), f"{r['method']}: adversarial"),
            (
                map_to_rgb(d, float(np.abs(d).max()) or 1.0),
                f"{r['method']}: change\n(adversarial − unmodified)",
            ),
        ]
        for axis, (img, label) in zip(ax, panels, strict=True):
            axis.imshow(img)
            axis.set_title(label, fontsize=7)
            axis.set_xticks([])
            axis.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.3 * len(rows))))
    png: bytes = _png(fig)
    return png


def _rows(run: Run, data: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for e in data["entries"]:
        if "attack" not in e:  # a data-set explanation (no adversarial pair): listed, not drawn
            continue
        orig, adv = _rgb(e["original"]), _rgb(e["adversarial"])
        if orig is None or adv is None or orig.shape != adv.shape:
            continue
        for method, files in e["files"].items():
            a, b = run.path / files["original"]["npy"], run.path / files["adversarial"]["npy"]
            if not a.is_file() or not b.is_file():
                continue
            out.append(
                {
                    "image_id": e["image_id"],
                    "attack": e["attack"],
                    "outcome": e["outcome"],
                    "original": orig,
                    "adversarial": adv,
                    "map_original": np.load(a).astype(np.float64),
                    "map_adversarial": np.load(b).astype(np.float64),
                    "method": METHOD_TITLES.get(method, method),
                    "scores": e["melanoma_score"],
                }
            )
    return out


@REPORT_SECTIONS.register("explanations", title="What drives the call", order=82)
def explanations_section(runs: Sequence[Run], context: ReportContext) -> str | None:
    """Attribution maps of attacked images (dermadv explain --run): original, adversarial, difference."""
    from dermadv.explain.run import read_explain

    chosen = [r for r in runs if "explanation" in r.kinds]
    parts = []
    for run in chosen:
        data = read_explain(run.path)
        rows = _rows(run, data)
        if not rows:
            continue
        model = str(data.get("model", {}).get("name", "model"))
        parts.append(
            img_tag(
                explanation_grid(rows, f"What drives the call: {model}"),
                f"explanations {model}",
                "Per attacked image and attribution method: the unmodified and adversarial images, their "
                "amplified pixel difference, the attribution map of each (red: pushes the call towards "
                "melanoma; blue: towards benign; one colour scale per pair) and the change between the two "
                "maps. Occlusion: fall of the melanoma score when a patch is hidden; Integrated Gradients "
                "and Grad-CAM (Captum): of the melanoma log-odds.",
            )
        )
    if not parts:
        return None
    return (
        "<p>Where in the image the model finds its evidence, before and after each attack "
        "(<code>dermadv explain --run RUN</code>).</p>" + "".join(parts)
    )
