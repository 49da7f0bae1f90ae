"""One self-contained HTML report from evaluation, perturbation and attack runs.

Figures are matplotlib PNGs embedded as base64 ``data:`` URIs; the CSS is inline; the page loads
nothing from anywhere, so it opens offline and can be attached to an e-mail. Every piece of text
that comes from files (model names, image ids, CSV cells) is escaped with :func:`html.escape`.

The report is its registered sections (:data:`REPORT_SECTIONS`, entry-point group
``dermadv.report_sections``), in the order of their ``order`` metadata. A section is a function
``section(runs, context) -> str | None`` taking every run given to the report and a
:class:`ReportContext` (the runs by kind, their attack rows, the reference rows, the options) and
returning an HTML fragment (text from files escaped with :func:`esc`; figures with :func:`img_tag`)
or None when it has nothing to show (then it is left out)::

    @REPORT_SECTIONS.register("calibration", title="Calibration", order=35)
    def calibration_section(runs: Sequence[Run], context: ReportContext) -> str | None: ...

The built-in sections: summary (the first screen, :mod:`dermadv.report.first_screen`), overview,
metrics, roc, training, perturbation, attacks, heatmap, transfer, examples, explanations, provenance.
A section with nothing to show (no run of its kind) is left out, not drawn empty.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dermadv.errors import DataError, DermadvError
from dermadv.fileio import atomic_write_text
from dermadv.perceptual import JND_DELTA_E, below_jnd, row_distance
from dermadv.registry import Registry
from dermadv.report import figures
from dermadv.report.runs import Run, detect_run, find_paths, read_history, read_metrics, read_predictions
from dermadv.vocab import Group, Outcome

#: Report sections: name -> ``section(runs, context) -> str | None``; metadata ``title`` and ``order``.
REPORT_SECTIONS: Registry[Callable[..., str | None]] = Registry("report section")

#: Where a section without an ``order`` goes: after the built-ins.
DEFAULT_ORDER = 1000


def registered_sections() -> list[tuple[str, str, Callable[..., str | None]]]:
    """(name, title, function) of every registered section, in report order (ties: registration order)."""
    entries = list(REPORT_SECTIONS.entries())
    ranked = sorted(
        range(len(entries)), key=lambda i: (float(entries[i].meta.get("order", DEFAULT_ORDER)), i)
    )
    return [(e.name, str(e.meta.get("title") or e.name), e.obj) for e in (entries[i] for i in ranked)]


class _SectionList(Sequence[tuple[str, str]]):
    """``(key, title)`` of the registered sections in report order: a live view of REPORT_SECTIONS."""

    def _items(self) -> list[tuple[str, str]]:
        return [(name, title) for name, title, _ in registered_sections()]

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - Sequence protocol (int or slice)
        return self._items()[index]

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items())

    def __repr__(self) -> str:
        return f"SECTIONS({self._items()!r})"


#: ``(key, title)`` of every section in report order (plugins included), e.g. ``("roc", "ROC curves")``.
SECTIONS: Sequence[tuple[str, str]] = _SectionList()
METRIC_KEYS: tuple[str, ...] = ("accuracy", "sensitivity", "specificity", "auc")
DIFFERENCE_ATTACKS = frozenset({"pixel", "fgsm", "pgd"})  # show an amplified difference image

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1100px;
padding:1.2em 2em;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #345;padding-bottom:.2em}
h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccd;padding-bottom:.15em;color:#234}
h3{font-size:1.05em;color:#345}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.86em}
th,td{border:1px solid #ccd;padding:.25em .55em;text-align:right;vertical-align:top}
th{background:#eef2f7}td.l,th.l{text-align:left}
tr.ref td{background:#fbf8ee;font-style:italic}tr.base td{background:#f3f3f3;font-weight:600}
.warn{background:#fff3cd;border:1px solid #e0b84a;padding:.7em 1em;border-radius:4px;margin:1em 0}
.note{color:#555;font-size:.9em}.empty{color:#777;font-style:italic}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #dde}
figcaption{font-size:.85em;color:#444}code{background:#f2f2f2;padding:0 .25em}
nav a{margin-right:.9em;font-size:.9em}
details pre{font-size:.75em;overflow-x:auto;background:#f7f7f7;padding:.6em}
#summary{background:#f6f9fc;border:1px solid #ccd;border-radius:6px;padding:.2em 1.2em .6em}
#summary h3{margin:.8em 0 .2em}#summary li{margin:.25em 0}a.num{color:#0b4f8a;font-weight:600}
.tag{font-size:.75em;background:#fff3cd;border:1px solid #e0b84a;border-radius:3px;padding:0 .4em}
@media print{nav{display:none}section{break-inside:auto}figure{break-inside:avoid}
body{max-width:none;padding:0}h2{break-after:avoid}}
"""


