"""The report's first screen: per model, the headline answer in words a clinician reads.

For every model in the report: how well it does on unmodified images (sensitivity and specificity with
95% CIs), which attacks changed its correct melanoma calls and how often (and how many of those
changes were below the just-noticeable colour difference), how often routine changes in image
capture flip its calls, how often adversarial images found on *other* models fool it, and, where
defended variants were evaluated, the best defence and what it costs on unmodified images. Every
number links to the section that supports it. Facts the report does not hold are not mentioned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dermadv.perceptual import JND_DELTA_E, below_jnd, row_distance
from dermadv.report.html import REPORT_SECTIONS, ReportContext, esc, runs_are_synthetic
from dermadv.report.runs import Run, read_json, read_metrics
from dermadv.vocab import Outcome

ATTACK_WORDS: dict[str, str] = {
    "color": "a colour-balance change",
    "rotation": "a rotation and shift",
    "pixel": "a change of a few pixels",
    "fgsm": "a faint pixel pattern (FGSM)",
    "pgd": "a faint pixel pattern (PGD)",
}


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _link(section: str, text: str) -> str:
    return f'<a class="num" href="#{esc(section)}">{esc(text)}</a>'


def _rate(k: int, n: int, lo: float, hi: float, section: str) -> str:
    return _link(section, f"{k} of {n} ({_pct(k / n)}, 95% CI {_pct(lo)}–{_pct(hi)})")


@dataclass
class ModelFacts:
    """What the report's runs say about one model."""

    name: str
    synthetic: bool = False
    metrics: dict[str, Any] | None = None
    attacks: list[dict[str, Any]] = field(default_factory=list)
    perturbation: dict[str, Any] | None = None
    robustness: dict[str, Any] | None = None
    transfer: dict[str, int] | None = None
    defence: str | None = None
    base: str | None = None


def _defence(description: Any) -> tuple[str | None, str | None]:
    """(defence label, name of the model it protects) from a model description, or (None, None)."""
    if not isinstance(description, Mapping):
        return None, None
    spec = description.get("defence_spec")  # a defended model (dermadv.models.defences): its chain
    if isinstance(spec, list) and spec:
        inner = description.get("undefended")
        base = str(inner["name"]) if isinstance(inner, Mapping) and inner.get("name") else None
        return " + ".join(str(x) for x in spec), base
    d = description.get("defence") or description.get("defense")
    if not d:
        return None, None
    label = d if isinstance(d, str) else str(d.get("name") or d.get("defence") or "defence")
    for key in ("model", "wrapped", "base", "protects"):
        inner = description.get(key) or (d.get(key) if isinstance(d, Mapping) else None)
        if isinstance(inner, Mapping) and inner.get("name"):
            return label, str(inner["name"])
    return label, None


def _facts(context: ReportContext) -> dict[str, ModelFacts]:
    from dermadv.campaign.summary import summarize_rows

    facts: dict[str, ModelFacts] = {}

    def get(run: Run) -> ModelFacts:
        f = facts.setdefault(run.model_name, ModelFacts(run.model_name))
        f.synthetic = f.synthetic or runs_are_synthetic([run])
        desc = run.info.get("model") or (run.info.get("provenance") or {}).get("model")
        label, base = _defence(desc)
        if label:
            f.defence, f.base = label, base
        return f

    for run in context.evaluations:
        m = read_metrics(run)
        if m:
            get(run).metrics = m
    for run in context.attacks:
        rows = context.rows_by_run[run.path]
        f = get(run)
        for s in summarize_rows(rows):
            if not s["attempted"]:
                continue
            wins = [r for r in rows if r["attack"] == s["attack"] and r["outcome"] == Outcome.SUCCESS]
            flags = [below_jnd(row_distance(run.path, r)) for r in wins]
            f.attacks.append({**s, "invisible": None if None in flags else sum(bool(x) for x in flags)})
    for run in context.perturbations:
        rows = read_json(run.path / "perturbation.json").get("rows", [])[1:]
        if rows:
            worst = max(rows, key=lambda r: int(r["flipped"]))
            get(run).perturbation = {"worst": worst, "points": len(rows)}
    for run in context.of_kind("robustness"):
        from dermadv.robustness.summary import read_robustness

        rows = [r for r in read_robustness(run.path).get("rows", []) if r.get("flip_rate") is not None]
        if rows:
            get(run).robustness = max(rows, key=lambda r: float(r["flip_rate"]))
    for run in context.of_kind("transfer"):
        from dermadv.transfer import read_transfer

        for m in read_transfer(run.path)["matrix"]:
            if m["source"] == m["target"]:
                continue
            t = facts.setdefault(m["target"], ModelFacts(m["target"]))
            t.transfer = t.transfer or {"transferred": 0, "attempted": 0}
            t.transfer["transferred"] += int(m["transferred"])
            t.transfer["attempted"] += int(m["attempted"])
    return facts


