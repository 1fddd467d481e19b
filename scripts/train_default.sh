#!/usr/bin/env bash
# Recipe for the shipped default model `unet-mask` (see src/audiodenoise/models/MODEL_CARD.md).
# Resumable: run it again after an interruption and training continues from RUN/last.
set -euo pipefail
CORPUS=${CORPUS:-../shared/corpus}
DATA=${DATA:-runs/data-pauses}
RUN=${RUN:-runs/unet-mask}

if [ ! -f "$DATA/manifest.json" ]; then
  audiodenoise prepare --speech "$CORPUS/speech" --noise "$CORPUS/noise" -o "$DATA" \
    --val-fraction 0.06 --max-pause-ms 400 --edge-pause-ms 500
fi
resume=()
[ -f "$RUN/last/training.safetensors" ] && resume=(--resume)
audiodenoise train "$DATA" "$RUN" --target mask --epochs 1 --max-steps 3000 "${resume[@]}"