def esc(value: Any) -> str:
    """HTML-escape any value as text."""
    return html.escape("" if value is None else str(value), quote=True)


def img_tag(png: bytes, alt: str, caption: str | None = None) -> str:
    """A <figure> with the PNG embedded as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _ci(entry: Any) -> str:
    """'0.812 (0.771–0.848)' from a binary_metrics entry."""
    if not isinstance(entry, dict):
        return _fmt(entry)
    s = _fmt(entry.get("value"))
    if entry.get("ci_low") is not None and entry.get("ci_high") is not None:
        s += f" ({_fmt(entry['ci_low'])}–{_fmt(entry['ci_high'])})"
    return s


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    left: int = 1,
    row_classes: Sequence[str] | None = None,
) -> str:
    """A simple table; the first ``left`` columns are left-aligned; cells are escaped."""
    h = "".join(f'<th class="{"l" if i < left else ""}">{esc(c)}</th>' for i, c in enumerate(header))
    body = []
    for k, r in enumerate(rows):
        cls = f' class="{esc(row_classes[k])}"' if row_classes and row_classes[k] else ""
        cells = "".join(f'<td class="{"l" if i < left else ""}">{esc(c)}</td>' for i, c in enumerate(r))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# ----- reference rows ---------------------------------------------------------------------------
def read_reference_csv(path: str | Path) -> list[dict[str, Any]]:
    """Reference rows to show beside our models (e.g. published ISIC 2019 results).

    CSV with a ``model`` (or ``name``) column, any of ``accuracy, sensitivity, specificity, auc``
    (fractions, or percentages when > 1) and optional ``source``/``note``. Nothing is hard-coded:
    these numbers are exactly what the user supplies.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: reference CSV not found")
    with p.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip().lower() for c in (reader.fieldnames or [])]
        raw = list(reader)
    name_col = "model" if "model" in cols else "name" if "name" in cols else None
    if name_col is None:
        raise DataError(f"{p}: reference CSV needs a 'model' (or 'name') column; found {cols}")
    if not any(k in cols for k in METRIC_KEYS):
        raise DataError(f"{p}: reference CSV needs at least one of {', '.join(METRIC_KEYS)}; found {cols}")
    out = []
    for line, r in enumerate(raw, start=2):
        r = {(k or "").strip().lower(): (v or "").strip() for k, v in r.items()}
        row: dict[str, Any] = {"model": r[name_col], "source": r.get("source") or r.get("note") or ""}
        for k in METRIC_KEYS:
            v = r.get(k, "")
            if v in ("", "-", "na", "NA"):
                row[k] = None
                continue
            try:
                x = float(v.rstrip("%"))
            except ValueError:
                raise DataError(f"{p}, line {line}: {k}={v!r} is not a number") from None
            row[k] = x / 100 if x > 1 or v.endswith("%") else x
            if not 0 <= row[k] <= 1:
                raise DataError(f"{p}, line {line}: {k}={v!r} is outside 0..1 (or 0..100%)")
        out.append(row)
    return out


