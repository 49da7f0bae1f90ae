#!/usr/bin/env bash
# The whole pipeline in one command: split, train a small CNN, evaluate, perturbation sweep, all
# attacks on a few melanomas, the sklesion model (when installed) and an HTML report. CPU, offline.
#
#   examples/00_demo.sh                       # built-in SYNTHETIC images (~10 min on 2 CPU cores)
#   SIZE=small examples/00_demo.sh            # a faster, smaller run (~2-3 min)
#   DATA=/path/to/ISIC_2019 examples/00_demo.sh   # real images (uses a stratified subset of them)
set -euo pipefail
SIZE=${SIZE:-full}
OUT=${OUT:-runs/demo-$SIZE}
if [[ -n "${DATA:-}" ]]; then
  dermadv demo --data "$DATA" --size "$SIZE" --out "$OUT"
else
  dermadv demo --size "$SIZE" --out "$OUT"
fi
echo "open $OUT/report.html"
