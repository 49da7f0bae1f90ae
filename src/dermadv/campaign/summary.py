"""Success tables and the before/after melanoma-confidence heat map of a campaign run.

Counting follows the study: an image is *attempted* only if the model classified it correctly at
the start; *misclassified* images are reported but not attacked. Success rate = successful /
attempted, with a Wilson 95% interval.

Success against queries: every row records the query index of its first success
(``first_success_query``; rows written before it existed fall back to ``queries`` for successes);
:func:`query_curves` gives, per attack (and its search), the success rate at each query budget B --
the share of attempted images whose first success came at or before query B -- with Wilson bands,
plotted by :func:`plot_query_curves` (``queries.png``). The table also gives the 90th percentile of
queries per success, which search and criterion produced the rows, and how many attacked images were
not top-1 of their true group to begin with (a 7-class model may call an image with P(mel) > P(nv)
bcc or bkl).
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
from dermadv.vocab import Direction, Group, Outcome

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
    "p90_queries_success",
    "median_first_success_query",
    "search",
    "criterion",
    "not_top1_true",
)


def wilson_ci(k: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of k successes in n attempts (nan, nan when nothing was attempted)."""
    if n == 0:
        return float("nan"), float("nan")
    return metrics_wilson_ci(k, n)


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _labels(rows: Sequence[Mapping[str, Any]], key: str, default: str) -> str:
    """The distinct values of ``key`` among rows ("de"/"group" for rows written before they were kept)."""
    return ",".join(sorted({str(r.get(key) or default) for r in rows})) if rows else ""


def first_success_queries(row: Mapping[str, Any]) -> int | None:
    """The query index at which a row first succeeded (None if it never did)."""
    if row.get("first_success_query") is not None:
        return int(row["first_success_query"])
    if row.get("outcome") == Outcome.SUCCESS:  # rows written before the index was kept
        return int(row.get("queries") or 0)
    return None


def not_top1_true(rows: Sequence[Mapping[str, Any]], model: Mapping[str, Any] | None) -> int | None:
    """How many rows' initial top-1 class is outside their true group (None without the model's classes)."""
    classes = list((model or {}).get("classes") or [])
    if not classes:
        return None
    groups = {
        Group.MELANOMA: set((model or {}).get("melanoma_classes") or ["mel"]),
        Group.BENIGN: set((model or {}).get("benign_classes") or ["nv"]),
    }
    count = 0
    for r in rows:
        probs = r.get("initial_probs") or []
        if len(probs) == len(classes):
            top = classes[int(np.argmax(probs))]
            count += top not in groups.get(Group(r.get("true_group") or Group.MELANOMA), set())
    return count


def summarize_rows(
    rows: Sequence[Mapping[str, Any]], model: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One summary dict per attack (sorted by name) from store rows (``model``: run.json's model
    description, for counting images that were not top-1 of their true group)."""
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
                "p90_queries_success": _percentile([r["queries"] for r in by[Outcome.SUCCESS]], 90),
                "median_first_success_query": _median(
                    [q for r in attempted if (q := first_success_queries(r)) is not None]
                ),
                "search": _labels(attempted, "search", "de") if not _gradient(attack) else "",
                "criterion": _labels(attempted, "criterion", "group"),
                "not_top1_true": not_top1_true(attempted, model),
            }
        )
    return out


def _gradient(attack: str) -> bool:
    return attack in ("fgsm", "pgd")


def query_budgets(max_queries: int) -> list[int]:
    """Budgets 1, 2, 5, 10, 20, 50, ... up to and including ``max_queries``."""
    out: list[int] = []
    base = 1
    while base <= max_queries:
        out.extend(b for b in (base, 2 * base, 5 * base) if b <= max_queries)
        base *= 10
    if not out or out[-1] != max_queries:
        out.append(max(1, int(max_queries)))
    return out


def query_curves(
    rows: Sequence[Mapping[str, Any]], budgets: Sequence[int] | None = None
) -> dict[str, dict[str, Any]]:
    """attack -> success rate against query budget, with Wilson 95% bands, over attempted rows."""
    out: dict[str, dict[str, Any]] = {}
    for attack in sorted({r["attack"] for r in rows}):
        attempted = [
            r for r in rows if r["attack"] == attack and r["outcome"] in (Outcome.SUCCESS, Outcome.FAILURE)
        ]
        if not attempted:
            continue
        firsts = [first_success_queries(r) for r in attempted]
        top = max([int(r.get("queries") or 1) for r in attempted] + [q or 1 for q in firsts])
        bs = list(budgets) if budgets is not None else query_budgets(top)
        n = len(attempted)
        ks = [sum(1 for q in firsts if q is not None and q <= b) for b in bs]
        cis = [wilson_ci(k, n) for k in ks]
        hits = [q for q in firsts if q is not None]
        out[attack] = {
            "search": _labels(attempted, "search", "de"),
            "criterion": _labels(attempted, "criterion", "group"),
            "attempted": n,
            "budgets": bs,
            "successes": ks,
            "success_rate": [k / n for k in ks],
            "ci_low": [c[0] for c in cis],
            "ci_high": [c[1] for c in cis],
            "median_queries_success": _median(hits),
            "p90_queries_success": _percentile(hits, 90),
        }
    return out


def plot_query_curves(curves: Mapping[str, Mapping[str, Any]], path: Path, title: str = "") -> None:
    """Success rate against query budget (log axis), one line per attack/search, Wilson 95% bands."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for name, c in curves.items():
        label = f"{name} ({c['search']})" if c.get("search") else name
        med = c.get("median_queries_success")
        if isinstance(med, float) and math.isfinite(med):
            label += f": median {med:.0f}, p90 {c['p90_queries_success']:.0f} q/success"
        line = ax.step(c["budgets"], c["success_rate"], where="post", label=label)[0]
        ax.fill_between(
            c["budgets"], c["ci_low"], c["ci_high"], step="post", alpha=0.15, color=line.get_color()
        )
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("query budget (images scored, initial prediction included)", fontsize=8)
    ax.set_ylabel("success rate (Wilson 95% band)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    if curves:
        ax.legend(fontsize=6, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


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
    table = summarize_rows(rows, model)
    out = Path(out_dir) if out_dir is not None else run_dir / "summary"
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path, json_path = out / "summary.csv", out / "heatmap.png", out / "summary.json"
    queries_path = out / "queries.png"
    write_csv(table, csv_path)
    curves = query_curves(rows)
    plot_query_curves(curves, queries_path, title=f"{model.get('name', 'model')}: success against queries")
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
        "query_curves": {a: {k: _json_safe(v) for k, v in c.items()} for a, c in curves.items()},
        "files": {
            "csv": str(csv_path),
            "heatmap": str(png_path),
            "queries": str(queries_path),
            "json": str(json_path),
        },
    }
    atomic_write_json(json_path, {**summary, "run_info": info})
    return summary
