"""Matplotlib figures for reports, each returned as PNG bytes (Agg backend, no display needed)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def perturbation_bar_plot(rows: Sequence[dict[str, Any]], title: str = "Perturbation sweep") -> bytes:
    """Accuracy per perturbation (bars; unmodified first) with the paired 95% CI of the change as
    error bars, and stacked false negatives / false positives beside it."""
    plt = _plt()
    labels = [r["label"] for r in rows]
    acc = np.array([float(r["accuracy"]) for r in rows])
    base = acc[0]
    lo = np.array(
        [
            base + float(r["delta_ci_low"]) if r.get("delta_ci_low") is not None else a
            for r, a in zip(rows, acc, strict=True)
        ]
    )
    hi = np.array(
        [
            base + float(r["delta_ci_high"]) if r.get("delta_ci_high") is not None else a
            for r, a in zip(rows, acc, strict=True)
        ]
    )
    fn = np.array([int(r["false_negatives"]) for r in rows])
    fp = np.array([int(r["false_positives"]) for r in rows])
    y = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(11, 0.32 * len(rows) + 1.6), sharey=True, gridspec_kw={"width_ratios": [3, 2]}
    )
    colors = ["#555555"] + ["#c0392b" if a < base else "#2e86c1" if a > base else "#95a5a6" for a in acc[1:]]
    ax1.barh(y, acc, color=colors, alpha=0.85)
    err = [np.clip(acc[1:] - lo[1:], 0, None), np.clip(hi[1:] - acc[1:], 0, None)]
    ax1.errorbar(acc[1:], y[1:], xerr=err, fmt="none", ecolor="black", capsize=2, lw=0.8)
    ax1.axvline(base, color="black", ls="--", lw=0.8)
    for yi, a in zip(y, acc, strict=True):
        ax1.text(1.01, yi, f"{a:.3f}", va="center", fontsize=7)
    ax1.set_yticks(y, labels, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlim(0, 1.1)
    ax1.set_xlabel("accuracy (error bars: unmodified accuracy + paired 95% CI of the change)")
    ax2.barh(y, fn, color="#e67e22", label="false negatives (melanoma → naevus)")
    ax2.barh(y, fp, left=fn, color="#8e44ad", label="false positives (naevus → melanoma)")
    ax2.set_xlabel("errors")
    ax2.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


@dataclass(frozen=True)
class OperatingPoint:
    """Where a model's decision threshold puts it on its ROC curve."""

    threshold: float
    sensitivity: float
    specificity: float


@dataclass
class RocCurve:
    """Inputs of one ROC curve: a label, true labels (1 = melanoma) and melanoma scores; optionally
    the AUC (computed from the scores if not given), its 95% CI and the operating point to mark."""

    label: str
    y_true: np.ndarray
    scores: np.ndarray
    auc: float | None = None
    auc_ci: tuple[float, float] | None = None
    operating_point: OperatingPoint | None = None


def _metric_value(metrics: Mapping[str, Any], key: str, field: str = "value") -> float | None:
    entry = metrics.get(key)
    value = entry.get(field) if isinstance(entry, Mapping) else None
    return float(value) if isinstance(value, (int, float)) else None


def roc_curve_from_metrics(
    label: str, y_true: np.ndarray, scores: np.ndarray, metrics: Mapping[str, Any] | None
) -> RocCurve:
    """A :class:`RocCurve` with the AUC, its CI and the operating point read from a
    :func:`dermadv.metrics.binary_metrics` dict (what is missing there is left out of the figure)."""
    m = metrics or {}
    lo, hi = _metric_value(m, "auc", "ci_low"), _metric_value(m, "auc", "ci_high")
    sens, spec = _metric_value(m, "sensitivity"), _metric_value(m, "specificity")
    threshold = m.get("threshold")
    point = None
    if sens is not None and spec is not None and isinstance(threshold, (int, float)):
        point = OperatingPoint(float(threshold), sens, spec)
    return RocCurve(
        label,
        y_true,
        scores,
        auc=_metric_value(m, "auc"),
        auc_ci=(lo, hi) if lo is not None and hi is not None else None,
        operating_point=point,
    )


def _roc_legend(c: RocCurve, auc: float, n: int) -> str:
    ci = f", 95% CI {c.auc_ci[0]:.3f}-{c.auc_ci[1]:.3f}" if c.auc_ci is not None else ""
    return f"{c.label} (AUC {auc:.3f}{ci}, n={n})"