# ----- sections ---------------------------------------------------------------------------------
@dataclass
class ReportContext:
    """What a section may use besides the runs: runs by kind, attack rows, references, options."""

    runs: list[Run]
    references: list[dict[str, Any]] = field(default_factory=list)
    title: str = "dermadv report"
    notes: Sequence[str] = ()
    synthetic: bool = False
    examples_per_attack: int = 2
    _attack_rows: dict[Path, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def of_kind(self, kind: str) -> list[Run]:
        """The runs of one kind: evaluation, training, perturbation or attack."""
        return [r for r in self.runs if kind in r.kinds]

    @property
    def evaluations(self) -> list[Run]:
        return self.of_kind("evaluation")

    @property
    def trainings(self) -> list[Run]:
        return self.of_kind("training")

    @property
    def perturbations(self) -> list[Run]:
        return self.of_kind("perturbation")

    @property
    def attacks(self) -> list[Run]:
        return self.of_kind("attack")

    @property
    def rows_by_run(self) -> dict[Path, list[dict[str, Any]]]:
        """Result rows of every attack run (read once), by run folder."""
        for run in self.attacks:
            if run.path not in self._attack_rows:
                self._attack_rows[run.path] = _attack_rows(run)
        return self._attack_rows


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{esc(key)}"><h2>{esc(title)}</h2>\n{body}\n</section>'


#: How a built-in section says it has nothing to show; such sections are left out of the report.
EMPTY_MARK = '<p class="empty">'


def _empty(what: str) -> str:
    return f"{EMPTY_MARK}No {esc(what)} given to this report.</p>"


def _metrics_section(runs: list[Run], references: list[dict[str, Any]]) -> str:
    rows, classes = [], []
    for run in runs:
        m = read_metrics(run)
        if m is None:
            continue
        conf = m.get("confusion", {})
        rows.append(
            [
                run.label,
                m.get("n", "–"),
                *[_ci(m.get(k)) for k in METRIC_KEYS],
                _ci(m.get("auc_raw_p_mel")),  # absent in older metrics.json: "–"
                f"TP {conf.get('tp', '–')} FN {conf.get('fn', '–')} FP {conf.get('fp', '–')} "
                f"TN {conf.get('tn', '–')}",
                "",
            ]
        )
        classes.append("")
    for ref in references:
        rows.append([ref["model"], "–", *[_fmt(ref.get(k)) for k in METRIC_KEYS], "–", "–", ref["source"]])
        classes.append("ref")
    if not rows:
        return _empty("evaluation runs (metrics.json) or reference rows")
    method = ""
    for run in runs:
        m = read_metrics(run)
        if m:
            methods = {k: m[k].get("method") for k in METRIC_KEYS if isinstance(m.get(k), dict)}
            method = "; ".join(f"{k}: {v}" for k, v in methods.items() if v)
            break
    return (
        _table(
            [
                "model",
                "n",
                "accuracy (95% CI)",
                "sensitivity (95% CI)",
                "specificity (95% CI)",
                "AUC melanoma vs naevus (95% CI)",
                "ISIC scorer's MEL AUC (raw P(MEL)) (95% CI)",
                "confusion at 0.5",
                "source",
            ],
            rows,
            row_classes=classes,
        )
        + '<p class="note">AUC melanoma vs naevus ranks p_mel/(p_mel+p_ben) (the headline); the ISIC '
        "scorer's MEL AUC ranks raw P(MEL), as the official ISIC 2019 scorer does; for a binary mel/nv "
        "model the two coincide. Both on the same melanoma/naevus cases.</p>"
        + f'<p class="note">Melanoma decision: melanoma score p_mel/(p_mel+p_ben) ≥ 0.5. CI methods: '
        f"{esc(method or 'as recorded in metrics.json')}. Shaded italic rows are reference results supplied "
        "by the user (--reference), shown as given, not recomputed.</p>"
    )


def _roc_section(runs: list[Run]) -> str:
    curves = []
    for run in runs:
        pred = read_predictions(run)
        if pred is None:
            continue
        curves.append(figures.roc_curve_from_metrics(run.label, pred[0], pred[1], read_metrics(run)))
    if not curves:
        return _empty("evaluation runs with predictions.csv")
    return img_tag(
        figures.roc_plot(curves), "ROC curves", "All evaluated models on one plot (melanoma vs naevus)."
    )


def _training_section(runs: list[Run]) -> str:
    parts = []
    for run in runs:
        h = read_history(run)
        if h:
            parts.append(
                img_tag(
                    figures.history_plot(h, title=f"Training history: {run.label}"),
                    f"training history {run.label}",
                )
            )
    return "".join(parts) or _empty("training histories (history.json/csv)")


def _perturbation_section(runs: list[Run]) -> str:
    parts = []
    for run in runs:
        data = json.loads((run.path / "perturbation.json").read_text(encoding="utf-8"))
        rows = data["rows"]
        table = [
            [
                r["label"],
                r["perturbation"],
                r["n"],
                r["correct"],
                r["false_negatives"],
                r["false_positives"],
                f"{float(r['accuracy']):.3f}",
                ""
                if r["perturbation"] == "none"
                else f"{float(r['delta_accuracy']):+.3f} ({float(r['delta_ci_low']):+.3f} to "
                f"{float(r['delta_ci_high']):+.3f})",
                r["flipped"],
                r.get("mcnemar_p", ""),
            ]
            for r in rows
        ]
        parts.append(f"<h3>{esc(run.label)}</h3>")
        parts.append(
            _table(
                [
                    "perturbation",
                    "spec",
                    "n",
                    "correct",
                    "false neg. (mel→nv)",
                    "false pos. (nv→mel)",
                    "accuracy",
                    "change (95% CI)",
                    "predictions flipped",
                    "McNemar p",
                ],
                table,
                left=2,
                row_classes=["base" if r["perturbation"] == "none" else "" for r in rows],
            )
        )
        parts.append(
            img_tag(
                figures.perturbation_bar_plot(rows, title=f"Perturbation sweep: {run.label}"),
                f"perturbation bar plot {run.label}",
            )
        )
        parts.append(
            f'<p class="note">Change: accuracy after the perturbation minus unmodified accuracy on '
            f"the same images; CI: {esc(data.get('ci_method', ''))}. McNemar: exact test on the "
            "discordant pairs.</p>"
        )
    return "".join(parts) or _empty("perturbation runs (dermadv perturb)")


def _attack_rows(run: Run) -> list[dict[str, Any]]:
    from dermadv.campaign.store import ResultsStore

    with ResultsStore(run.path, create=False) as store:
        return store.rows()


def _attack_model(run: Run) -> dict[str, Any]:
    return run.info.get("model_description") or run.info.get("model") or {}


def _attacks_section(runs: list[Run], rows_by_run: dict[Path, list[dict[str, Any]]]) -> str:
    from dermadv.campaign.summary import summarize_rows

    if not runs:
        return _empty("attack runs (dermadv attack)")
    summaries: dict[str, dict[str, dict[str, Any]]] = {}
    runs_by_label: dict[str, Run] = {}
    for run in runs:  # one column per run, even when two runs' labels coincide
        label = run.label if run.label not in summaries else f"{run.label} ({run.path})"
        summaries[label] = {s["attack"]: s for s in summarize_rows(rows_by_run[run.path], _attack_model(run))}
        runs_by_label[label] = run
    attacks = sorted({a for s in summaries.values() for a in s})
    labels = list(summaries)
    table = []
    for a in attacks:
        cells: list[Any] = [a]
        for label in labels:
            s = summaries[label].get(a)
            if s is None or not s["attempted"]:
                cells.append("not run" if s is None else f"0 attempted ({s['misclassified']} misclassified)")
                continue
            cells.append(
                f"{s['successful']}/{s['attempted']} = {100 * s['success_rate']:.1f}% "
                f"({100 * s['ci_low']:.1f}–{100 * s['ci_high']:.1f}%)"
                + _invisible_cell(runs_by_label[label], rows_by_run[runs_by_label[label].path], a)
            )
        table.append(cells)
    misc = [
        ["images given", *[max((s["images"] for s in summaries[lb].values()), default=0) for lb in labels]],
        [
            "misclassified before attack (not attacked)",
            *[max((s["misclassified"] for s in summaries[lb].values()), default=0) for lb in labels],
        ],
    ]
    misc += _query_rows(summaries, attacks, labels)
    grouped = {lb: {a: (s["successful"], s["attempted"]) for a, s in summaries[lb].items()} for lb in labels}
    return (
        _table(["attack", *labels], table + misc)
        + '<p class="note">Success = a melanoma first classified correctly is called benign after the attack '
        "(successes / attempted, Wilson 95% CI; the criterion row says which definition judged it: group = "
        "P(benign group) &gt; P(melanoma group), top1 = top-1 class leaves melanoma). Images the model "
        "already misclassified are not attacked. One column per model (the study's Supplementary Table "
        "2). <em>Below JND</em>: successes whose "
        f"mean CIEDE2000 colour difference from the original is under {JND_DELTA_E} (the just-noticeable "
        "difference), out of the same attempts, Wilson 95% CI: the attacks a reader would not see.</p>"
        + img_tag(figures.success_bar_plot(grouped), "attack success rates")
        + _query_curves(runs, rows_by_run)
    )


def _query_rows(
    summaries: dict[str, dict[str, dict[str, Any]]], attacks: list[str], labels: list[str]
) -> list[list[Any]]:
    """Rows of the attack table: queries per success (median, 90th percentile), search and criterion per
    attack, and how many attacked images were not top-1 of their true group to begin with."""

    def cell(s: dict[str, Any] | None, key: str) -> str:
        v = None if s is None else s.get(key)
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0f}"

    rows: list[list[Any]] = []
    for a in attacks:
        rows.append(
            [
                f"{a}: queries per success, median / p90",
                *[
                    f"{cell(summaries[lb].get(a), 'median_queries_success')} / "
                    f"{cell(summaries[lb].get(a), 'p90_queries_success')}"
                    for lb in labels
                ],
            ]
        )
        rows.append(
            [
                f"{a}: search, criterion",
                *[
                    ", ".join(
                        str((summaries[lb].get(a) or {}).get(k) or "-") for k in ("search", "criterion")
                    )
                    for lb in labels
                ],
            ]
        )
    rows.append(
        [
            "attacked images not top-1 of their true group at the start",
            *[max((s.get("not_top1_true") or 0 for s in summaries[lb].values()), default=0) for lb in labels],
        ]
    )
    return rows


