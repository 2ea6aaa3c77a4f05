#!/usr/bin/env bash
# Install EPyMARL (https://github.com/uoe-agents/epymarl) beside marl-edge, for
# benchmarks/peer.py. Nothing is installed into the repository or its .venv.
#
#   bash benchmarks/peer_setup.sh [TARGET]          # default TARGET: $HOME/peer
#
# Leaves:
#   TARGET/epymarl            a clone of EPyMARL at $EPYMARL_COMMIT (code unchanged)
#   TARGET/venv               its own venv: EPyMARL's requirements.txt + LBF + RWARE
#   TARGET/epymarl-freeze.txt pip freeze of that venv (what was installed)
#
# Environment:
#   EPYMARL_REPO    where to clone from (default: the public GitHub repository;
#                   a local clone or bare mirror works too)
#   EPYMARL_COMMIT  the commit to check out (default: the one the README's table
#                   was measured with)
#   SMACLITE_REPO, SMACLITE_COMMIT  the same for SMAClite (see below)
#   PYTHON          the interpreter for the venv (default python3; tested 3.11)
#
# What is adapted, and why (EPyMARL's code itself is not touched):
#   * torch is pinned to 2.13.0, the CPU build marl-edge's constraints.txt uses
#     (requirements.txt says plain "torch", which pip would resolve to a
#     multi-GB CUDA build).
#   * torchvision is left out: EPyMARL's src/ never imports it, and a PyPI
#     torchvision does not match the pinned CPU torch.
#   * lbforaging==2.0.0 and rware==2.0.0, the versions in marl-edge's
#     constraints.txt, so both frameworks step the same envs (they are what
#     EPyMARL's env_requirements.txt names, unpinned).
#   * SMAClite is installed although no SMAClite task is run: EPyMARL's
#     src/envs/__init__.py imports it unconditionally, so main.py cannot start
#     without it. EPyMARL's env_requirements.txt installs it from its GitHub
#     repository (it is not on PyPI); so does this script, at a fixed commit.
#     Its setup.py pins Rtree==1.0.0, which has no wheel for Python 3.11 and,
#     built from source, cannot find the libspatialindex C library at import.
#     So smaclite goes in with --no-deps, its other requirements as named, and
#     a newer Rtree whose wheel bundles the library (smaclite's own envs, the
#     only users of Rtree, are never made here).
#   * Every other requirement is installed as requirements.txt names it;
#     PIN_EXTRA below holds the extra pins this script needed, each with the
#     reason. The versions pip chose are in TARGET/epymarl-freeze.txt.
set -euo pipefail

TARGET="${1:-$HOME/peer}"
EPYMARL_REPO="${EPYMARL_REPO:-https://github.com/uoe-agents/epymarl.git}"
EPYMARL_COMMIT="${EPYMARL_COMMIT:-cbc38c09588064eab978501d0f12c2cf58fa7fc2}"
SMACLITE_REPO="${SMACLITE_REPO:-https://github.com/uoe-agents/smaclite.git}"
SMACLITE_COMMIT="${SMACLITE_COMMIT:-0d6abbea1334011984ae4704a0ef7a33c36057d6}"
PY="${PYTHON:-python3}"
HERE="$(cd "$(dirname "$0")" && pwd)"

# Extra pins (empty unless a requirement failed to install or run as named).
PIN_EXTRA=(
  # sacred 0.8.7 (sacred/dependencies.py) imports pkg_resources, which the
  # newest setuptools no longer ships; pbr pulls setuptools in unpinned
  "setuptools<81"
)

mkdir -p "$TARGET"
TARGET="$(cd "$TARGET" && pwd)"

if [ ! -d "$TARGET/epymarl/.git" ]; then
  git clone --quiet "$EPYMARL_REPO" "$TARGET/epymarl"
fi
git -C "$TARGET/epymarl" checkout --quiet "$EPYMARL_COMMIT"
echo "EPyMARL at $(git -C "$TARGET/epymarl" log -1 --format='%H (%ad)' --date=short)"
if [ ! -d "$TARGET/smaclite/.git" ]; then
  git clone --quiet "$SMACLITE_REPO" "$TARGET/smaclite"
fi
git -C "$TARGET/smaclite" checkout --quiet "$SMACLITE_COMMIT"

if [ ! -x "$TARGET/venv/bin/python" ]; then
  "$PY" -m venv "$TARGET/venv"
fi
VPY="$TARGET/venv/bin/python"
"$VPY" -m pip install --quiet --upgrade pip

# the marl-edge versions of the shared packages
cons="$TARGET/peer-constraints.txt"
{
  grep -E '^(torch|lbforaging|rware)==' "$HERE/../constraints.txt"
  for p in "${PIN_EXTRA[@]}"; do echo "$p"; done
} > "$cons"

# EPyMARL's requirements without torch / torchvision (torch comes pinned, first)
reqs="$TARGET/peer-requirements.txt"
grep -vE '^\s*(torch|torchvision)\s*$' "$TARGET/epymarl/requirements.txt" > "$reqs"

"$VPY" -m pip install --quiet -c "$cons" "$(grep -E '^torch==' "$cons")"
"$VPY" -m pip install --quiet -c "$cons" -r "$reqs"
"$VPY" -m pip install --quiet -c "$cons" lbforaging rware setuptools
# SMAClite: see the header (its Rtree==1.0.0 pin is replaced by a newer Rtree wheel; pip then
# reports "smaclite 0.0.1 requires Rtree==1.0.0" as a dependency conflict: expected)
"$VPY" -m pip install --quiet --no-deps "$TARGET/smaclite"
"$VPY" -m pip install --quiet -c "$cons" numpy gymnasium pygame scikit-learn "Rtree>1.0"

"$VPY" -m pip freeze --all > "$TARGET/epymarl-freeze.txt"

# smoke check: EPyMARL's modules import and both envs are made through its gymma wrapper
(cd "$TARGET/epymarl/src" && "$VPY" - <<'EOF'
import torch, sacred, gymnasium
from envs import REGISTRY
for key, limit in (("lbforaging:Foraging-8x8-2p-2f-coop-v3", 50), ("rware:rware-tiny-2ag-v2", 500)):
    env = REGISTRY["gymma"](key=key, time_limit=limit, pretrained_wrapper=None, seed=0,
                            common_reward=True, reward_scalarisation="sum")
    env.reset()
    print(f"ok  {key}: {env.n_agents} agents, obs {env.get_obs_size()}, actions {env.get_total_actions()}")
print(f"torch {torch.__version__}, sacred {sacred.__version__}, gymnasium {gymnasium.__version__}")
EOF
)
echo
echo "EPyMARL ready:  --epymarl $TARGET/epymarl --epymarl-python $VPY"
