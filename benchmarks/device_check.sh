#!/usr/bin/env bash
# One command for a lent GPU: every check a GPU can show, summarised as JSON and Markdown under $OUT (or --out DIR).
#
#   bash benchmarks/device_check.sh                 # on the GPU machine (its own python3; nothing is installed)
#   bash benchmarks/device_check.sh --cpu-smoke     # here, without a GPU: the same steps on the CPU at toy sizes
#   python3 benchmarks/device_check.py --prepare    # here, once: device_data/ (3 CAVE scenes, ~20 MB, git-ignored)
#
# The package runs from the working tree (PYTHONPATH), so the GPU image needs none of its extras: colour-science,
# TensorRT and OpenVINO are not used; ONNX Runtime's CUDA provider is checked only where the image has it.
set -euo pipefail
cd "$(dirname "$0")/.."
# This checkout's .venv where there is one (a development machine); else the image's python3 (the GPU machine,
# where .venv is not carried).
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "$PYTHON" benchmarks/device_check.py "$@"