def _query_curves(runs: list[Run], rows_by_run: dict[Path, list[dict[str, Any]]]) -> str:
    """Success rate against query budget (Wilson bands) per attack and search, one figure per run."""
    from dermadv.campaign.summary import plot_query_curves, query_curves

    parts = []
    for run in runs:
        curves = query_curves(rows_by_run[run.path])
        if not curves:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "queries.png"
            plot_query_curves(curves, png, title=f"{run.label}: success against queries")
            parts.append(
                img_tag(
                    png.read_bytes(),
                    f"success against queries {run.label}",
                    f"{run.label}: share of attacked images whose first success came within each query "
                    "budget (initial prediction included), Wilson 95% bands.",
                )
            )
    return "".join(parts)


def _invisible_cell(run: Run, rows: list[dict[str, Any]], attack: str) -> str:
    """'; below JND 2/5 = 40.0% (…)' for one attack of one run: successes below the visibility threshold."""
    from dermadv.metrics import wilson_ci

    attempted = [
        r for r in rows if r["attack"] == attack and r["outcome"] in (Outcome.SUCCESS, Outcome.FAILURE)
    ]
    flags = [below_jnd(row_distance(run.path, r)) for r in attempted if r["outcome"] == Outcome.SUCCESS]
    if not attempted or any(f is None for f in flags):
        return ""
    k, n = sum(bool(f) for f in flags), len(attempted)
    lo, hi = wilson_ci(k, n)
    return f"; below JND {k}/{n} = {100 * k / n:.1f}% ({100 * lo:.1f}–{100 * hi:.1f}%)"


