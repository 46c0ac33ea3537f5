#!/usr/bin/env bash
# One command for a session lent a GPU (bare machine: PyTorch + Triton; flash-attn / transformer-engine absent).
# Runs in under 8 minutes: kernel paths vs the reference, MFU of 13B-shaped layers per backend, the gpu tests.
#   bash benchmarks/gpu_check.sh                 # results also in $OUT/gpu_check.json when OUT is set
# A liger-kernel wheel placed in ./wheels/ (pip download liger-kernel --no-deps -d wheels) is installed first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G "wheels/liger_kernel-*.whl" > /dev/null; then
  pip install -q --no-deps --no-index wheels/liger_kernel-*.whl || echo "gpu_check: liger-kernel wheel did not install"
fi
json="${OUT:-/tmp}/gpu_check.json"
status=0
timeout 390 python benchmarks/gpu_check.py --time-limit 360 --json "$json" || status=$?
timeout 50 python -m pytest -q -p no:cacheprovider -m gpu tests/kernels/test_kernels_gpu.py -x \
  -k "not compile" || status=$?
exit $status
