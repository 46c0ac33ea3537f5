#!/usr/bin/env bash
# The README's test command: install megapmc with its test extras, then run the whole suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh test,harness
python -m pytest -q -p no:cacheprovider "$@"
