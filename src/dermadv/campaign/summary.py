"""Success tables and the before/after melanoma-confidence heat map of a campaign run.

Counting follows the study: an image is *attempted* only if the model classified it correctly at
the start; *misclassified* images are reported but not attacked. Success rate = successful /
attempted, with a Wilson 95% interval.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.campaign.runner import read_run_info
from dermadv.campaign.store import ResultsStore
from dermadv.fileio import atomic_write_bytes, atomic_write_json
from dermadv.metrics import wilson_ci as metrics_wilson_ci
from dermadv.vocab import Direction, Outcome

SUMMARY_COLUMNS: tuple[str, ...] = (
    "attack",
    "images",
    "misclassified",
    "attempted",
    "successful",
    "failed",
    "errors",
    "success_rate",
    "ci_low",
    "ci_high",
    "median_queries_success",
    "median_queries_all",
    "median_seconds",
    "median_seconds_success",
)


def wilson_ci(k: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of k successes in n attempts (nan, nan when nothing was attempted)."""
    if n == 0:
        return float("nan"), float("nan")
    return metrics_wilson_ci(k, n)


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def summarize_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One summary dict per attack (sorted by name) from store rows."""
    out = []
    for attack in sorted({r["attack"] for r in rows}):
        rs = [r for r in rows if r["attack"] == attack]
        by = {o: [r for r in rs if r["outcome"] == o] for o in Outcome}
        attempted = by[Outcome.SUCCESS] + by[Outcome.FAILURE]
        k, n = len(by[Outcome.SUCCESS]), len(attempted)
        lo, hi = wilson_ci(k, n)
        out.append(
            {
                "attack": attack,
                "images": len(rs),
                "misclassified": len(by[Outcome.MISCLASSIFIED]),
                "attempted": n,
                "successful": k,
                "failed": len(by[Outcome.FAILURE]),
                "errors": len(by[Outcome.ERROR]),
                "success_rate": k / n if n else float("nan"),
                "ci_low": lo,
                "ci_high": hi,
                "median_queries_success": _median([r["queries"] for r in by[Outcome.SUCCESS]]),
                "median_queries_all": _median([r["queries"] for r in attempted]),
                "median_seconds": _median([r["seconds"] for r in attempted]),
                "median_seconds_success": _median([r["seconds"] for r in by[Outcome.SUCCESS]]),
            }
        )
    return out


def melanoma_scores(
    probs: Sequence[float] | None, classes: Sequence[str], melanoma: Sequence[str], benign: Sequence[str]
) -> float:
    """Melanoma score p_mel / (p_mel + p_ben) of one probability vector (nan if missing)."""
    if not probs:
        return float("nan")
    p = np.asarray(probs, dtype=float)
    mel = float(sum(p[i] for i, c in enumerate(classes) if c in melanoma))
    ben = float(sum(p[i] for i, c in enumerate(classes) if c in benign))
    return mel / (mel + ben) if mel + ben > 0 else float("nan")


def confidence_pairs(rows: Sequence[Mapping[str, Any]], model: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """attack -> array (n x 2) of melanoma score before and after, for attacked (not skipped) rows."""
    classes = model.get("classes", [])
    mel, ben = model.get("melanoma_classes", ["mel"]), model.get("benign_classes", ["nv"])
    out: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r["outcome"] not in (Outcome.SUCCESS, Outcome.FAILURE) or not r.get("final_probs"):
            continue
        before = melanoma_scores(r["initial_probs"], classes, mel, ben)
        after = melanoma_scores(r["final_probs"], classes, mel, ben)
        if math.isfinite(before) and math.isfinite(after):
            out.setdefault(r["attack"], []).append((before, after))
    return {a: np.asarray(v) for a, v in sorted(out.items())}


def plot_heatmap(pairs: Mapping[str, np.ndarray], path: Path, title: str = "", bins: int = 10) -> None:
    """Figure 1n-style heat map: melanoma score before (x) vs after (y) the attack, one panel per
    attack; each cell counts images. Written atomically as PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(pairs) or ["(no attacked images)"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names) + 0.8, 3.8), squeeze=False)
    edges = np.linspace(0, 1, bins + 1)
    vmax = max(
        [1]
        + [
            int(np.histogram2d(v[:, 0], v[:, 1], bins=[edges, edges])[0].max())
            for v in pairs.values()
            if len(v)
        ]
    )
    image = None
    for ax, name in zip(axes[0], names, strict=True):
        data = pairs.get(name, np.zeros((0, 2)))
        counts = (
            np.histogram2d(data[:, 0], data[:, 1], bins=[edges, edges])[0]
            if len(data)
            else np.zeros((bins, bins))
        )
        image = ax.imshow(
            counts.T, origin="lower", extent=(0, 1, 0, 1), cmap="magma_r", vmin=0, vmax=vmax, aspect="equal"
        )
        for i in range(bins):
            for j in range(bins):
                if counts[i, j]:
                    ax.text(
                        (i + 0.5) / bins,
                        (j + 0.5) / bins,
                        int(counts[i, j]),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if counts[i, j] > vmax / 2 else "black",
                    )
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.7, ls=":")
        ax.axhline(0.5, color="0.4", lw=0.7, ls="--")
        ax.set_title(f"{name} (n={len(data)})", fontsize=9)
        ax.set_xlabel("melanoma score before attack", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("melanoma score after attack", fontsize=8)
    if image is not None:
        from matplotlib.ticker import MaxNLocator

        bar = fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, pad=0.02, label="images")
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    if title:
        fig.suptitle(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def write_csv(table: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Write the summary table as CSV (empty cell for undefined values), atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SUMMARY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: _csv_value(row[k]) for k in SUMMARY_COLUMNS})
    atomic_write_bytes(path, buf.getvalue().encode())


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def summarize_run(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Summarize a campaign run: writes summary.csv, heatmap.png and summary.json into ``out_dir``
    (default RUN/summary) and returns the summary (JSON-safe)."""
    run_dir = Path(run_dir)
    with ResultsStore(run_dir, create=False) as store:
        rows = store.rows()
    info = read_run_info(run_dir)
    model = info.get("model_description") or info.get("settings", {}).get("model", {})
    table = summarize_rows(rows)
    out = Path(out_dir) if out_dir is not None else run_dir / "summary"
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path, json_path = out / "summary.csv", out / "heatmap.png", out / "summary.json"
    write_csv(table, csv_path)
    direction = info.get("settings", {}).get("direction", Direction.MEL_TO_NV.value)
    plot_heatmap(
        confidence_pairs(rows, model),
        png_path,
        title=f"{model.get('name', 'model')}: {direction} ({run_dir.name})",
    )
    summary = {
        "run": str(run_dir),
        "model": model.get("name"),
        "direction": direction,
        "settings_hash": info.get("settings_hash"),
        "rows": len(rows),
        "attacks": [{k: _json_safe(v) for k, v in row.items()} for row in table],
        "files": {"csv": str(csv_path), "heatmap": str(png_path), "json": str(json_path)},
    }
    atomic_write_json(json_path, {**summary, "run_info": info})
    return summary
