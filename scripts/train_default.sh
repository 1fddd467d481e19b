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
STAGE5=${STAGE5:-runs/unet-mask-long}
STAGE6=${STAGE6:-runs/unet-mask-long-s3}

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
# The run stops after step 500: its best/.
audiodenoise train --speech "$CORPUS/speech" --noise "$CORPUS/noise" "$STAGE4" --init-from "$STAGE3/best" \
  --epochs 1 --max-steps 1500 --epoch-pairs 24000 --learning-rate 2e-4 --max-pause-ms 400 --edge-pause-ms 500 \
  --clean-fraction 0.1 --val-fraction 0.06 --waveform-weight 0.01 --envelope-weight 0.1 --ema-decay 0.999 \
  --select-by val_si_sdr_db --threads 1 --checkpoint-every 100 --validate-every 500 --stop-after 500 \
  $(resume_flag "$STAGE4")

# Stage 5: stage 4's weights at the 23 ms window (n_fft 511, hop 128), with the waveform term alone and a cosine
# planned over 20,000 steps, stopped after step 3,500; stage 6 starts from its last/ (the average there).
audiodenoise train --speech "$CORPUS/speech" --noise "$CORPUS/noise" "$STAGE5" --init-from "$STAGE4/best" \
  --stft long --epochs 1 --max-steps 20000 --epoch-pairs 320000 --learning-rate 5e-4 --max-pause-ms 400 \
  --edge-pause-ms 500 --clean-fraction 0.1 --val-fraction 0.06 --waveform-weight 0.01 --ema-decay 0.999 \
  --select-by val_si_sdr_db --threads 2 --checkpoint-every 100 --validate-every 500 --stop-after 3500 \
  $(resume_flag "$STAGE5")

# Stage 6: a fresh cosine over 6,000 steps from stage 5's step 3,500, with twice the share of clean mixes.
audiodenoise train --speech "$CORPUS/speech" --noise "$CORPUS/noise" "$STAGE6" --init-from "$STAGE5/last" \
  --stft long --epochs 1 --max-steps 6000 --epoch-pairs 320000 --learning-rate 4.5e-4 --max-pause-ms 400 \
  --edge-pause-ms 500 --clean-fraction 0.2 --val-fraction 0.06 --waveform-weight 0.01 --ema-decay 0.999 \
  --select-by val_si_sdr_db --threads 2 --checkpoint-every 100 --validate-every 1000 $(resume_flag "$STAGE6")
# The shipped weights: stage 6's best/ (step 6,000), with "inference": {"strength": 0.9} added to its config.json
# after benchmarks/tune_strength.py --speakers hedgewars-ru-default klettres-lt-all tuxpaint-nl-all.