def _heatmap_section(runs: list[Run], rows_by_run: dict[Path, list[dict[str, Any]]]) -> str:
    from dermadv.campaign.summary import confidence_pairs, plot_heatmap

    parts = []
    for run in runs:
        pairs = confidence_pairs(rows_by_run[run.path], _attack_model(run))
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "heatmap.png"
            plot_heatmap(pairs, png, title=run.label)
            parts.append(
                img_tag(
                    png.read_bytes(),
                    f"confidence heat map {run.label}",
                    f"{run.label}: melanoma confidence before (x) and after (y) each attack, "
                    "attacked images only (the study's Figure 1n).",
                )
            )
    return "".join(parts) or _empty("attack runs")


def _load_png(path: Path | None) -> np.ndarray | None:
    if path is None or not path.exists():
        return None
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _examples_section(runs: list[Run], rows_by_run: dict[Path, list[dict[str, Any]]], per_attack: int) -> str:
    parts = []
    for run in runs:
        examples = []
        rows = rows_by_run[run.path]
        for attack in sorted({r["attack"] for r in rows}):
            rs = [r for r in rows if r["attack"] == attack and r.get("adversarial_path")]
            rs.sort(
                key=lambda r: (
                    r["outcome"] != Outcome.SUCCESS,
                    -(r.get("initial_conf") or 0) + (r.get("final_conf") or 0),
                )
            )
            for r in rs[:per_attack]:
                orig = _load_png(run.path / r["original_path"]) if r.get("original_path") else None
                adv = _load_png(run.path / r["adversarial_path"])
                if orig is None or adv is None or orig.shape != adv.shape:
                    continue
                mel_before = _mel_conf(r, r.get("initial_probs"), r.get("initial_conf"), run)
                mel_after = _mel_conf(r, r.get("final_probs"), r.get("final_conf"), run)
                examples.append(
                    figures.AttackExample(
                        r["image_id"],
                        attack,
                        orig,
                        adv,
                        mel_before,
                        mel_after,
                        r["outcome"],
                        show_difference=attack in DIFFERENCE_ATTACKS,
                        distance=row_distance(run.path, r),
                    )
                )
        if examples:
            parts.append(
                img_tag(
                    figures.example_grid(examples, title=f"Example attacks: {run.label}"),
                    f"example attacks {run.label}",
                    "Left: unmodified; middle: adversarial; right (pixel-space attacks): signed "
                    "difference, amplified so the largest change reaches black or white (grey = "
                    "unchanged; when few pixels changed, as in the few-pixel attack, they are circled in "
                    "red). Captions: melanoma confidence p_mel/(p_mel+p_ben); how visible the change is: "
                    f"mean and 95th-percentile CIEDE2000 colour difference (ΔE00; below {JND_DELTA_E} is "
                    "the just-noticeable difference) and SSIM (1 = identical).",
                )
            )
    return "".join(parts) or _empty("attack runs with saved images")


