#!/usr/bin/env bash
# Create .venv (if missing) and install marl-edge with the training, test and
# plot extras at the tested versions (constraints.txt). Idempotent and quick when
# nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.marl-edge-installed
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[train,dev,plot]"
  echo "$want" > "$stamp"
fi
