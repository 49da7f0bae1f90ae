#!/usr/bin/env bash
# The study's protocol on the full ISIC 2019 training set (Du-Harpur et al., JID 2021):
#
#  1. two replicate 80/20 splits (seeds 0 and 1), stratified by diagnosis, grouped by lesion;
#  2. per split, Inception v3 (ImageNet weights) fine-tuned at 299 px with SGD (lr 0.001, momentum
#     0.9), random rotation/crop/flips -- once without and once with colour-balance jitter;
#  3. evaluation on the validation set: accuracy, sensitivity, specificity, AUC with 95% CIs;
#  4. the systematic perturbation sweep (Supplementary Figure 1): 180 and 45 degree rotations and
#     -50..+50 added to each RGB channel;
#  5. every attack (FGSM, PGD, 3-pixel, colour balance, rotation/translation) on the validation
#     melanomas the model classifies correctly (Supplementary Table 2, Figure 1);
#  6. the same for a third-party model, PyPI `sklesion` (Keras 3 Xception, HAM10000, black box);
#  7. one HTML report with everything side by side.
#
# Runtimes on one A100/H100-class GPU are ESTIMATES (see examples/README.md): about a day in all,
# dominated by the attacks; reduce ATTACK_LIMIT to try it first. Every step is resumable: if it is
# interrupted, run the script again and finished work is skipped.
#
#   DATA=data/ISIC_2019 examples/02_reproduce_study.sh
set -euo pipefail
DATA=${DATA:?set DATA to the ISIC 2019 folder (examples/01_download_isic2019.sh)}
OUT=${OUT:-runs/study}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-20}
ATTACK_LIMIT=${ATTACK_LIMIT:-}          # e.g. 100 to attack only 100 melanomas per model
REFERENCE=${REFERENCE:-}                # CSV of published results to show beside yours (see reference_template.csv)
LIMIT_FLAG=()
[[ -n "$ATTACK_LIMIT" ]] && LIMIT_FLAG=(--limit "$ATTACK_LIMIT")
mkdir -p "$OUT"
RUNS=()

for SEED in 0 1; do
  SPLIT="$OUT/split_seed$SEED.csv"
  # 1. split (refuses to overwrite a different split: results stay tied to their split)
  [[ -f "$SPLIT" ]] || dermadv data split "$DATA" --out "$SPLIT" --seed "$SEED" --val-fraction 0.2 --classes mel,nv
  for VARIANT in plain jitter; do
    RUN="$OUT/seed$SEED/inception_v3_$VARIANT"
    JITTER=()
    [[ $VARIANT == jitter ]] && JITTER=(--color-jitter)
    # 2. train (best.pt = best validation AUC; rerun resumes from last.pt)
    dermadv train --data "$DATA" --split "$SPLIT" --out "$RUN/train" --arch inception_v3 --weights imagenet \
      --image-size 299 --epochs "$EPOCHS" --batch-size 32 --lr 0.001 --momentum 0.9 "${JITTER[@]}" \
      --seed "$SEED" --device "$DEVICE" --workers 8
    MODEL="$RUN/train/best.pt"
    # 3. evaluate on the validation subset
    dermadv evaluate --model "$MODEL" --data "$DATA" --split "$SPLIT" --subset val --out "$RUN/eval" \
      --device "$DEVICE"
    # 4. perturbation sweep (the study's 20 perturbations + the unmodified set)
    dermadv perturb --model "$MODEL" --data "$DATA" --split "$SPLIT" --subset val --out "$RUN/perturb" \
      --perturbations study --device "$DEVICE"
    # 5. all attacks on validation melanomas (study settings: 20 generations, stop at 90% confidence)
    dermadv attack --model "$MODEL" --data "$DATA" --split "$SPLIT" --subset val --out "$RUN/attacks" \
      --max-generations 20 --threshold 0.9 --batch-images 8 --device "$DEVICE" "${LIMIT_FLAG[@]}"
    RUNS+=("$RUN/train" "$RUN/eval" "$RUN/perturb" "$RUN/attacks")
  done
done

# 6. the third-party model: black box (no gradients), 7 classes, takes age/sex/site metadata.
#    Evaluated and attacked on the seed-0 validation set (it was trained on HAM10000, which overlaps
#    ISIC 2019: its numbers on these images are optimistic).
SK="$OUT/sklesion"
dermadv evaluate --model sklesion --data "$DATA" --split "$OUT/split_seed0.csv" --subset val --out "$SK/eval"
dermadv perturb --model sklesion --data "$DATA" --split "$OUT/split_seed0.csv" --subset val --out "$SK/perturb"
dermadv attack --model sklesion --data "$DATA" --split "$OUT/split_seed0.csv" --subset val --out "$SK/attacks" \
  --attacks pixel,color,rotation --max-generations 20 --threshold 0.9 --batch-images 4 "${LIMIT_FLAG[@]}"
RUNS+=("$SK/eval" "$SK/perturb" "$SK/attacks")

# 7. one self-contained HTML report
REF=()
[[ -n "$REFERENCE" ]] && REF=(--reference "$REFERENCE")
dermadv report "${RUNS[@]}" --out "$OUT/report.html" --title "Du-Harpur et al. 2021 reproduced on ISIC 2019" "${REF[@]}"
echo "report: $OUT/report.html"
