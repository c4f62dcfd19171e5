#!/usr/bin/env bash
# Rebuild the shipped toy weights from scratch on a CPU (see MODEL_CARD.md for timings):
#   bash checkpoints/toy/rebuild.sh [RUN_FOLDER]
# Stage 1 trains the T2I model on single frames and exports its EMA weights in half
# precision; stage 2 inflates that file and trains only the new temporal layers on clips; the
# video file holds only the layers inflation added (the frozen rest is t2i.safetensors).
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-runs/toy}
# T2I: 2,000 steps of 64 frames, ~9-11 minutes on a 2-core CPU; video: 1,750 steps of 16
# clips, ~20-24 minutes (the wall times of the shipped run: MODEL_CARD.md); --minutes 45
# lets a slower CPU finish the steps instead of stopping at the config's 30 minutes
python -m minilumiere train --stage t2i --config toy --out "$runs/t2i"
python -m minilumiere export "$runs/t2i/checkpoint.safetensors" checkpoints/toy/t2i.safetensors
python -m minilumiere train --stage video --config toy --out "$runs/video" \
    --init checkpoints/toy/t2i.safetensors --minutes 45
python -m minilumiere export "$runs/video/checkpoint.safetensors" checkpoints/toy/video.safetensors \
    --base checkpoints/toy/t2i.safetensors
cp "$runs/t2i/metrics.jsonl" checkpoints/toy/t2i_metrics.jsonl
cp "$runs/video/metrics.jsonl" checkpoints/toy/video_metrics.jsonl
# Later stages: SSR (from scratch, on windows and crops) and the conditioning fine-tune of the
# video model (<C, M> channels), exported the same way.
# SSR: 3,000 steps, ~23 minutes on a 2-core CPU (its config stops a run at 15 minutes)
python -m minilumiere train --stage ssr --config toy --out "$runs/ssr" --minutes 30
# Conditioning: 2,000 steps, ~23-27 minutes on a 2-core CPU, from the exported (half-precision)
# video model, as the shipped file was
python -m minilumiere train --stage conditioning --config toy --out "$runs/conditioning" \
    --init checkpoints/toy/video.safetensors --minutes 45
python -m minilumiere export "$runs/ssr/checkpoint.safetensors" checkpoints/toy/ssr.safetensors
python -m minilumiere export "$runs/conditioning/checkpoint.safetensors" \
    checkpoints/toy/conditioning.safetensors --base checkpoints/toy/t2i.safetensors
cp "$runs/ssr/metrics.jsonl" checkpoints/toy/ssr_metrics.jsonl
cp "$runs/conditioning/metrics.jsonl" checkpoints/toy/conditioning_metrics.jsonl
# Style: the T2I model fine-tuned on outlined frames (stylized generation, chapter 9), 800 steps
# of 64 frames from the exported T2I file; the exported file holds only the U-Net weights.
python -m minilumiere train --stage style --config toy --out "$runs/style" \
    --init checkpoints/toy/t2i.safetensors --minutes 30
python -m minilumiere export "$runs/style/checkpoint.safetensors" checkpoints/toy/style.safetensors \
    --base checkpoints/toy/t2i.safetensors
cp "$runs/style/metrics.jsonl" checkpoints/toy/style_metrics.jsonl
