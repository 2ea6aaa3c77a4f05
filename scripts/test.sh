#!/usr/bin/env bash
# Set up and run the tests. Learning checks marked `slow` run too unless
# FAST=1 (CI runs everything).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
marker=()
if [ "${FAST:-0}" = "1" ]; then marker=(-m "not slow"); fi
exec .venv/bin/python -m pytest "${marker[@]}" "$@"
