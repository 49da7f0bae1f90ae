#!/usr/bin/env bash
# Download the ISIC 2019 challenge training data (images ~9 GB, ground truth, metadata).
# Source: https://challenge.isic-archive.com/data/#2019 (if the links below move, take them from
# that page). Licence: CC BY-NC 4.0 -- research use; cite the ISIC 2019 challenge papers.
#
#   examples/01_download_isic2019.sh [DEST]     (default DEST: data/ISIC_2019)
set -euo pipefail
DEST=${1:-data/ISIC_2019}
BASE=https://isic-challenge-data.s3.amazonaws.com/2019
mkdir -p "$DEST"
cd "$DEST"
for f in ISIC_2019_Training_GroundTruth.csv ISIC_2019_Training_Metadata.csv ISIC_2019_Training_Input.zip; do
  if [[ ! -s $f ]]; then
    echo "downloading $f"
    curl -fL --retry 5 -C - -o "$f.part" "$BASE/$f" && mv "$f.part" "$f"
  fi
done
if [[ ! -d ISIC_2019_Training_Input ]]; then
  unzip -q ISIC_2019_Training_Input.zip
fi
cd - >/dev/null
# Check the layout, count images per diagnosis and list any problem (unreadable/missing files).
dermadv data check "$DEST"
echo "ISIC 2019 is in $DEST; next: DATA=$DEST examples/02_reproduce_study.sh"
