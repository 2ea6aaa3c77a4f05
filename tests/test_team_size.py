"""Teams that change size (docs/team-size.md): agent networks over max_agents slots, the
mixers and critics over slot-padded states, bundles with one graph per slot, and
``marl-eval --n-agents``."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from marl_edge.envs import EnvError, make, make_sized
from marl_edge.envs.rollout import Rollout
from marl_edge.export.graph import export_policy, io_specs
from marl_edge.train.config import ConfigError, apply_overrides
from marl_edge.train.networks import RNNAgent, pad_state
from marl_edge.train.registry import build_learner, get_algo

ENV = {"episode_limit": 6}  # rendezvous, short episodes


# ---- the agent network -------------------------------------------------------------------------
@pytest.mark.parametrize("shared", [True, False])
def test_agent_i_acts_the_same_at_n_and_n_plus_k(shared):
    """Agent i's Q values depend on its own inputs only: the same at n = 2 and n = 5
    (torch, team forward and unroll), and its exported graph gives the same."""
    torch.manual_seed(0)
    net = RNNAgent(7, 5, 2, hidden_dim=16, shared=shared, last_action=True, max_agents=5).eval()
    obs5 = torch.randn(3, 4, 5, 7)  # [B, T, n, o]
    obs2 = obs5[:, :, :2].clone()
    with torch.no_grad():
        q5, q2 = net.unroll(obs5), net.unroll(obs2)
        torch.testing.assert_close(q5[:, :, :2], q2, rtol=0, atol=1e-6)  # only a batch's float rounding differs
        assert torch.equal(q5[:, :, :2].argmax(-1), q2.argmax(-1))  # the same actions
        h5, h2 = net.init_hidden(3), net.with_team_size(2).init_hidden(3)
        assert h5.shape[1] == 2 and net.with_team_size(5).init_hidden(3).shape[1] == 5 and h2.shape[1] == 2
        f5, _, _ = net(obs5[:, 0], torch.zeros(3, 5, 16))
        f2, _, _ = net(obs2[:, 0], torch.zeros(3, 2, 16))
        torch.testing.assert_close(f5[:, :2], f2, rtol=0, atol=1e-6)
        assert torch.equal(f5[:, :2].argmax(-1), f2.argmax(-1))
        torch.testing.assert_close(f5, q5[:, 0], rtol=1e-6, atol=1e-6)  # forward and unroll agree
    # the exported graph of slot 1 on agent 1's inputs, at either team size
    pol = net.agent_policy(1).eval()
    ins, outs = io_specs(pol, 7, 5, 16)
    sess = ort.InferenceSession(export_policy(pol, ins, outs), providers=["CPUExecutionProvider"])
    feeds = {"obs": obs5[:, 0, 1].numpy(), "avail_actions": np.ones((3, 5), bool), "hidden": np.zeros((3, 16), np.float32),
             "prev_action": np.zeros((3, 5), np.float32)}
    q_onnx = sess.run(None, feeds)[[o["name"] for o in outs].index("q")]
    np.testing.assert_allclose(q_onnx, f2[:, 1].numpy(), atol=1e-5)
    np.testing.assert_allclose(q_onnx, f5[:, 1].numpy(), atol=1e-5)
    assert (q_onnx.argmax(-1) == f2[:, 1].argmax(-1).numpy()).all()
    with pytest.raises(ConfigError, match="5 agent slots"):
        net.with_team_size(6)


def test_default_slots_are_the_team_and_fixed_envs_refuse_more():
    spec = make("spread").spec
    assert not spec.resizable
    assert RNNAgent(4, 5, 3).max_agents == 3
    with pytest.raises(ConfigError, match="cannot"):
        build_learner("qmix", spec, apply_overrides(get_algo("qmix").config_cls(), {"max_agents": "5"}, "qmix"), 1, 0, 100)
    with pytest.raises(ConfigError, match=">= the env's n_agents"):
        build_learner("qmix", make("rendezvous").spec, apply_overrides(get_algo("qmix").config_cls(), {"max_agents": "2"}, "qmix"), 1, 0, 100)


# ---- envs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rendezvous", "warehouse"])
def test_resizable_envs_keep_their_observation_and_pad_their_state(name):
    small, big = make_sized(name, 2, 2), make_sized(name, 4, 2)
    assert small.spec.resizable and small.spec.n_agents == 2 and big.spec.n_agents == 4
    assert small.spec.obs_dim == big.spec.obs_dim and small.spec.n_actions == big.spec.n_actions
    assert small.spec.state_dim_at(4) == big.spec.state_dim
    st = small.reset(np.arange(2)).state
    padded = pad_state(torch.from_numpy(st), small.spec, 4).numpy()
    assert padded.shape == (2, big.spec.state_dim)
    at_p = at_s = 0
    for w in small.spec.state_agent_blocks:  # each block: the two agents' features, then zeros for slots 2 and 3
        np.testing.assert_array_equal(padded[:, at_p : at_p + 2 * w], st[:, at_s : at_s + 2 * w])
        assert not padded[:, at_p + 2 * w : at_p + 4 * w].any()
        at_p, at_s = at_p + 4 * w, at_s + 2 * w
    np.testing.assert_array_equal(padded[:, at_p:], st[:, at_s:])  # the part that does not grow with n, unchanged
    np.testing.assert_array_equal(pad_state(torch.from_numpy(st), small.spec, 2).numpy(), st)


def test_a_fixed_size_env_refuses_another_team_size_in_one_line():
    with pytest.raises(EnvError) as e:
        make_sized("spread", 5)
    assert "cannot change its team size" in str(e.value) and "\n" not in str(e.value)
    assert make_sized("spread", 3).spec.n_agents == 3  # its own size is fine


# ---- learners ------------------------------------------------------------------------------------
def _episodes(learner, n: int, count: int = 8) -> dict[str, np.ndarray]:
    env = make("rendezvous", n_envs=4, n_agents=n, **ENV)
    started = [0]

    def next_seeds(k: int) -> np.ndarray:
        k = min(k, count - started[0])
        started[0] += k
        return np.arange(started[0] - k, started[0])

    ro = Rollout(env, learner.behaviour_policy(0), next_seeds, record=True)
    eps = []
    while ro.active.any():
        eps.extend(ro.step())
    eps.sort(key=lambda e: e.index)
    return {k: np.stack([e.data[k] for e in eps]) for k in eps[0].data}


SETS = {"qmix": {"batch_size": "8", "episodes_per_update": "8"}, "vdn": {"batch_size": "8", "episodes_per_update": "8"},
        "mappo": {"batch_episodes": "8", "epochs": "2"}, "coma": {"batch_episodes": "8"}, "cw_qmix": {"batch_size": "8", "episodes_per_update": "8"}}


def _learner(algo: str, n: int, **sets: str):
    spec = make("rendezvous", n_agents=n, **ENV).spec
    cfg = apply_overrides(get_algo(algo).config_cls(), {**SETS[algo], **sets}, algo)
    return build_learner(algo, spec, cfg, n_envs=4, seed=0, total_steps=1000)


def _params(learner) -> dict[str, torch.Tensor]:
    return {f"{m}.{k}": v.detach().clone() for m, mod in learner.modules().items() for k, v in mod.state_dict().items()}


@pytest.mark.parametrize("algo", ["qmix", "vdn", "mappo", "coma", "cw_qmix"])
def test_learners_train_at_two_then_three_agents_with_the_same_parameters(algo):
    two = _learner(algo, 2, max_agents="4")
    stats = two.observe(_episodes(two, 2))
    assert stats and all(np.isfinite(s["loss"]) for s in stats)
    three = _learner(algo, 3, max_agents="4")
    for name, mod in two.modules().items():  # every module has the same shapes at n = 2 and 3: load strictly
        three.modules()[name].load_state_dict(mod.state_dict())
    before = _params(three)
    stats = three.observe(_episodes(three, 3))
    assert stats and all(np.isfinite(s["loss"]) for s in stats)
    after = _params(three)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("agent."))
    if algo != "vdn":  # the centralised part (mixer or critic) trained at n = 3 too
        assert any(not torch.equal(before[k], after[k]) for k in before if not k.startswith(("agent.", "target")))


# a default run's first update, measured with the code before max_agents existed (same seed,
# episodes and settings): the loss and the sum of every parameter after it
BEFORE = {"qmix": (0.3752329647541046, 37.72585575033008), "vdn": (0.2970046103000641, 42.51362750610133),
          "mappo": (0.8975886702537537, 11.759637924496928), "coma": (-0.007754149846732616, 1.5726638172372986)}


@pytest.mark.parametrize("algo", sorted(BEFORE))
def test_max_agents_equal_to_n_is_the_network_of_before(algo):
    fingerprints = []
    for sets in ({}, {"max_agents": "3"}):  # the default (the env's n) and the same n given explicitly
        torch.manual_seed(0)
        learner = _learner(algo, 3, **({"epochs": "5"} if algo == "mappo" else {}), **sets)
        stats = learner.observe(_episodes(learner, 3))
        total = sum(float(p.detach().double().sum()) for m in learner.modules().values() for p in m.parameters())
        fingerprints.append((stats[-1]["loss"], total))
    assert fingerprints[0] == fingerprints[1]  # bit for bit
    assert fingerprints[0] == pytest.approx(BEFORE[algo], rel=1e-6)


# ---- bundles and marl-eval -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_and_bundle(tmp_path_factory):
    from marl_edge.export.bundle import export_run
    from marl_edge.train.config import RunConfig
    from marl_edge.train.loop import train
    from marl_edge.train.rundir import create_run_dir, make_run_spec

    root = tmp_path_factory.mktemp("team_size")
    run = RunConfig(env="rendezvous", algo="vdn", steps=300, seed=4, eval_episodes=0, n_envs=4,
                    env_options={"n_agents": 2, "grid": 6, "episode_limit": 10}, save_buffer=False, eval_every=0)
    d = create_run_dir(make_run_spec(run, {"max_agents": "4", "batch_size": "4"}), root / "run")
    train(d)
    summary = export_run(d, root / "bundle", parity_steps=60)
    return d, root / "bundle", summary


def test_bundle_holds_a_graph_per_slot_parity_checked_at_two_and_four(run_and_bundle):
    from marl_edge.runtime.bundle import load_bundle

    _, bundle, summary = run_and_bundle
    manifest = json.loads((bundle / "swarm.json").read_text())
    assert manifest["max_agents"] == 4 and manifest["env_spec"]["n_agents"] == 2 and len(manifest["agents"]) == 4
    par = manifest["verification"]["parity_at_n"]
    assert set(par) == {"2", "4"}
    for p in par.values():
        assert p["action_agreement"] == 1.0 and max(p["max_abs_diff"].values()) <= 1e-5 and p["steps"] >= 60
    b = load_bundle(bundle)
    assert b.n_agents == 2 and b.slots == 4 and b.at_team_size(3).n_agents == 3
    old = {k: v for k, v in manifest.items() if k != "max_agents"}  # contract 5: a manifest without the key still reads
    assert type(b.manifest).parse({**old, "agents": old["agents"][:2], "parameters_per_agent": old["parameters_per_agent"]},
                                  "old").slots == 2


def test_marl_eval_n_agents_runs_and_bundles_agree_and_refuse_above_max(run_and_bundle, cli):
    run_dir, bundle, _ = run_and_bundle
    res = {}
    for target in (run_dir, bundle):
        p = cli("evaluate", str(target), "--episodes", "6", "--n-agents", "3", "--json", check=True)
        res[target] = json.loads(p.stdout.strip().splitlines()[-1])
        assert res[target]["n_agents"] == 3 and "team of 3 agents" in p.stderr
    assert res[run_dir]["returns"] == pytest.approx(res[bundle]["returns"], abs=1e-9)
    p = cli("evaluate", str(bundle), "--episodes", "2", "--n-agents", "6")
    assert p.returncode == 2 and "runs teams of 1..4 agents" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    from marl_edge.train.evaluation import evaluate_run

    with pytest.raises(ConfigError, match="4 agent slots"):  # the run directory refuses too (the same one-line error type)
        evaluate_run(run_dir, 2, n_agents=6)


def test_marl_eval_n_agents_refuses_a_fixed_size_env(tmp_path, cli):
    from marl_edge.train.config import RunConfig
    from marl_edge.train.loop import train
    from marl_edge.train.rundir import create_run_dir, make_run_spec

    run = RunConfig(env="two_step", algo="iql", steps=40, seed=0, eval_episodes=0, n_envs=2, save_buffer=False, eval_every=0)
    d = create_run_dir(make_run_spec(run, {"batch_size": "2"}), tmp_path / "run")
    train(d)
    p = cli("evaluate", str(d), "--episodes", "2", "--n-agents", "3")
    assert p.returncode == 2 and "cannot change its team size" in p.stderr and len(p.stderr.strip().splitlines()) == 1
