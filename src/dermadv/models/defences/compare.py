"""``dermadv defend compare``: the undefended model and each defence, measured on the same images.

For each chain (``none`` first, the reference):

- clean accuracy, sensitivity, specificity (Wilson 95% CIs) and AUC (DeLong 95% CI);
- every named attack end to end through the defence, plus the adaptive attacks aimed at it
  (:mod:`dermadv.models.defences.adaptive`), on the correctly called images of the attack's source
  class: success with a Wilson CI, median queries (images submitted) and median forwards of the
  undefended model (queries x the chain's cost; checked against the defence's own forward counter);
- flip rates from a robustness run of the defended model (:func:`dermadv.robustness.run.run_robustness`);
- certificates (:mod:`dermadv.models.defences.certify`) and certified robust accuracy per method;
- paired tests against ``none`` on the same images: exact McNemar on correct calls (clean, and under
  each attack both ran), DeLong on the AUC.

Writes RUN/defend.json, defend.csv (one row per chain), defend_attacks.csv (one row per chain and
attack), defend_certificates.csv, robustness runs in RUN/robustness/<chain>/ and RUN/run.json (kind
``defend``).
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dermadv.errors import DataError
from dermadv.fileio import atomic_write_text, read_json
from dermadv.metrics import binary_metrics, delong_test, melanoma_score, proportion
from dermadv.models.base import Classifier
from dermadv.models.defences.adaptive import adaptive_attacks, standard_attacks
from dermadv.models.defences.base import apply_defences, chain_label, query_cost, underlying_forwards
from dermadv.runs.lock import holding_run
from dermadv.runs.provenance import run_provenance, selection_hash
from dermadv.runs.record import RunDir
from dermadv.vocab import Group, Outcome

if TYPE_CHECKING:
    from dermadv.data.dataset import Sample

RUN_KIND = "defend"


def mcnemar_exact(
    a_correct: Sequence[bool] | np.ndarray, b_correct: Sequence[bool] | np.ndarray
) -> dict[str, Any]:
    """Exact (binomial) McNemar test of paired correct/incorrect calls: discordant counts and p-value."""
    from scipy.stats import binomtest

    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired calls differ in length: {a.shape} vs {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {
        "n": int(len(a)),
        "reference_only": only_a,
        "defence_only": only_b,
        "p_value": p,
        "method": "exact McNemar (two-sided binomial on discordant pairs)",
    }


def parse_chains(text: str | Sequence[str]) -> list[list[str]]:
    """``"none;color-constancy:p=6;tta;color-constancy:p=6+tta:rotations=8"`` -> chains of specs.

    Chains are separated by ``;`` (or given as a list), defences within a chain by ``+``; ``none`` (the
    undefended model) is always first, added when missing.
    """
    items = [t.strip() for t in text.split(";")] if isinstance(text, str) else [str(t).strip() for t in text]
    chains = [[s.strip() for s in item.split("+") if s.strip()] for item in items if item]
    chains = [[] if c == ["none"] else c for c in chains]
    if [] in chains:
        chains.remove([])
    return [[], *chains]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "none"


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _attack_rows(
    model: Classifier,
    planned: Sequence[Any],
    images: np.ndarray,
    metas: list[Any],
    ids: list[str],
    direction: str,
    seed: int,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, bool]]]:
    """Run each planned attack on all images; summary rows and per-image 'still correct' flags."""
    rows, survived = [], {}
    cost = query_cost(model)
    for p in planned:
        before = underlying_forwards(model)
        t0 = time.perf_counter()
        results = p.attack.run_many(
            model, images, metas, image_ids=ids, direction=direction, seeds=[seed] * len(ids)
        )
        after = underlying_forwards(model)
        attacked = [r for r in results if r.outcome in (Outcome.SUCCESS, Outcome.FAILURE)]
        k = sum(1 for r in attacked if r.success)
        queries = [r.queries for r in attacked]
        counted = None if before is None or after is None else after - before
        expected = sum(r.queries for r in results) * cost
        row: dict[str, Any] = {
            "attack": p.name,
            "adaptive": p.adaptive,
            "aimed_at": p.aimed_at,
            "threat_model": p.threat_model,
            "images": len(results),
            "attacked": len(attacked),
            "misclassified": sum(1 for r in results if r.outcome == Outcome.MISCLASSIFIED),
            "successes": k,
            "success": proportion(k, len(attacked)) if attacked else None,
            "median_queries": _median(queries),
            "median_forwards": _median([q * cost for q in queries]),
            "forwards_counted": counted if counted is not None else expected,
            "forwards_check": "no defence: queries are forwards"
            if counted is None
            else (
                "matches queries x cost"
                if counted == expected
                else f"MISMATCH: counted {counted}, expected {expected}"
            ),
            "query_cost": cost,
            "seconds": round(time.perf_counter() - t0, 2),
            "settings": p.describe(),
        }
        rows.append(row)
        survived[p.name] = {r.image_id: r.outcome == Outcome.FAILURE for r in results}
    return rows, survived


def _load(model: Classifier, samples: Sequence[Sample]) -> tuple[np.ndarray, list[Any], list[str]]:
    images = model.prepare([model.load_image(str(s.path)) for s in samples]) if samples else np.zeros((0,))
    return images, [s.metadata() for s in samples], [s.image_id for s in samples]


def _certificates(
    model: Classifier,
    samples: Sequence[Sample],
    methods: Sequence[str],
    opts: Mapping[str, Any],
    threshold: float,
    seed: int,
) -> list[Any]:
    """Every method's certificate for every sample (options: see ``dermadv defend compare --help``)."""
    from dermadv.models.defences.certify import exact_gain_certificate, smoothing_certificate

    out = []
    images, metas, ids = _load(model, samples)
    for s, im, meta, iid in zip(samples, images, metas, ids, strict=True):
        truth = Group.MELANOMA if s.diagnosis == "mel" else Group.BENIGN
        for method in methods:
            if method == "exact-gain":
                out.append(
                    exact_gain_certificate(
                        model, im, meta, image_id=iid, truth=truth, threshold=threshold,
                        delta=float(opts.get("delta", 0.1)), max_images=int(opts.get("max_images", 20_000)),
                    )
                )  # fmt: skip
                continue
            kind = method.split("-")[1]
            out.append(
                smoothing_certificate(
                    model, im, meta, kind=kind, image_id=iid, truth=truth,
                    delta=float(opts.get("delta", 0.1)), max_angle=float(opts.get("max_angle", 10.0)),
                    n0=int(opts.get("n0", 16)), n=int(opts.get("n", 128)),
                    alpha=float(opts.get("alpha", 0.001)), threshold=threshold, seed=seed,
                    sigma=float(opts[f"sigma_{kind}"]) if f"sigma_{kind}" in opts else None,
                )
            )  # fmt: skip
    return out