def _mel_conf(row: dict[str, Any], probs: Any, conf: Any, run: Run) -> float:
    from dermadv.campaign.summary import melanoma_scores

    model = _attack_model(run)
    if probs:
        v = melanoma_scores(
            probs,
            model.get("classes", []),
            model.get("melanoma_classes", ["mel"]),
            model.get("benign_classes", ["nv"]),
        )
        if math.isfinite(v):
            return v
    if conf is None:
        return float("nan")
    return float(conf) if row.get("true_group", Group.MELANOMA) == Group.MELANOMA else 1 - float(conf)


def _provenance_section(runs: list[Run]) -> str:
    if not runs:
        return _empty("runs")
    parts = []
    for run in runs:
        parts.append(
            f"<details><summary>{esc(run.label)} — {esc(', '.join(run.kinds))} — "
            f"<code>{esc(run.path)}</code></summary><pre>{esc(json.dumps(run.info, indent=2, default=str))}"
            "</pre></details>"
        )
    return "".join(parts)


# ----- the built-in sections, registered in report order ------------------------------------------
@REPORT_SECTIONS.register("overview", title="Overview", order=10)
def overview_section(runs: Sequence[Run], context: ReportContext) -> str:
    """Synthetic-data warning, the runs given, the user's notes, when and by what it was made."""
    overview: list[str] = []
    if context.synthetic:
        real = [r for r in runs if not runs_are_synthetic([r])]
        which = (
            "The runs on synthetic images: "
            + ", ".join(esc(r.label) for r in runs if r not in real)
            + ". The other runs ("
            + ", ".join(esc(r.label) for r in real)
            + ") are on real images. "
            if real
            else "These results were computed on synthetic images. "
        )
        overview.append(
            f'<div class="warn"><strong>Synthetic data.</strong> {which}Synthetic images are procedurally '
            "generated (dermadv.synthetic), not dermoscopic photographs: results on them show that the "
            "pipeline runs, not how any real classifier behaves. Run "
            "<code>dermadv demo --data /path/to/ISIC_2019</code> "
            "(or the examples/ scripts) on real ISIC data for meaningful numbers.</div>"
        )
    overview.append(
        _table(
            ["run", "kinds", "model", "folder"],
            [[r.path.name, ", ".join(r.kinds), r.model_name, str(r.path)] for r in runs],
        )
    )
    overview.extend(f"<p>{esc(n)}</p>" for n in context.notes)
    overview.append(
        f'<p class="note">Generated {esc(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))} by '
        f"dermadv {esc(_version())}.</p>"
    )
    return "".join(overview)


@REPORT_SECTIONS.register("metrics", title="Model performance", order=20)
def metrics_section(runs: Sequence[Run], context: ReportContext) -> str:
    return _metrics_section(context.evaluations, context.references)


@REPORT_SECTIONS.register("roc", title="ROC curves", order=30)
def roc_section(runs: Sequence[Run], context: ReportContext) -> str:
    return _roc_section(context.evaluations)


@REPORT_SECTIONS.register("training", title="Training", order=40)
def training_section(runs: Sequence[Run], context: ReportContext) -> str:
    return _training_section(context.trainings)


