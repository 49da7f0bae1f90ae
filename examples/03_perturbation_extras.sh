#!/usr/bin/env bash
# The perturbation sweep beyond the study, in the spirit of ImageNet-C / MedMNIST-C: hue shifts,
# Gaussian blur, JPEG re-compression, brightness and contrast, and a change of JPEG decoder
# (re-decoding the same file with the other libjpeg configuration alone flips some predictions).
#
#   MODEL=runs/study/seed0/inception_v3_plain/train/best.pt DATA=data/ISIC_2019 \
#     SPLIT=runs/study/split_seed0.csv examples/03_perturbation_extras.sh
# Estimate: 10-20 min on one GPU for ~3,500 validation images (not measured).
set -euo pipefail
MODEL=${MODEL:?model file or name, e.g. sklesion}
DATA=${DATA:?dataset folder}
SPLIT=${SPLIT:?split CSV}
OUT=${OUT:-runs/perturb-extras}
dermadv perturb --model "$MODEL" --data "$DATA" --split "$SPLIT" --subset val --out "$OUT" \
  --perturbations "rot180,rot45,rot:90,shift:rgb:+20,shift:rgb:-20,hue:-0.05,hue:0.05,blur:1,blur:2,jpeg:90,jpeg:50,jpeg:20,brightness:0.8,brightness:1.2,contrast:0.7,decoder:other"
dermadv report "$OUT" --out "$OUT/report.html" --title "Perturbation sweep (extended)"
