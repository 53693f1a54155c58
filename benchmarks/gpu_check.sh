#!/usr/bin/env bash
# GPU check: StyleGAN2 training speed at 64 and 256 px (float32, mixed precision, channels-last,
# torch.compile on and off, the real training loop), peak memory, mixed precision against float32, the
# share of the GPU's peak FLOP rate, and NVIDIA's own code side by side when a checkout is given.
# Writes $OUT/gpu_check.json, $OUT/gpu_check.txt and $OUT/nvidia-smi.txt; about 5 minutes on one GPU, cut
# at GPU_CHECK_TIMEOUT seconds (default 470: under 8 minutes). See benchmarks/gpu_check.py for the details.
#
#   OUT=/tmp/gpu-check benchmarks/gpu_check.sh
#   OUT=/tmp/gpu-check benchmarks/gpu_check.sh --official-repo ~/src/stylegan2-ada-pytorch
#   OUT=/tmp/gpu-check benchmarks/gpu_check.sh --device cpu --resolutions 16 --steps 2   # any option
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/gpu_check_out}"
if [ -z "${PYTHON:-}" ]; then  # the project's venv, else the python3 that holds torch
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
mkdir -p "$OUT"
{ command -v nvidia-smi >/dev/null && nvidia-smi || echo "no nvidia-smi on this machine"; } >"$OUT/nvidia-smi.txt" 2>&1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
budget="${GPU_CHECK_TIMEOUT:-470}"
# The script stops starting variants at 85% of the budget and writes its JSON after every measurement, so
# a run cut by the timeout still leaves what it measured.
exec timeout --kill-after=10 "$budget" "$PYTHON" "$ROOT/benchmarks/gpu_check.py" --out "$OUT" \
    --budget-s "$((budget * 85 / 100))" "$@"