@REPORT_SECTIONS.register("perturbation", title="Systematic perturbations", order=50)
def perturbation_section(runs: Sequence[Run], context: ReportContext) -> str:
    return _perturbation_section(context.perturbations)


@REPORT_SECTIONS.register("attacks", title="Adversarial attack success", order=60)
def attacks_section(runs: Sequence[Run], context: ReportContext) -> str:
    return _attacks_section(context.attacks, context.rows_by_run)


@REPORT_SECTIONS.register("heatmap", title="Melanoma confidence before and after attack", order=70)
def heatmap_section(runs: Sequence[Run], context: ReportContext) -> str:
    return _heatmap_section(context.attacks, context.rows_by_run)


@REPORT_SECTIONS.register("examples", title="Example attacks", order=80)
def examples_section(runs: Sequence[Run], context: ReportContext) -> str:
    return _examples_section(context.attacks, context.rows_by_run, context.examples_per_attack)


@REPORT_SECTIONS.register("provenance", title="Provenance", order=90)
def provenance_section(runs: Sequence[Run], context: ReportContext) -> str:
    return _provenance_section(list(runs))


def _run_section(
    key: str, section: Callable[..., str | None], runs: list[Run], context: ReportContext
) -> str | None:
    """One section's HTML (None: absent); a plugin section that fails is named in the error."""
    entry = REPORT_SECTIONS.entry(key)
    try:
        body = section(runs, context)
    except DermadvError:
        raise
    except Exception as exc:
        if entry.source == "dermadv":
            raise
        raise DermadvError(
            f"report section {key!r} (from {entry.source}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    if body is not None and not isinstance(body, str):
        raise DermadvError(
            f"report section {key!r} (from {entry.source}) returned {type(body).__name__}, "
            "not an HTML string or None"
        )
    return body


def runs_are_synthetic(runs: Sequence[Run]) -> bool:
    """Whether any run was made on data generated by :mod:`dermadv.synthetic`."""
    from dermadv.synthetic import is_synthetic

    for run in runs:
        if run.info.get("synthetic") or run.info.get("settings", {}).get("synthetic"):
            return True
        for p in find_paths(run.info):
            if is_synthetic(p if p.is_dir() else p.parent):
                return True
    return False


def build_report(
    runs: Sequence[str | Path],
    out: str | Path = "report.html",
    reference_csv: str | Path | None = None,
    title: str = "dermadv report",
    notes: Sequence[str] = (),
    synthetic: bool | None = None,
    examples_per_attack: int = 2,
) -> Path:
    """Write one self-contained HTML report about ``runs`` to ``out`` (atomically); returns the path.

    ``synthetic``: mark the report as made on synthetic data (None: detect from the runs' data
    paths). ``notes``: extra paragraphs for the overview (plain text, escaped).
    """
    if not runs:
        raise DataError("give at least one run folder to report on")
    parsed = [detect_run(r) for r in runs]
    references = read_reference_csv(reference_csv) if reference_csv else []
    if synthetic is None:
        synthetic = runs_are_synthetic(parsed)

    context = ReportContext(
        parsed,
        references=references,
        title=title,
        notes=notes,
        synthetic=synthetic,
        examples_per_attack=examples_per_attack,
    )
    context.rows_by_run  # noqa: B018 - read every attack run once, before any section needs it
    parts = []
    for key, section_title, section in registered_sections():
        body = _run_section(key, section, parsed, context)
        if body is not None and not body.startswith(EMPTY_MARK):  # nothing to show: left out
            parts.append((key, section_title, body))
    nav = "".join(f'<a href="#{esc(k)}">{esc(t)}</a>' for k, t, _ in parts)
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1><nav>{nav}</nav>\n"
        + "\n".join(_section(k, t, b) for k, t, b in parts)
        + "\n</body></html>\n"
    )
    out = Path(out)
    atomic_write_text(out, doc)
    return out


def _version() -> str:
    import dermadv

    return dermadv.__version__


from dermadv.report import defence_section as _defence_section  # noqa: E402,F401  (registers it)
from dermadv.report import explain_section as _explain_section  # noqa: E402,F401  (registers it)
from dermadv.report import first_screen as _first_screen  # noqa: E402,F401  (registers it)
from dermadv.report import robustness_section as _robustness_section  # noqa: E402,F401  (registers it)
from dermadv.report import transfer_section as _transfer_section  # noqa: E402,F401  (registers it)
