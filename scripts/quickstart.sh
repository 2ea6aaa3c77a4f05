#!/usr/bin/env bash
# The main job on built-in defaults: set up, train QMIX on the two-step game,
# export the per-agent policies to an ONNX bundle (verified against torch),
# and evaluate the run (torch) and the bundle (ONNX Runtime, no torch) on the
# same episodes, side by side. Extra arguments go to marl-train
# (e.g. --env scout --set comm=attention).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
stamp="$(date +%Y%m%d-%H%M%S)"
run_dir="runs/quickstart-$stamp"
bundle="bundles/quickstart-$stamp"
.venv/bin/marl-train --out "$run_dir" "$@"
.venv/bin/marl-export "$run_dir" --out "$bundle"
.venv/bin/marl-eval "$run_dir" --json > "$run_dir/eval_torch.json"
.venv/bin/marl-eval "$bundle" --json > "$run_dir/eval_bundle.json"
.venv/bin/python - "$run_dir/eval_torch.json" "$run_dir/eval_bundle.json" <<'PY'
import json, sys
t, o = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
print(f"\n| evaluation ({t['episodes']} episodes, seed {t['seed']}) | mean return |")
print("|---|---|")
print(f"| run, torch                        | {t['mean_return']:.3f} |")
print(f"| bundle, ONNX Runtime              | {o['mean_return']:.3f} |")
print(f"episode returns identical: {t['returns'] == o['returns']}")
PY
