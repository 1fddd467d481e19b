#!/usr/bin/env bash
# Recipe for the shipped default model `unet-mask` (see src/audiodenoise/models/MODEL_CARD.md).
# Resumable: run it again after an interruption and each stage continues from its RUN/last.
set -euo pipefail
CORPUS=${CORPUS:-../shared/corpus}
DATA=${DATA:-runs/data-pauses}
STAGE1=${STAGE1:-runs/unet-mask}
STAGE2=${STAGE2:-runs/unet-mask-v3}
STAGE3=${STAGE3:-runs/unet-mask-wave30}
STAGE4=${STAGE4:-runs/unet-mask-p8}

resume_flag() { [ -f "$1/last/training.safetensors" ] && echo --resume || true; }

# Stage 1: from scratch on a prepared dataset.
audiodenoise prepare --speech "$CORPUS/speech" --noise "$CORPUS/noise" -o "$DATA" \
  --val-fraction 0.06 --max-pause-ms 400 --edge-pause-ms 500
audiodenoise train "$DATA" "$STAGE1" --target mask --epochs 1 --max-steps 3000 $(resume_flag "$STAGE1")

# Stage 2: fine-tune on pairs mixed on the fly, a tenth of them without noise.
audiodenoise train --speech "$CORPUS/speech" --noise "$CORPUS/noise" "$STAGE2" --init-from "$STAGE1/best" \
  --epochs 3 --epoch-pairs 32000 --learning-rate 3e-4 --max-pause-ms 400 --edge-pause-ms 500 \
  --clean-fraction 0.1 --val-fraction 0.06 --checkpoint-every 100 --validate-every 500 $(resume_flag "$STAGE2")

# Stage 3: fine-tune stage 2's best/ (step 2,500, stopped for time) with the waveform SI-SDR loss, weights averaged.
audiodenoise train --speech "$CORPUS/speech" --noise "$CORPUS/noise" "$STAGE3" --init-from "$STAGE2/best" \
  --epochs 1 --max-steps 5000 --epoch-pairs 80000 --learning-rate 2e-4 --max-pause-ms 400 --edge-pause-ms 500 \
  --clean-fraction 0.1 --val-fraction 0.06 --waveform-weight 0.003 --ema-decay 0.999 --select-by val_si_sdr_db \
  --checkpoint-every 100 --validate-every 500 $(resume_flag "$STAGE3")

# Stage 4: fine-tune stage 3's best/ (step 4,000) with STOI's band-envelope correlation and a stronger waveform term.
# The run was stopped after step 500, its best/.
audiodenoise train --speech "$CORPUS/speech" --noise "$CORPUS/noise" "$STAGE4" --init-from "$STAGE3/best" \
  --epochs 1 --max-steps 1500 --epoch-pairs 24000 --learning-rate 2e-4 --max-pause-ms 400 --edge-pause-ms 500 \
  --clean-fraction 0.1 --val-fraction 0.06 --waveform-weight 0.01 --envelope-weight 0.1 --ema-decay 0.999 \
  --select-by val_si_sdr_db --threads 1 --checkpoint-every 100 --validate-every 500 $(resume_flag "$STAGE4")
# The shipped weights: stage 4's best/ (step 500), with "inference": {"strength": 0.9} added to its
# config.json after benchmarks/tune_strength.py --speakers hedgewars-ru-default klettres-lt-all tuxpaint-nl-all.
