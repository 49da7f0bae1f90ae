#!/usr/bin/env bash
# The whole pipeline in one command: split, train a small CNN, evaluate, perturbation sweep, all
# attacks on a few melanomas, the sklesion model (when installed) and an HTML report. CPU, offline.
#
#   examples/00_demo.sh                       # built-in SYNTHETIC images (measured: ~80 s on 2 idle
#                                             # CPU cores, ~6 min when those cores were heavily shared)
#   SIZE=small examples/00_demo.sh            # the CI smoke run (~20 s idle, ~2 min heavily shared)
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
