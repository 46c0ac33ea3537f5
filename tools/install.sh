#!/usr/bin/env bash
# Install megapmc (compiling megapmc._C) into the current Python. Usage: bash tools/install.sh [EXTRA]
# torch is pinned first to the CPU wheel kept on these machines; a bare "torch" would fetch a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".${extra:+[$extra]}"
python -c "import megapmc._C" || { echo "megapmc._C failed to build: see the compiler output above" >&2; exit 1; }
