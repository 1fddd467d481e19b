#!/usr/bin/env bash
# Recipe for the shipped default model `unet-mask`: the stages are run configs in recipes/unet-mask/ (see its README).
# Resumable: run it again after an interruption and each stage continues from its RUN/last.
set -euo pipefail
RECIPE=recipes/unet-mask
RUNS=(runs/unet-mask runs/unet-mask-v3 runs/unet-mask-wave30 runs/unet-mask-p8 runs/unet-mask-long runs/unet-mask-long-s3)

audiodenoise prepare --speech ../shared/corpus/speech --noise ../shared/corpus/noise -o runs/data-pauses \
  --val-fraction 0.06 --max-pause-ms 400 --edge-pause-ms 500
for stage in 1 2 3 4 5 6; do
  run=${RUNS[stage - 1]}
  resume=(); [ -f "$run/last/training.safetensors" ] && resume=(--resume)
  audiodenoise train --config "$RECIPE/stage$stage.toml" "$run" "${resume[@]}"
done
python benchmarks/tune_strength.py --model "${RUNS[5]}/best" --write \
  --speakers hedgewars-ru-default klettres-lt-all tuxpaint-nl-all
