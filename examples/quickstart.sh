#!/usr/bin/env bash
# The README's first command: install megapmc, then run the whole PMC-LLaMA method on the embedded
# sample data on the CPU (examples/run_sample_pipeline.py; arguments are passed on, e.g. --quick, --force).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
exec python examples/run_sample_pipeline.py "$@"
