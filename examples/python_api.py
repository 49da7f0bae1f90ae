"""The study's pipeline from Python, small enough for a laptop CPU (a few minutes).

Runs on the ISIC development images shipped beside the repository (../shared/data/isic-dev) or any
dataset folder given as the first argument:

    python examples/python_api.py [DATA] [OUT]

Every call below is the library function the corresponding ``dermadv`` command uses; each step is
resumable (rerun the script and finished work is skipped). For the study's real settings (Inception v3,
ImageNet weights, 299 px, 20 epochs, all validation melanomas) see 02_reproduce_study.sh.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dermadv.campaign.runner import run_campaign
from dermadv.campaign.summary import summarize_run
from dermadv.data import load_dataset, make_split, select_samples
from dermadv.evaluate import evaluate_model, write_evaluation
from dermadv.models.registry import load_model
from dermadv.models.train import TrainSettings, train
from dermadv.perturb.sweep import run_sweep
from dermadv.report.html import build_report

REPO = Path(__file__).resolve().parents[1]
DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data" / "isic-dev" / "isic2019"
OUT = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("runs/python-api")

if not DATA.exists():
    sys.exit(f"{DATA} not found: give a dataset folder (ISIC 2019 / HAM10000 layout) as the first argument")
OUT.mkdir(parents=True, exist_ok=True)

# 1. data and a stratified 80/20 split grouped by lesion (seed 0; use seed 1 for the replicate)
dataset = load_dataset(DATA)
split_csv = OUT / "split.csv"
if not split_csv.exists():
    make_split(dataset, val_fraction=0.2, seed=0).write(split_csv)

# 2. train a small CNN from scratch (the study: arch="inception_v3", weights="imagenet", image_size=299)
settings = TrainSettings(
    data=str(DATA),
    split=str(split_csv),
    out=str(OUT / "train"),
    arch="resnet18",
    weights="none",
    image_size=96,
    epochs=3,
    batch_size=16,
    lr=0.01,
    device="cpu",
)
trained = train(settings)
model = load_model(str(trained.best))

# 3. evaluate on the validation set: accuracy, sensitivity, specificity (Wilson CI), AUC (DeLong CI)
val = select_samples(dataset, split=split_csv, subset="val")
ev = evaluate_model(model, val)
write_evaluation(ev, model, OUT / "eval")
print({k: round(ev.metrics[k]["value"], 3) for k in ("accuracy", "sensitivity", "specificity", "auc")})

# 4. the systematic perturbation sweep (study: rot180, rot45, +-5/10/50 per RGB channel) plus extras
sweep = run_sweep(model, val, OUT / "perturb", "study,hue:0.05,blur:1.5,jpeg:75,decoder:other")
for row in sweep.rows:
    print(
        f"{row['label']:<22} accuracy {row['accuracy']:.3f}  FN {row['false_negatives']:>3}  "
        f"FP {row['false_positives']:>3}  flipped {row['flipped']}"
    )

# 5. every attack on 5 validation melanomas (small budget; the study: popsize 20, 20 generations)
melanomas = select_samples(dataset, split=split_csv, subset="val", classes=("mel",), limit=5)
run_campaign(
    model,
    melanomas,
    OUT / "attacks",
    None,
    attack_options={"popsize": 5, "max_generations": 10, "eps": (1.0, 2.0, 4.0, 8.0)},
)
print(summarize_run(OUT / "attacks")["attacks"])

# 6. the report: metrics + ROC, training curves, perturbation table/plot, attack table, heat map, examples
report = build_report(
    [OUT / "train", OUT / "eval", OUT / "perturb", OUT / "attacks"],
    OUT / "report.html",
    title="dermadv: Python API example",
)
print(f"report: {report}")
