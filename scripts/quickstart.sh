#!/usr/bin/env bash
# The main job on built-in defaults: set up, train QMIX on the two-step game,
# and evaluate the trained team greedily. Prints the learned return (optimum 8).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
run_dir="runs/quickstart-$(date +%Y%m%d-%H%M%S)"
.venv/bin/marl-train --out "$run_dir" "$@"
.venv/bin/marl-eval "$run_dir"
