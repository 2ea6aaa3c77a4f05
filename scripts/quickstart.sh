#!/usr/bin/env bash
# The main job, end to end on built-in defaults: set up; train a communicating
# QMIX team on `scout` (one agent sees the target, the others must be told);
# export the per-agent policies to an ONNX bundle (verified against torch);
# evaluate the run (torch) and the bundle (ONNX Runtime) in process; run the
# bundle as a swarm (one OS process per agent, messages peer to peer over
# ZeroMQ, lock-step); print the three side by side. Arguments replace the
# training defaults (e.g. `--env two_step`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
stamp="$(date +%Y%m%d-%H%M%S)"
run_dir="runs/quickstart-$stamp"
bundle="bundles/quickstart-$stamp"
episodes=32
if [ "$#" -eq 0 ]; then
  set -- --env scout --algo qmix --set comm=attention
fi
.venv/bin/marl-train --out "$run_dir" "$@"
.venv/bin/marl-export "$run_dir" --out "$bundle"
.venv/bin/marl-eval "$run_dir" --episodes "$episodes" --json > "$run_dir/eval_torch.json"
.venv/bin/marl-eval "$bundle" --episodes "$episodes" --json > "$run_dir/eval_bundle.json"
.venv/bin/marl-swarm "$bundle" --episodes "$episodes" --json --quiet > "$run_dir/swarm.json"
.venv/bin/python - "$run_dir" <<'PY'
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
last = lambda name: json.loads((d / name).read_text().strip().splitlines()[-1])
t, o, s = last("eval_torch.json"), last("eval_bundle.json"), last("swarm.json")
print(f"\n| {t['episodes']} episodes, seed {t['seed']} | mean return | episode returns identical to training's |")
print("|---|---|---|")
print(f"| trained team, torch, one process         | {t['mean_return']:.3f} | - |")
print(f"| exported bundle, ONNX Runtime, one process | {o['mean_return']:.3f} | {o['returns'] == t['returns']} |")
print(f"| swarm: {s['agents']} agent processes, ZeroMQ       | {s['mean_return']:.3f} | {s['returns'] == t['returns']} |")
if s.get("msg_frame_bytes"):
    print(f"\nswarm: {s['steps_per_s']:,.0f} steps/s, {s['msgs_per_step']:.0f} messages = {s['msg_bytes_per_step']:,.0f} B per step, "
          f"act p50 {s['act_latency_us_p50']:.0f} µs, dropped {s['dropped']}, invalid {s['invalid_frames']}")
PY