def roc_plot(curves: Sequence[RocCurve], title: str = "ROC curves") -> bytes:
    """ROC curves on one plot: AUC (and its 95% CI when given) in the legend, operating points marked.

    The one ROC figure of dermadv: the HTML report's (all models) and an evaluation's ``roc.png``.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5.2))
    for c in curves:
        y = np.asarray(c.y_true).astype(int)
        s = np.asarray(c.scores, dtype=float)
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, s)
        auc = c.auc if c.auc is not None else float(roc_auc_score(y, s))
        (line,) = ax.plot(fpr, tpr, lw=1.6, label=_roc_legend(c, auc, len(y)))
        op = c.operating_point
        if op is not None:
            ax.plot(
                [1 - op.specificity],
                [op.sensitivity],
                "o",
                color=line.get_color(),
                mec="black",
                ms=7,
                label=f"threshold {op.threshold:g}: sens {op.sensitivity:.2f}, spec {op.specificity:.2f}",
            )
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=0.8, label="chance")
    ax.set_xlabel("1 − specificity (naevi called melanoma)")
    ax.set_ylabel("sensitivity (melanomas detected)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    return _png(fig, dpi=120)


def history_plot(history: Sequence[dict[str, Any]], title: str = "Training history") -> bytes:
    """Loss and accuracy per epoch from a list of per-epoch dicts (keys as written by ``train``)."""
    plt = _plt()
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    keys = sorted({k for h in history for k, v in h.items() if k != "epoch" and isinstance(v, (int, float))})
    loss_keys = [k for k in keys if "loss" in k]
    skip = ("seconds", "lr", "time", "epoch_seconds")
    other = [k for k in keys if "loss" not in k and k not in skip and not k.endswith(("_ci_low", "_ci_high"))]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, ks, name in ((axes[0], loss_keys, "loss"), (axes[1], other, "metric")):
        for k in ks:
            ax.plot(epochs, [h.get(k, np.nan) for h in history], marker="o", ms=3, label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        if ks:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


@dataclass
class AttackExample:
    """One attack to show: unmodified and adversarial images (uint8) and melanoma confidences."""

    image_id: str
    attack: str
    original: np.ndarray
    adversarial: np.ndarray
    initial_conf: float
    final_conf: float | None
    outcome: str
    show_difference: bool = False
    #: dermadv.perceptual distance (delta_e_mean, delta_e_p95, ssim), shown under the adversarial image
    distance: Mapping[str, float] | None = None


def amplified_difference(original: np.ndarray, adversarial: np.ndarray) -> tuple[np.ndarray, float]:
    """Signed difference, amplified: mid-grey = unchanged, brighter/darker = channel raised/lowered,
    scaled so the largest change reaches 0 or 255. Returns (uint8 RGB image, amplification factor)."""
    d = adversarial.astype(np.int16) - original.astype(np.int16)
    peak = int(np.abs(d).max())
    factor = 127.0 / peak if peak else 1.0
    return np.clip(128 + d * factor, 0, 255).astype(np.uint8), factor


#: At most this many changed pixels are circled on a difference image (few-pixel attacks change 3; a
#: single pixel of a 299 px image is invisible in a report without a mark).
MAX_CIRCLED = 50


def changed_pixels(original: np.ndarray, adversarial: np.ndarray) -> np.ndarray:
    """(row, col) of every pixel where any channel differs: k x 2 int array."""
    return np.argwhere(np.any(original != adversarial, axis=-1))


def example_grid(examples: Sequence[AttackExample], title: str = "Example attacks") -> bytes:
    """Rows of (unmodified | adversarial | amplified difference for pixel-type attacks), captioned
    with the melanoma confidence before and after."""
    plt = _plt()
    ncols = 3 if any(e.show_difference for e in examples) else 2
    fig, axes = plt.subplots(len(examples), ncols, figsize=(2.6 * ncols, 2.75 * len(examples)), squeeze=False)
    for r, e in enumerate(examples):
        ax = axes[r]
        ax[0].imshow(e.original)
        ax[0].set_title(f"{e.image_id}\nunmodified: mel {e.initial_conf:.3f}", fontsize=7)
        ax[1].imshow(e.adversarial)
        final = "n/a" if e.final_conf is None else f"{e.final_conf:.3f}"
        seen = ""
        if e.distance:
            seen = (
                f"\nΔE00 mean {e.distance['delta_e_mean']:.2f} p95 {e.distance['delta_e_p95']:.2f}, "
                f"SSIM {e.distance['ssim']:.3f}"
            )
        ax[1].set_title(f"{e.attack} ({e.outcome})\nadversarial: mel {final}{seen}", fontsize=7)
        if ncols == 3:
            if e.show_difference:
                diff, factor = amplified_difference(e.original, e.adversarial)
                ax[2].imshow(diff)
                where = changed_pixels(e.original, e.adversarial)
                if 0 < len(where) <= MAX_CIRCLED:
                    ax[2].scatter(
                        where[:, 1], where[:, 0], s=160, facecolors="none", edgecolors="red", linewidths=1.2
                    )
                    ax[2].set_title(
                        f"{len(where)} pixel(s) changed (circled)\n"
                        f"difference ×{factor:.0f}, grey = unchanged",
                        fontsize=7,
                    )
                else:
                    ax[2].set_title(f"difference ×{factor:.0f}\n(grey = unchanged)", fontsize=7)
            else:
                ax[2].set_visible(False)
        for a in ax:
            a.set_xticks([])
            a.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (2.75 * len(examples))))
    return _png(fig)


def success_bar_plot(table: dict[str, dict[str, tuple[int, int]]], title: str = "Attack success") -> bytes:
    """Grouped bars: success rate per attack (groups) for each model (bars). ``table[model][attack]``
    is (successes, attacked)."""
    plt = _plt()
    models = list(table)
    attacks = sorted({a for m in table.values() for a in m})
    x = np.arange(len(attacks))
    w = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(attacks) + 2), 3.4))
    for k, m in enumerate(models):
        rates = [
            table[m][a][0] / table[m][a][1] if a in table[m] and table[m][a][1] else np.nan for a in attacks
        ]
        ax.bar(x + k * w - 0.4 + w / 2, rates, width=w, label=m)
    ax.set_xticks(x, attacks)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def robustness_flip_plot(rows: Sequence[Mapping[str, Any]], title: str = "Flip rate") -> bytes:
    """Flip rate per transform with its lesion-bootstrap 95% CI, and the fragile shares beside it."""
    plt = _plt()
    keys = [str(r["transform"]) for r in rows]
    y = np.arange(len(rows))
    rate = np.array([float(r["flip_rate"]) for r in rows])
    lo = np.array([float(r["flip_ci_low"]) for r in rows])
    hi = np.array([float(r["flip_ci_high"]) for r in rows])
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(10, 0.35 * len(rows) + 1.6), sharey=True, gridspec_kw={"width_ratios": [3, 2]}
    )
    ax1.barh(y, rate, color="#c0392b", alpha=0.8)
    ax1.errorbar(rate, y, xerr=[rate - lo, hi - rate], fmt="none", ecolor="black", capsize=2, lw=0.8)
    for yi, v in zip(y, rate, strict=True):
        ax1.text(min(v, 0.9) + 0.02, yi, f"{v:.1%}", va="center", fontsize=7)
    ax1.set_xlim(0, 1)
    ax1.set_yticks(y, keys)
    ax1.invert_yaxis()
    ax1.set_xlabel("flip rate: mean share of draws whose call changes (95% CI over lesions)")
    ax2.barh(y - 0.2, [float(r["fragile_any"]) for r in rows], height=0.4, color="#e67e22", label="any flip")
    ax2.barh(
        y + 0.2, [float(r["fragile_half"]) for r in rows], height=0.4, color="#8e44ad", label="> 50% flip"
    )
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("share of images (fragile)")
    ax2.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def robustness_where_plot(where: Mapping[str, Any], key: str) -> bytes:
    """Flip share of all draws against each parameter, and the 2-D map (when there is one)."""
    plt = _plt()
    curves = where.get("by_parameter", {})
    has_map = "map" in where
    n = len(curves) + (1 if has_map else 0)
    fig, axes = plt.subplots(1, max(n, 1), figsize=(3.2 * max(n, 1), 2.8), squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items(), strict=False):
        edges = np.asarray(c["edges"])
        mid = (edges[:-1] + edges[1:]) / 2
        share = np.array([np.nan if v is None else v for v in c["flip_share"]], dtype=float)
        ax.plot(mid, share, marker="o", color="#c0392b")
        ax.set_ylim(0, 1)
        ax.set_xlabel(name)
        ax.set_ylabel("flip share of draws")
    if has_map:
        m = where["map"]
        ax = axes[0][-1]
        share = np.array([[np.nan if v is None else v for v in row] for row in m["flip_share"]], dtype=float)
        mesh = ax.pcolormesh(m["x_edges"], m["y_edges"], share.T, vmin=0, vmax=1, cmap="Reds")
        ax.set_xlabel(m["x"])
        ax.set_ylabel(m["y"])
        fig.colorbar(mesh, ax=ax, label="flip share")
    fig.suptitle(f"Where flips happen: {key} ({where.get('n_draws', 0)} draws)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def robustness_figures(summary: Mapping[str, Any], title: str = "model") -> dict[str, bytes]:
    """The figures of a robustness run: ``flips`` and one ``where_<transform>`` per transform."""
    out: dict[str, bytes] = {}
    if summary.get("rows"):
        out["flips"] = robustness_flip_plot(
            summary["rows"], title=f"Flip rate under clinical variation: {title}"
        )
    for key, where in summary.get("where", {}).items():
        if where.get("by_parameter"):
            safe = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in key)
            out[f"where_{safe}"] = robustness_where_plot(where, key)
    return out