@holding_run("out")
def compare_defences(
    model: Classifier,
    samples: Sequence[Sample],
    out: str | Path,
    chains: Sequence[Sequence[str]],
    *,
    attacks: Sequence[str] = ("color", "rotation"),
    adaptive: bool = True,
    attack_options: Mapping[str, Any] | None = None,
    direction: str = "mel->nv",
    attack_limit: int | None = None,
    transforms: Sequence[str] = ("color", "rotation"),
    flip_samples: int = 32,
    certify: Sequence[str] = ("smoothing-gain", "smoothing-rotation", "exact-gain"),
    certify_options: Mapping[str, Any] | None = None,
    certify_limit: int | None = None,
    threshold: float = 0.5,
    seed: int = 0,
    progress: bool = True,
    data_info: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compare the chains (``[]`` = undefended, first) on ``samples`` (melanomas and naevi); write ``out``."""
    from dermadv.evaluate import predict_samples
    from dermadv.models.defences.certify import METHODS, certified_accuracy
    from dermadv.robustness.run import StopRule, parse_transforms, run_robustness
    from dermadv.vocab import check_direction

    say = log or (lambda m: print(m, file=sys.stderr))
    samples = [s for s in samples if s.diagnosis in ("mel", "nv")]
    y = np.array([s.diagnosis == "mel" for s in samples], dtype=int)
    if not samples or y.all() or not y.any():
        raise DataError("defend compare needs melanomas and naevi among the selected images")
    unknown = sorted(set(certify) - set(METHODS))
    if unknown:
        raise DataError(f"unknown certificate method(s) {unknown}; choose from {', '.join(METHODS)}")
    chains = [list(c) for c in chains]
    if not chains or chains[0]:
        chains = [[], *[c for c in chains if c]]
    models = [apply_defences(model, c) for c in chains]  # fail on a bad spec before any work
    labels = [chain_label(m) for m in models]
    keys = parse_transforms(list(transforms)) if transforms else []
    out = Path(out)
    settings = {
        "model": model.describe(),
        "chains": [m.describe().get("defence_spec", []) for m in models],
        "data": {**dict(data_info or {}), "hash": selection_hash(samples)},
        "attacks": list(attacks),
        "adaptive": adaptive,
        "attack_options": {k: v for k, v in dict(attack_options or {}).items() if v is not None},
        "direction": direction,
        "attack_limit": attack_limit,
        "transforms": list(transforms),
        "flip_samples": flip_samples,
        "certify": list(certify),
        "certify_options": dict(certify_options or {}),
        "certify_limit": certify_limit,
        "threshold": threshold,
        "seed": seed,
    }
    run = RunDir.open(
        out, RUN_KIND, settings, run_provenance(model, samples=samples), extra={"status": "running"}
    )
    source = check_direction(direction).source_diagnosis
    victims = [s for s in samples if s.diagnosis == source][: attack_limit or None]
    cert_samples = samples[: certify_limit or None]
    results: list[dict[str, Any]] = []
    ref_correct: np.ndarray | None = None
    ref_scores: np.ndarray | None = None
    ref_survived: dict[str, dict[str, bool]] = {}
    certificates: list[dict[str, Any]] = []
    for label, m in zip(labels, models, strict=True):
        t0 = time.perf_counter()
        say(f"[{label}] clean predictions on {len(samples)} images (cost {query_cost(m)} forwards/query)")
        probs = predict_samples(m, samples, progress=progress)
        scores = melanoma_score(m, probs)
        correct = (scores >= threshold) == (y == 1)
        entry: dict[str, Any] = {
            "defence": label,
            "specs": m.describe().get("defence_spec", []),
            "query_cost": query_cost(m),
            "clean": binary_metrics(y, scores, threshold=threshold),
        }
        if ref_correct is None or ref_scores is None:
            ref_correct, ref_scores = correct, scores
        else:
            entry["paired_vs_none"] = {
                "mcnemar_clean": mcnemar_exact(ref_correct, correct),
                "delong_auc": delong_test(y, ref_scores, scores),
            }
        images, metas, ids = _load(m, victims)
        planned = standard_attacks(m, attacks, attack_options or {})
        skipped: list[str] = []
        if adaptive:
            extra, skipped = adaptive_attacks(m, attack_options or {})
            planned += extra
        say(f"[{label}] {len(planned)} attack(s) on {len(victims)} image(s) ({source})")
        rows, survived = (
            _attack_rows(m, planned, images, metas, ids, direction, seed) if victims else ([], {})
        )
        if not ref_survived:
            ref_survived = survived
        else:
            for row in rows:
                ref = ref_survived.get(row["attack"], {})
                mine = survived.get(row["attack"], {})
                common_ids = [i for i in ids if i in ref and i in mine]
                if common_ids:
                    row["mcnemar_vs_none"] = mcnemar_exact(
                        [ref[i] for i in common_ids], [mine[i] for i in common_ids]
                    )
        entry["attacks"], entry["adaptive_skipped"] = rows, skipped
        if keys:
            say(f"[{label}] flip rates ({', '.join(k.key for k in keys)}, up to {flip_samples} draws)")
            rob = run_robustness(
                m,
                samples,
                out / "robustness" / _slug(label),
                keys,
                stop=StopRule(samples=flip_samples, check_every=min(16, flip_samples)),
                seed=seed,
                threshold=threshold,
                progress=progress,
            )
            entry["flip_rates"] = [
                {
                    k: r.get(k)
                    for k in ("transform", "flip_rate", "flip_ci_low", "flip_ci_high", "n_images", "forwards")
                }
                for r in rob.summary["rows"]
            ]
        certs = []
        if certify and cert_samples:
            say(f"[{label}] certificates ({', '.join(certify)}) on {len(cert_samples)} image(s)")
            certs = _certificates(m, cert_samples, certify, dict(certify_options or {}), threshold, seed)
            certificates += [{"defence": label, **c.to_dict()} for c in certs]
        entry["certified_accuracy"] = certified_accuracy(certs)
        if certs and "exact-gain" in certify:
            entry["exact_gain_not_attempted"] = sum(
                1 for c in certs if c.method == "exact-gain" and c.certified is None
            )
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        results.append(entry)
    summary = {
        "model": model.describe().get("name"),
        "n_images": len(samples),
        "n_melanoma": int(y.sum()),
        "direction": direction,
        "defences": results,
    }
    files = write_outputs(out, summary, certificates)
    run.update(status="complete", summary={"defences": labels, "files": files})
    summary["files"] = files
    return summary


def _pct(p: Mapping[str, Any] | None) -> str:
    return "" if not p else f"{p['value']:.3f} [{p['ci_low']:.3f}, {p['ci_high']:.3f}]"


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def table_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per defence: clean metrics with CIs, paired tests, certified accuracy."""
    out = []
    for e in summary["defences"]:
        c = e["clean"]
        paired = e.get("paired_vs_none", {})
        certs = e.get("certified_accuracy", {})
        out.append(
            {
                "defence": e["defence"],
                "query_cost": e["query_cost"],
                "accuracy": _pct(c["accuracy"]),
                "sensitivity": _pct(c["sensitivity"]),
                "specificity": _pct(c["specificity"]),
                "auc": _pct(c["auc"]),
                "delong_p_vs_none": "" if not paired else f"{paired['delong_auc']['p_value']:.3g}",
                "mcnemar_p_vs_none": "" if not paired else f"{paired['mcnemar_clean']['p_value']:.3g}",
                **{f"certified_{k}": _pct(v) for k, v in certs.items()},
            }
        )
    return out


def attack_table(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per defence and attack."""
    return [
        {
            "defence": e["defence"],
            "attack": a["attack"],
            "adaptive": a["adaptive"],
            "attacked": a["attacked"],
            "success": _pct(a["success"]),
            "median_queries": a["median_queries"],
            "median_forwards": a["median_forwards"],
            "mcnemar_p_vs_none": ""
            if "mcnemar_vs_none" not in a
            else f"{a['mcnemar_vs_none']['p_value']:.3g}",
            "forwards_check": a["forwards_check"],
            "threat_model": a["threat_model"],
        }
        for e in summary["defences"]
        for a in e.get("attacks", [])
    ]


def write_outputs(
    out: Path, summary: Mapping[str, Any], certificates: Sequence[Mapping[str, Any]]
) -> dict[str, str]:
    files = {
        "json": out / "defend.json",
        "csv": out / "defend.csv",
        "attacks_csv": out / "defend_attacks.csv",
        "certificates_csv": out / "defend_certificates.csv",
    }
    atomic_write_text(files["json"], json.dumps(summary, indent=2, default=str) + "\n")
    atomic_write_text(files["csv"], _csv(table_rows(summary)))
    atomic_write_text(files["attacks_csv"], _csv(attack_table(summary)))
    cert_rows = [
        {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in c.items()} for c in certificates
    ]
    atomic_write_text(files["certificates_csv"], _csv(cert_rows))
    return {k: str(v) for k, v in files.items()}


def read_defend(run: str | Path) -> dict[str, Any]:
    data: dict[str, Any] = read_json(Path(run) / "defend.json", "defence comparison")
    return data


def format_summary(summary: Mapping[str, Any]) -> str:
    """The two tables as aligned text."""
    from dermadv.commands.common import aligned_table

    rows = table_rows(summary)
    cols = ["defence", "query_cost", "auc", "sensitivity", "specificity", "delong_p_vs_none"]
    text = aligned_table([cols, *[[str(r[c]) for c in cols] for r in rows]])
    arows = attack_table(summary)
    if arows:
        acols = ["defence", "attack", "attacked", "success", "median_queries", "median_forwards"]
        text += "\n\n" + aligned_table([acols, *[[str(r[c]) for c in acols] for r in arows]])
    return text
