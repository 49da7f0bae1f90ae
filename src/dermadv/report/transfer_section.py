"""The report's transferability section: per attack, a source x target matrix of transfer rates."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dermadv.report.html import REPORT_SECTIONS, ReportContext, _table, esc, img_tag
from dermadv.report.runs import Run


def transfer_heatmap(matrix: Sequence[Mapping[str, Any]], attack: str) -> bytes:
    """Heat map of one attack's transfer rates: rows = sources, columns = targets, cells k/n and %."""
    from dermadv.report.figures import _plt, _png

    plt = _plt()
    cells = [m for m in matrix if m["attack"] == attack]
    sources = list(dict.fromkeys(m["source"] for m in cells))
    targets = list(dict.fromkeys(m["target"] for m in cells))
    grid = np.full((len(sources), len(targets)), np.nan)
    text = [["" for _ in targets] for _ in sources]
    for m in cells:
        i, j = sources.index(m["source"]), targets.index(m["target"])
        rate = m.get("rate")
        grid[i, j] = np.nan if rate is None or (isinstance(rate, float) and math.isnan(rate)) else rate
        text[i][j] = f"{m['transferred']}/{m['attempted']}" + (
            "" if math.isnan(grid[i, j]) else f"\n{100 * grid[i, j]:.0f}%"
        )
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(targets), 1.2 + 0.8 * len(sources)))
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="Reds", vmin=0, vmax=1, aspect="auto")
    for i in range(len(sources)):
        for j in range(len(targets)):
            dark = not math.isnan(grid[i, j]) and grid[i, j] > 0.6
            ax.text(
                j,
                i,
                text[i][j] or "–",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
    ax.set_xticks(range(len(targets)), [t[:28] for t in targets], rotation=20, ha="right", fontsize=7)
    ax.set_yticks(range(len(sources)), [s[:28] for s in sources], fontsize=7)
    ax.set_xlabel("target model", fontsize=8)
    ax.set_ylabel("source (attacked) model", fontsize=8)
    ax.set_title(f"Transfer of {attack} adversarial images", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="transfer rate")
    fig.tight_layout()
    png: bytes = _png(fig)
    return png


def _cell(m: Mapping[str, Any]) -> str:
    if not m["attempted"]:
        return f"0 attempted ({m['source_successes']} source successes)"
    return (
        f"{m['transferred']}/{m['attempted']} = {100 * m['rate']:.1f}% "
        f"({100 * m['ci_low']:.1f}–{100 * m['ci_high']:.1f}%)"
    )


@REPORT_SECTIONS.register("transfer", title="Transferability across models", order=75)
def transfer_section(runs: Sequence[Run], context: ReportContext) -> str | None:
    """Transfer runs (dermadv transfer): does an attack found on one model carry to another?"""
    from dermadv.transfer import read_transfer

    chosen = [r for r in runs if "transfer" in r.kinds]
    if not chosen:
        return None
    parts = [
        "<p>The adversarial images a campaign found on its (source) model, given unchanged to other "
        "(target) models. A transfer succeeds when the target called the original correctly and calls the "
        "adversarial image benign. Rate: transfers / source successes the target called correctly, "
        "Wilson 95% CI.</p>"
    ]
    for run in chosen:
        data = read_transfer(run.path)
        matrix = [
            {**m, **{k: (float("nan") if m.get(k) is None else m[k]) for k in ("rate", "ci_low", "ci_high")}}
            for m in data["matrix"]
        ]
        if len(chosen) > 1:
            parts.append(f"<h3>{esc(run.path.name)}</h3>")
        for attack in sorted({m["attack"] for m in matrix}):
            rows = [m for m in matrix if m["attack"] == attack]
            targets = list(dict.fromkeys(m["target"] for m in rows))
            sources = list(dict.fromkeys(m["source"] for m in rows))
            by = {(m["source"], m["target"]): m for m in rows}
            table = [[s, *[_cell(by[(s, t)]) if (s, t) in by else "–" for t in targets]] for s in sources]
            parts.append(f'<h3 id="transfer-{esc(attack)}">{esc(attack)}</h3>')
            parts.append(_table(["source \\ target", *targets], table))
            parts.append(img_tag(transfer_heatmap(matrix, attack), f"transfer heat map {attack}"))
        parts.extend(f'<p class="note">{esc(n)}</p>' for n in data.get("notes", []))
    return "".join(parts)
