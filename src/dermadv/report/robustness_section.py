"""The report's average-case robustness section: flip rates per transform side by side per model,
fragile shares, where flips happen, strata, and the SAM-C / SAM-P benchmark metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dermadv.report import figures
from dermadv.report.html import REPORT_SECTIONS, ReportContext, _table, esc, img_tag
from dermadv.report.runs import Run


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f}%"


def _ci(r: dict[str, Any], key: str, lo: str, hi: str) -> str:
    return f"{_pct(r[key])} ({_pct(r[lo])}–{_pct(r[hi])})"


@REPORT_SECTIONS.register("robustness", title="Average-case robustness", order=55)
def robustness_section(runs: Sequence[Run], context: ReportContext) -> str | None:
    """Per model: how often the call flips under clinically plausible variation (robustness runs)."""
    from dermadv.robustness.summary import read_robustness

    chosen = [r for r in runs if "robustness" in r.kinds]
    if not chosen:
        return None  # nothing to show: the section is left out
    parts = [
        "<p>Each image was scored unmodified and under random draws of each transform over its clinical "
        "range. "
        "A draw <em>flips</em> when the melanoma/benign call changes. Flip rate: the mean share of flipping "
        "draws per image, with a 95% CI over lesions; fragile: images with any flip / with more than half "
        "of their draws flipping.</p>"
    ]
    summaries = [(run, read_robustness(run.path)) for run in chosen]
    keys = list(dict.fromkeys(r["transform"] for _, s in summaries for r in s["rows"]))
    if keys and len(summaries) > 1:
        by = {(run.label, r["transform"]): r for run, s in summaries for r in s["rows"]}
        table = [
            [
                k,
                *[
                    _ci(by[(run.label, k)], "flip_rate", "flip_ci_low", "flip_ci_high")
                    if (run.label, k) in by
                    else "–"
                    for run, _ in summaries
                ],
            ]
            for k in keys
        ]
        parts.append(
            "<h3>Flip rate by model</h3>" + _table(["transform", *[run.label for run, _ in summaries]], table)
        )
    for run, s in summaries:
        parts.append(f"<h3>{esc(run.label)}</h3>")
        rows = s["rows"]
        if rows:
            parts.append(
                _table(
                    [
                        "transform",
                        "images",
                        "flip rate (95% CI)",
                        "fragile: any flip",
                        "fragile: >50%",
                        "accuracy clean → under",
                        "balanced error clean → under",
                        "forwards (saved by stopping)",
                    ],
                    [
                        [
                            r["transform"],
                            r["n_images"],
                            _ci(r, "flip_rate", "flip_ci_low", "flip_ci_high"),
                            _ci(r, "fragile_any", "fragile_any_ci_low", "fragile_any_ci_high"),
                            _ci(r, "fragile_half", "fragile_half_ci_low", "fragile_half_ci_high"),
                            f"{r['accuracy_clean']:.3f} → {r['accuracy']:.3f}",
                            "–"
                            if r["balanced_error"] is None
                            else f"{r['balanced_error_clean']:.3f} → {r['balanced_error']:.3f}",
                            f"{r['forwards']} ({_pct(r['forwards_saved'])})",
                        ]
                        for r in rows
                    ],
                )
            )
        for name, png in figures.robustness_figures(s, title=run.label).items():
            parts.append(img_tag(png, f"{run.label}: {name}"))
        strata = s.get("strata", [])
        if strata:
            parts.append(f'<p class="note">{esc(s.get("skin_tone_note", ""))}</p>')
            parts.append(
                _table(
                    ["transform", "stratum", "value", "images", "flip rate (95% CI)"],
                    [
                        [
                            r["transform"],
                            r["stratum"],
                            r["value"],
                            r["n_images"],
                            _ci(r, "flip_rate", "ci_low", "ci_high"),
                        ]
                        for r in strata
                    ],
                    left=3,
                )
            )
        if "sam_c" in s:
            c = s["sam_c"]
            parts.append(
                f"<p>SAM-C (Maron et al. 2021): clean BCE {c['clean_bce']:.4f}, mBCE {c['mbce']:.4f}, "
                f"relative mBCE {c['relative_mbce']:.4f}.</p>"
            )
            parts.append(
                _table(
                    ["corruption", "BCE (mean over severities)"],
                    [[k, f"{v:.4f}"] for k, v in c["bce_per_corruption"].items()],
                )
            )
        if "sam_p" in s:
            p = s["sam_p"]
            parts.append(f"<p>SAM-P: mFR {p['mfr']:.4f} (flip probability, ImageNet-P definition).</p>")
            parts.append(
                _table(
                    ["sequence", "flip probability"],
                    [[k, f"{v:.4f}"] for k, v in p["flip_probability"].items()],
                )
            )
    return "\n".join(parts)
