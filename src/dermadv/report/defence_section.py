"""The report's defence section: each defence against the undefended model (``dermadv defend compare``),
the comparison table, the attacks with their threat models, and attack success against clean AUC."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dermadv.report import figures
from dermadv.report.html import REPORT_SECTIONS, ReportContext, _ci, _table, esc, img_tag
from dermadv.report.runs import Run


def success_vs_auc_plot(summary: Mapping[str, Any], title: str = "Attack success against clean AUC") -> bytes:
    """One point per defence and attack: clean AUC (x, DeLong CI) against attack success (y, Wilson CI)."""
    plt = figures._plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    attacks = list(dict.fromkeys(a["attack"] for e in summary["defences"] for a in e.get("attacks", [])))
    markers = "osD^v<>phX*"
    plotted = False
    for j, name in enumerate(attacks):
        xs: list[float] = []
        ys: list[float] = []
        xerr: list[list[float]] = [[], []]
        yerr: list[list[float]] = [[], []]
        labels: list[str] = []
        for e in summary["defences"]:
            auc = e["clean"]["auc"]
            row = next((a for a in e.get("attacks", []) if a["attack"] == name and a.get("success")), None)
            if row is None:
                continue
            s = row["success"]
            xs.append(auc["value"])
            ys.append(s["value"])
            xerr[0].append(auc["value"] - auc["ci_low"])
            xerr[1].append(auc["ci_high"] - auc["value"])
            yerr[0].append(s["value"] - s["ci_low"])
            yerr[1].append(s["ci_high"] - s["value"])
            labels.append(e["defence"])
        if not xs:
            continue
        plotted = True
        ax.errorbar(
            xs, ys, xerr=xerr, yerr=yerr, fmt=markers[j % len(markers)], capsize=3, label=name, alpha=0.8
        )
        for x, y, lab in zip(xs, ys, labels, strict=True):
            ax.annotate(lab, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("clean AUC (95% DeLong CI)")
    ax.set_ylabel("attack success (95% Wilson CI)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title)
    if not plotted:
        ax.text(
            0.5, 0.5, "no image was attacked (none correctly called)", ha="center", transform=ax.transAxes
        )
    if plotted:
        ax.legend(fontsize=7, loc="best")
    return figures._png(fig)


def _pct(p: Mapping[str, Any] | None) -> str:
    return "–" if not p else _ci(p)


def _flip(f: Mapping[str, Any]) -> str:
    return _pct({"value": f["flip_rate"], "ci_low": f["flip_ci_low"], "ci_high": f["flip_ci_high"]})


@REPORT_SECTIONS.register("defences", title="Defences", order=58)
def defence_section(runs: Sequence[Run], context: ReportContext) -> str | None:
    """Per defence comparison run: clean metrics, paired tests, attacks, flip rates, certificates."""
    from dermadv.models.defences.compare import read_defend

    chosen = [r for r in runs if "defence" in r.kinds]
    if not chosen:
        return None
    parts = [
        "<p>Each defence wraps the same model and is measured on the same images as the undefended model "
        "(<em>none</em>): clean metrics with 95% CIs and paired tests against none (DeLong for AUC, exact "
        "McNemar for correct calls); every attack runs black box through the defence, plus adaptive attacks "
        "aimed at what it leaves open; queries count images submitted, forwards count the undefended "
        "model's forwards (queries × the defence's cost).</p>"
    ]
    for run in chosen:
        s = read_defend(run.path)
        parts.append(f"<h3>{esc(run.label)}</h3>")
        methods = sorted({m for e in s["defences"] for m in e.get("certified_accuracy", {})})
        rows = []
        for e in s["defences"]:
            c, paired = e["clean"], e.get("paired_vs_none")
            flips = "; ".join(
                f"{f['transform']} {_flip(f)}"
                for f in e.get("flip_rates", [])
                if f.get("flip_rate") is not None
            )
            rows.append(
                [
                    e["defence"],
                    e["query_cost"],
                    _pct(c["accuracy"]),
                    _pct(c["sensitivity"]),
                    _pct(c["specificity"]),
                    _pct(c["auc"]),
                    "–" if not paired else f"{paired['delong_auc']['p_value']:.3g}",
                    "–" if not paired else f"{paired['mcnemar_clean']['p_value']:.3g}",
                    flips or "–",
                    *[_pct(e.get("certified_accuracy", {}).get(m)) for m in methods],
                ]
            )
        parts.append(
            _table(
                [
                    "defence",
                    "cost",
                    "accuracy",
                    "sensitivity",
                    "specificity",
                    "AUC",
                    "DeLong p",
                    "McNemar p",
                    "flip rate",
                    *[f"certified ({m})" for m in methods],
                ],
                rows,
            )
        )
        arows = [
            [
                e["defence"],
                a["attack"],
                "yes" if a["adaptive"] else "no",
                a["attacked"],
                _pct(a["success"]),
                "–" if a["median_queries"] is None else f"{a['median_queries']:g}",
                "–" if a["median_forwards"] is None else f"{a['median_forwards']:g}",
                "–" if "mcnemar_vs_none" not in a else f"{a['mcnemar_vs_none']['p_value']:.3g}",
                a["threat_model"],
            ]
            for e in s["defences"]
            for a in e.get("attacks", [])
        ]
        if arows:
            parts.append(
                _table(
                    [
                        "defence",
                        "attack",
                        "adaptive",
                        "attacked",
                        "success (95% CI)",
                        "median queries",
                        "median forwards",
                        "McNemar p",
                        "threat model",
                    ],
                    arows,
                    left=2,
                )
            )
            parts.append(
                img_tag(success_vs_auc_plot(s, title=run.label), f"{run.label}: attack success vs AUC")
            )
        skipped = [f"{e['defence']}: {x}" for e in s["defences"] for x in e.get("adaptive_skipped", [])]
        if skipped:
            parts.append('<p class="note">Adaptive attacks not run: ' + esc("; ".join(skipped)) + "</p>")
    return "\n".join(parts)
