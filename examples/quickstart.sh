#!/usr/bin/env bash
# The README's first command: install megapmc, then run the PMC-LLaMA method and its ablation on a
# generated medical world, on the CPU, and print the ablation table (examples/run_sample_pipeline.py,
# docs/ablation.md; arguments are passed on, e.g. --quick, --force).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
exec python examples/run_sample_pipeline.py "$@"
