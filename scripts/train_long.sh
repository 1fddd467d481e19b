#!/usr/bin/env bash
# The long-window candidate (experiment S2 in benchmarks/EXPERIMENTS.md), trained in resumable pieces across
# sessions: the run state lives in training/unet-mask-long (committed after each piece) and runs in RUN.
# Run it, stop it at any time, then copy RUN/{last,best,history.csv} back to training/unet-mask-long and commit.
set -euo pipefail
CORPUS=${CORPUS:-../shared/corpus}
STATE=training/unet-mask-long
RUN=${RUN:-runs/unet-mask-long}

if [ ! -f "$RUN/last/training.safetensors" ]; then
  mkdir -p "$RUN" && cp -r "$STATE/last" "$STATE/best" "$STATE/history.csv" "$RUN/"
fi
exec audiodenoise train --speech "$CORPUS/speech" --noise "$CORPUS/noise" "$RUN" --resume \
  --init-from src/audiodenoise/models/unet-mask --stft long --epochs 1 --max-steps 20000 --epoch-pairs 320000 \
  --learning-rate 5e-4 --max-pause-ms 400 --edge-pause-ms 500 --clean-fraction 0.1 --val-fraction 0.06 \
  --waveform-weight 0.01 --ema-decay 0.999 --select-by val_si_sdr_db --threads 2 --checkpoint-every 100 \
  --validate-every 500