def _clean(m: Mapping[str, Any]) -> str:
    sens, spec = m.get("sensitivity"), m.get("specificity")
    conf = m.get("confusion", {})
    parts = []
    if isinstance(sens, Mapping) and conf:
        tp, fn = int(conf.get("tp", 0)), int(conf.get("fn", 0))
        parts.append(
            f"finds {_link('metrics', f'{tp} of {tp + fn}')} melanomas (sensitivity "
            f"{_link('metrics', _ci(sens))})"
        )
    if isinstance(spec, Mapping) and conf:
        tn, fp = int(conf.get("tn", 0)), int(conf.get("fp", 0))
        parts.append(
            f"calls {_link('metrics', f'{tn} of {tn + fp}')} naevi benign (specificity "
            f"{_link('metrics', _ci(spec))})"
        )
    auc = m.get("auc")
    if isinstance(auc, Mapping) and auc.get("value") is not None:
        parts.append(f"AUC {_link('roc', _ci(auc))}")
    return "On unmodified images it " + "; ".join(parts) + "." if parts else ""


def _ci(e: Mapping[str, Any]) -> str:
    v, lo, hi = e.get("value"), e.get("ci_low"), e.get("ci_high")
    if v is None:
        return "–"
    s = f"{float(v):.2f}"
    if lo is not None and hi is not None and math.isfinite(float(lo)):
        s += f", 95% CI {float(lo):.2f}–{float(hi):.2f}"
    return s


def _attacks(f: ModelFacts) -> list[str]:
    fooled = sorted((a for a in f.attacks if a["successful"]), key=lambda a: -a["success_rate"])
    held = [a for a in f.attacks if not a["successful"]]
    out = []
    if fooled:
        items = []
        for a in fooled:
            rate = _rate(a["successful"], a["attempted"], a["ci_low"], a["ci_high"], "attacks")
            seen = ""
            if a["invisible"] is not None:
                seen = (
                    f"; {_link('examples', str(a['invisible']))} of them below the just-noticeable difference"
                )
            items.append(f"<li>{esc(ATTACK_WORDS.get(a['attack'], a['attack']))}: {rate}{seen}</li>")
        out.append(
            "<strong>Deliberate changes fool it</strong> (melanomas it called melanoma, called benign after "
            f"the change; visible or not by mean colour difference ΔE00 &lt; {JND_DELTA_E}):"
            f"<ul>{''.join(items)}</ul>"
        )
    if held:
        names = []
        for a in held:
            tried = _link("attacks", f"0 of {a['attempted']}")
            names.append(f"{esc(ATTACK_WORDS.get(a['attack'], a['attack']))} ({tried})")
        out.append(
            f"No change of its calls under {', '.join(names)}; with this search budget that bounds, "
            "not excludes, the risk."
        )
    return out


