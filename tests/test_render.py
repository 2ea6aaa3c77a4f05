"""Episode pictures: every built-in env renders one frame per step (plus the
start), new envs render through the fallbacks, ``marl-eval --render`` draws
exactly the evaluated episode (run directory and bundle, the bundle without
torch), and ``marl-plot trace`` replays a hand-written swarm trace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from marl_edge.envs import EnvSpec, MultiAgentEnv, env_names, make, register  # noqa: E402
from marl_edge.viz.episode import EpisodeRecord  # noqa: E402
from marl_edge.viz.render import DOTS, SCENES, TABLE, scene_for, write_episode  # noqa: E402


def _random_episode(env_name: str, options: dict, seed: int, heard: bool = False) -> EpisodeRecord:
    env = make(env_name, n_envs=1, **options)
    spec, rng = env.spec, np.random.default_rng(seed)
    ts = env.reset(np.array([seed]))
    actions = []
    while not ts.done[0]:
        if spec.discrete:
            a = np.array([rng.choice(np.flatnonzero(ts.avail_actions[0, i])) for i in range(spec.n_agents)])
        else:
            a = rng.uniform(-1, 1, size=(spec.n_agents, spec.action_dim)).astype(np.float32)
        actions.append(a.tolist())
        ts = env.step(a[None])
    n = spec.n_agents
    routes = [[[(i + 1) % n] for i in range(n)] for _ in actions] if heard else None
    return EpisodeRecord(env_name, options, seed, actions, heard=routes)


def _frames(path: Path) -> list[np.ndarray]:
    with Image.open(path) as im:
        out = []
        for k in range(im.n_frames):
            im.seek(k)
            out.append(np.asarray(im.convert("RGB")))
        return out


BUILTIN = [
    ("rendezvous", {"episode_limit": 5}),
    ("warehouse", {"episode_limit": 6}),
    ("warehouse_sparse", {"episode_limit": 4}),
    ("spread", {"episode_limit": 4}),
    ("spread", {"episode_limit": 3, "continuous": True}),
    ("scout", {}),
    ("climbing", {}),
    ("penalty", {"episode_limit": 2}),
    ("matrix", {"payoff": [[[1, 0], [0, 0]], [[0, 0], [0, 5]]]}),  # three agents: the table fallback
    ("two_step", {}),
    ("dilemma", {"episode_limit": 3}),
    ("rps", {}),  # two teams, no positions: the table fallback
    ("team_view", {}),  # one team of rps against a random opponent: the table fallback
    ("tag", {"episode_limit": 5}),
]


def test_every_builtin_env_is_covered():
    """A new built-in env must be added to BUILTIN (it renders via a fallback anyway)."""
    assert {name for name, _ in BUILTIN} == set(env_names())


@pytest.mark.parametrize("name,options", BUILTIN, ids=[f"{n}{'_c' if o.get('continuous') else ''}" for n, o in BUILTIN])
def test_builtin_env_gif_has_one_frame_per_step_plus_the_start(tmp_path, name, options):
    rec = _random_episode(name, options, seed=3, heard=name in ("scout", "rendezvous"))
    out = tmp_path / f"{name}.gif"
    res = write_episode(rec, out)
    frames = _frames(out)
    assert len(frames) == len(rec.actions) + 1 == res["frames"]
    assert frames[0].shape[:2] == (432, 400)
    assert any(not np.array_equal(frames[k], frames[k + 1]) for k in range(len(frames) - 1))


class _Walk(MultiAgentEnv):
    """Three agents walking on a line in 2-D (positions, no scene of its own)."""

    def __init__(self, n_envs: int = 1, positions: bool = True) -> None:
        super().__init__(n_envs)
        self.spec = EnvSpec(name="viz_walk" if positions else "viz_blind", n_agents=3, obs_dim=1, state_dim=1, episode_limit=4,
                            n_actions=3, has_positions=positions)
        self.x = np.zeros((self.n_envs, 3))

    def _reset_slots(self, idx):
        for i in idx:
            self.x[i] = self.rng(int(i)).integers(0, 5, size=3)

    def _step(self, actions, active):
        self.x = self.x + (actions - 1)
        return np.repeat((-np.abs(self.x).mean(axis=1, keepdims=True)).astype(np.float32), 3, axis=1), self._t + 1 >= 4

    def _obs(self):
        return np.zeros((self.n_envs, 3, 1), dtype=np.float32)

    def _state(self):
        return np.zeros((self.n_envs, 1), dtype=np.float32)

    def _positions(self):
        return np.stack([self.x, np.arange(3.0)[None].repeat(self.n_envs, 0)], axis=-1).astype(np.float32)


@pytest.fixture
def walks():
    """Two test envs in the registry for one test, removed afterwards (other tests compare the
    registry with the built-in envs)."""
    from marl_edge.envs import registry

    register("viz_walk", lambda n_envs=1: _Walk(n_envs, True), "test env with positions", train_steps=100)
    register("viz_blind", lambda n_envs=1: _Walk(n_envs, False), "test env without positions", train_steps=100)
    yield
    for name in ("viz_walk", "viz_blind"):
        registry._REGISTRY.pop(name, None)


def test_new_envs_render_through_the_fallbacks(tmp_path, walks):
    assert scene_for("viz_walk", True) is DOTS and scene_for("viz_blind", False) is TABLE
    assert set(SCENES) >= {"rendezvous", "spread", "scout", "climbing", "penalty", "matrix"}
    for name in ("viz_walk", "viz_blind"):
        rec = _random_episode(name, {}, seed=1)
        out = tmp_path / f"{name}.png"
        res = write_episode(rec, out)
        with Image.open(out) as im:  # one contact sheet: 5 frames side by side
            assert im.size == (5 * 400, 432) and res["frames"] == 5


# ---- marl-eval --render --------------------------------------------------------------------


def test_marl_eval_renders_the_evaluated_episode(make_bundle, tmp_path, cli):
    """The frames are those of episode K of the evaluation: same return, one frame per step plus
    the start, under message loss (whose random stream spans the whole batch); the bundle path
    renders without loading torch."""
    bundle = make_bundle(tmp_path, "b", steps=800, comm="mean", topology="knn:2")
    run = tmp_path / "run_b"
    gif = tmp_path / "run.gif"
    p = cli("evaluate", str(run), "--episodes", "6", "--msg-loss", "0.3", "--render", str(gif), "--render-episode", "4", "--json", check=True)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["render"]["episode"] == 4 and res["render"]["return"] == res["returns"][4]
    assert len(_frames(gif)) == res["lengths"][4] + 1 == res["render"]["frames"]

    png = tmp_path / "bundle.png"
    script = ("import sys\nfrom marl_edge.cli import evaluate\nsys.argv = ['marl-eval'] + sys.argv[1:]\n"
              "try:\n    evaluate.main()\nexcept SystemExit as e:\n    code = e.code\n"
              "print(json.dumps({'torch': 'torch' in sys.modules, 'code': code}))\n").replace("import sys", "import json, sys", 1)
    q = subprocess.run([sys.executable, "-c", script, str(bundle), "--episodes", "6", "--msg-loss", "0.3", "--render", str(png),
                        "--render-episode", "4", "--json"], capture_output=True, text=True, timeout=300)
    assert q.returncode == 0, q.stderr[-2000:]
    *_, line, tail = q.stdout.strip().splitlines()
    bres, status = json.loads(line), json.loads(tail)
    assert status == {"torch": False, "code": 0}
    assert bres["returns"] == res["returns"] and bres["render"]["return"] == res["returns"][4]
    with Image.open(png) as im:
        assert im.size == ((res["lengths"][4] + 1) * 400, 432)

    bad = cli("evaluate", str(bundle), "--episodes", "3", "--render", str(png), "--render-episode", "3")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --render-episode must be in 0..2 (one of the --episodes 3)"
    bad = cli("evaluate", str(bundle), "--render", str(tmp_path / "x.mp4"))
    assert bad.returncode == 2 and "must end in .gif or .png" in bad.stderr


# ---- swarm traces ---------------------------------------------------------------------------


def _write_trace(path: Path, env_name: str, options: dict, seeds: list[int], absent_at: dict[int, list[int]]) -> list[int]:
    """A trace in the marl-swarm --trace format: the env stepped with fixed actions, agent 0
    heard by everyone, the absent agents playing the no-op (as the world applies it)."""
    env = make(env_name, n_envs=1, **options)
    spec = env.spec
    lines = [{"kind": "header", "env": env_name, "env_options": options, "spec": spec.to_dict(), "seed": 11,
              "episodes": len(seeds), "topology": "broadcast"}]
    lengths, returns = [], []
    for e, seed in enumerate(seeds):
        lines.append({"kind": "episode", "episode": e, "seed": seed})
        ts, t, ret = env.reset(np.array([seed])), 0, 0.0
        while not ts.done[0]:
            a = np.array([(t + i) % spec.n_actions for i in range(spec.n_agents)])
            gone = absent_at.get(t, []) if e == 1 else []
            a[gone] = spec.noop_action
            pos = ts.positions[0].tolist()
            ts = env.step(a[None])
            ret += float(ts.team_reward()[0])
            lines.append({"kind": "step", "episode": e, "t": t, "actions": a.tolist(), "reward": ts.reward[0].tolist(), "positions": pos,
                          "heard": [[0] if i and 0 not in gone else [] for i in range(spec.n_agents)],
                          "dropped": [0] * spec.n_agents, "absent": gone})
            t += 1
        lengths.append(t)
        returns.append(ret)
    lines.append({"kind": "end", "returns": returns})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return lengths


def test_marl_plot_trace_replays_the_recorded_episode(tmp_path, cli):
    trace = tmp_path / "trace.jsonl"
    opts = {"episode_limit": 6, "n_agents": 3, "grid": 8, "goal_size": 1}
    lengths = _write_trace(trace, "rendezvous", opts, [101, 202], absent_at={2: [1], 3: [1]})
    assert lengths[1] == 6  # nobody reaches the one goal cell: the episode runs to its limit
    out = tmp_path / "ep1.gif"
    p = cli("plot", "trace", str(trace), "--out", str(out), "--episode", "1", "--json", check=True)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    frames = _frames(out)
    assert len(frames) == lengths[1] + 1 == res["frames"]

    # the absences are drawn where the trace has them (frames 3 and 4: after steps 2 and 3), nowhere else
    rows = [json.loads(x) for x in trace.read_text().splitlines()]
    for r in rows:
        if r["kind"] == "step":
            r["absent"] = []
    quiet = tmp_path / "no_absent.jsonl"
    quiet.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out2 = tmp_path / "ep1_quiet.gif"
    cli("plot", "trace", str(quiet), "--out", str(out2), "--episode", "1", check=True)
    differs = [k for k, (a, b) in enumerate(zip(frames, _frames(out2))) if not np.array_equal(a, b)]
    assert differs == [3, 4]

    # a trace whose rewards the env does not reproduce is refused in one line
    for r in rows:
        if r["kind"] == "step" and r["episode"] == 1 and r["t"] == 2:
            r["reward"] = [99.0] * 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    q = cli("plot", "trace", str(bad), "--out", str(out), "--episode", "1")
    assert q.returncode == 2 and q.stderr.startswith("error: step 2: the replay's reward") and len(q.stderr.strip().splitlines()) == 1
    q = cli("plot", "trace", str(trace), "--out", str(out), "--episode", "5")
    assert q.returncode == 2 and "no episode 5 in the trace (episodes: 0, 1)" in q.stderr