def _verdict(f: ModelFacts) -> str:
    """One line: against what the model is not safe, as far as this report shows."""
    fooled = [a for a in f.attacks if a["successful"]]
    if fooled:
        return (
            f"<strong>Not robust</strong>: {len(fooled)} of {len(f.attacks)} attack types tried changed "
            "correct melanoma calls to benign."
        )
    if f.attacks:
        n = sum(a["attempted"] for a in f.attacks)
        return f"No attack tried changed a correct melanoma call ({n} attempt(s)); few attempts prove little."
    return ""


def _sentences(f: ModelFacts, facts: Mapping[str, ModelFacts]) -> list[str]:
    s = [_verdict(f)]
    if f.metrics:
        s.append(_clean(f.metrics))
    s += _attacks(f)
    if f.perturbation:
        w = f.perturbation["worst"]
        flips = _link("perturbation", f"{w['flipped']} of {w['n']}")
        s.append(
            f"Of {f.perturbation['points']} routine changes in how an image is taken, the worst "
            f"({esc(w['label'])}) changes its call on {flips} images."
        )
    if f.robustness:
        r = f.robustness
        s.append(
            f"Under random clinically plausible variation its call flips most under {esc(r['transform'])}: "
            + _link("robustness", _pct(float(r["flip_rate"])) + " of draws")
            + " per image on average."
        )
    if f.transfer and f.transfer["attempted"]:
        t = f.transfer
        cases = _link("transfer", f"{t['transferred']} of {t['attempted']}")
        s.append(
            f"Adversarial images found on other models fool it in {cases} cases it got right unmodified."
        )
    return [x for x in s if x]


def _defence_line(facts: Mapping[str, ModelFacts]) -> str | None:
    """The defended model with the lowest attack success, and what it costs on unmodified images."""
    defended = [f for f in facts.values() if f.defence and f.attacks]
    if not defended:
        return None

    def success(f: ModelFacts) -> float:
        k = sum(a["successful"] for a in f.attacks)
        n = sum(a["attempted"] for a in f.attacks)
        return k / n if n else 1.0

    best = min(defended, key=success)
    line = (
        f"<strong>Best defence</strong>: {esc(best.defence)} ({esc(best.name)}): attacks succeed on "
        f"{_link('attacks', _pct(success(best)))} of attempts"
    )
    base = facts.get(best.base or "")
    if base is not None and base.attacks:
        line += f", against {_link('attacks', _pct(success(base)))} without it"
    if base is not None and base.metrics and best.metrics:
        for key, word in (("sensitivity", "sensitivity"), ("specificity", "specificity")):
            a, b = base.metrics.get(key, {}), best.metrics.get(key, {})
            if isinstance(a, Mapping) and isinstance(b, Mapping) and a.get("value") is not None:
                change = f"{float(a['value']):.2f} → {float(b['value']):.2f}"
                line += f"; {word} {_link('metrics', change)}"
    return line + "."


@REPORT_SECTIONS.register("summary", title="At a glance", order=5)
def first_screen(runs: Sequence[Run], context: ReportContext) -> str | None:
    """Per model: clean performance, attacks that fool it, flip rates, transfer, best defence."""
    facts = _facts(context)
    shown = {
        k: f
        for k, f in facts.items()
        if f.metrics or f.attacks or f.perturbation or f.robustness or f.transfer
    }
    if not shown:
        return None
    parts = []
    for name, f in shown.items():
        head = esc(name)
        if f.defence:
            head += f' <span class="note">(with defence {esc(f.defence)})</span>'
        warn = (
            ' <span class="tag">synthetic images: shows the pipeline, not the model</span>'
            if f.synthetic
            else ""
        )
        items = "".join(f"<li>{x}</li>" for x in _sentences(f, facts))
        parts.append(f'<div class="model"><h3>{head}{warn}</h3><ul>{items}</ul></div>')
    line = _defence_line(facts)
    if line:
        parts.append(f"<p>{line}</p>")
    parts.append(
        '<p class="note">Every number links to the section it comes from. An attack "succeeds" when a '
        "melanoma the model called melanoma is called benign after the change; CIs are Wilson 95% intervals "
        "and are wide when few images were attacked.</p>"
    )
    return "".join(parts)
