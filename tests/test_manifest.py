"""The typed manifest: ``swarm.json`` and ``agent_<i>/agent.json`` are parsed and
checked once (``runtime.bundle.Manifest`` / ``AgentCard``); every malformed field
is one ``BundleError`` that names the file and the field path, and every CLI
that reads a bundle turns it into one ``error:`` line with exit status 2.

One tiny communicating bundle per session; each case mutates a copy of its
JSON (in process), a handful go through the command lines.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from marl_edge.runtime.bundle import AgentCard, BundleError, Manifest, load_agent_dir, load_bundle, sha256_file

DELETE = object()  # the mutation that removes the key


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, make_bundle) -> Path:
    """A 4-agent scout bundle with messages (knn:2, d=4), trained for a few hundred steps."""
    return make_bundle(tmp_path_factory.mktemp("manifest"), "b", steps=300, comm="mean", topology="knn:2", msg_dim="4")


@pytest.fixture(scope="session")
def raw(tiny) -> dict[str, Any]:
    return json.loads((tiny / "swarm.json").read_text())


def mutate(d: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    d = copy.deepcopy(d)
    at = d
    for key in path[:-1]:
        at = at[key]
    if value is DELETE:
        del at[path[-1]]
    elif callable(value):
        at[path[-1]] = value(at[path[-1]])
    else:
        at[path[-1]] = value
    return d


# ---- swarm.json: every field, missing / wrong type / out of range / inconsistent ---------------

TOP = ["created", "marl_edge_version", "versions", "env", "env_spec", "algo", "comm", "topology", "msg_dim", "k_max", "recurrent",
       "hidden_dim", "opset", "quantize", "inputs", "outputs", "parameters_per_agent", "agents", "source"]
SPEC = ["name", "n_agents", "obs_dim", "state_dim", "episode_limit", "n_actions", "action_dim", "action_low", "action_high",
        "has_positions", "pos_dim", "shared_reward", "noop_action", "options"]
SHA = "agents[2].files['policy.onnx']"

MANIFEST_CASES: list[tuple[str, tuple, Any, str]] = [
    *[(f"missing-{k}", (k,), DELETE, f"{k}: missing") for k in TOP],
    *[(f"missing-env_spec.{k}", ("env_spec", k), DELETE, f"env_spec.{k}: missing") for k in SPEC],
    # format and version
    ("format-other", ("format",), "some-other-bundle", "not a marl-edge bundle manifest (format 'some-other-bundle')"),
    ("format-missing", ("format",), DELETE, "not a marl-edge bundle manifest (format None)"),
    ("format_version-2", ("format_version",), 2, "bundle format version 2 is not supported"),
    ("format_version-str", ("format_version",), "1", "bundle format version 1 is not supported"),
    ("format_version-missing", ("format_version",), DELETE, "bundle format version None is not supported"),
    # plain fields
    ("created-int", ("created",), 5, "created: expected a string, got int 5"),
    ("marl_edge_version-null", ("marl_edge_version",), None, "marl_edge_version: expected a string, got null"),
    ("versions-list", ("versions",), [], "versions: expected an object"),
    ("algo-empty", ("algo",), "", "algo: expected a non-empty string"),
    ("comm-unknown", ("comm",), "carrier-pigeon", "comm: expected one of 'none', 'mean', 'knn', 'attention'"),
    ("comm-none-with-topology", ("comm",), "none", "comm: comm 'none' has no messages"),
    ("msg_dim-negative", ("msg_dim",), -1, "msg_dim: expected an integer >= 0, got -1"),
    ("msg_dim-zero-with-topology", ("msg_dim",), 0, "msg_dim: expected >= 1 with a topology, got 0"),
    ("msg_dim-vs-graph", ("msg_dim",), 3, "inputs[3]: msg_in should be float32 [null, 2, 3]"),
    ("k_max-str", ("k_max",), "2", "k_max: expected an integer, got str '2'"),
    ("k_max-vs-topology", ("k_max",), 3, "topology.k_max: expected the manifest's k_max (3), got 2"),
    ("recurrent-str", ("recurrent",), "yes", "recurrent: expected true or false"),
    ("recurrent-vs-graph", ("recurrent",), False, "recurrent: manifest says recurrent=False but the policy inputs have 'hidden'"),
    ("hidden_dim-zero", ("hidden_dim",), 0, "hidden_dim: expected an integer >= 1, got 0"),
    ("hidden_dim-vs-graph", ("hidden_dim",), 65, "inputs[2]: hidden should be float32 [null, 65]"),
    ("opset-float", ("opset",), 17.0, "opset: expected an integer, got float 17.0"),
    ("quantize-unknown", ("quantize",), "int4", "quantize: expected one of 'none', 'int8', got 'int4'"),
    ("parameters_per_agent-str", ("parameters_per_agent",), "many", "parameters_per_agent: expected an integer"),
    ("parameters_per_agent-short-list", ("parameters_per_agent",), [10, 10], "parameters_per_agent: expected one count per agent (4), got 2"),
    ("parameters_per_agent-zero", ("parameters_per_agent",), 0, "parameters_per_agent: expected an integer >= 1"),
    ("verification-list", ("verification",), [], "verification: expected an object"),
    # env, env_spec
    ("env-str", ("env",), "scout", "env: expected an object, got str 'scout'"),
    ("env.name-missing", ("env", "name"), DELETE, "env.name: missing"),
    ("env.name-int", ("env", "name"), 3, "env.name: expected a string"),
    ("env.options-missing", ("env", "options"), DELETE, "env.options: missing"),
    ("env.options-list", ("env", "options"), [], "env.options: expected an object"),
    ("env_spec-int", ("env_spec",), 3, "env_spec: expected an object"),
    ("env_spec.n_agents-str", ("env_spec", "n_agents"), "4", "env_spec.n_agents: expected an integer, got str '4'"),
    ("env_spec.n_agents-bool", ("env_spec", "n_agents"), True, "env_spec.n_agents: expected an integer, got bool true"),
    ("env_spec.n_agents-zero", ("env_spec", "n_agents"), 0, "env_spec.n_agents: expected an integer >= 1, got 0"),
    ("env_spec.n_agents-vs-topology", ("env_spec", "n_agents"), 5, "topology.n_agents: expected env_spec.n_agents (5), got 4"),
    ("env_spec.obs_dim-zero", ("env_spec", "obs_dim"), 0, "env_spec.obs_dim: expected an integer >= 1"),
    ("env_spec.obs_dim-vs-graph", ("env_spec", "obs_dim"), 7, "inputs[0]: obs should be float32 [null, 7]"),
    ("env_spec.state_dim-negative", ("env_spec", "state_dim"), -1, "env_spec.state_dim: expected an integer >= 0"),
    ("env_spec.episode_limit-float", ("env_spec", "episode_limit"), 25.5, "env_spec.episode_limit: expected an integer"),
    ("env_spec.n_actions-zero", ("env_spec", "n_actions"), 0, "env_spec.n_actions: expected an integer >= 1"),
    ("env_spec.n_actions-null", ("env_spec", "n_actions"), None, "env_spec.n_actions: exactly one of n_actions"),
    ("env_spec.action_dim-both", ("env_spec", "action_dim"), 2, "env_spec.n_actions: exactly one of n_actions"),
    ("env_spec.action_low-str", ("env_spec", "action_low"), "-1", "env_spec.action_low: expected a finite number"),
    ("env_spec.action_high-null", ("env_spec", "action_high"), None, "env_spec.action_high: expected a finite number"),
    ("env_spec.has_positions-int", ("env_spec", "has_positions"), 1, "env_spec.has_positions: expected true or false"),
    ("env_spec.pos_dim-zero", ("env_spec", "pos_dim"), 0, "env_spec.pos_dim: expected an integer >= 1"),
    ("env_spec.shared_reward-str", ("env_spec", "shared_reward"), "yes", "env_spec.shared_reward: expected true or false"),
    ("env_spec.noop_action-out-of-range", ("env_spec", "noop_action"), 99, "env_spec.noop_action: expected an action in 0..3, got 99"),
    ("env_spec.noop_action-negative", ("env_spec", "noop_action"), -1, "env_spec.noop_action: expected an integer >= 0"),
    ("env_spec.options-null", ("env_spec", "options"), None, "env_spec.options: expected an object, got null"),
    # topology
    ("topology-str", ("topology",), "knn:2", "topology: expected an object"),
    ("topology-null-with-messages", ("topology",), None, "comm: comm 'mean' needs a topology"),
    ("topology.spec-missing", ("topology", "spec"), DELETE, "topology.spec: missing"),
    ("topology.spec-bogus", ("topology", "spec"), "teleport:3", "topology: "),
    ("topology.k_max-missing", ("topology", "k_max"), DELETE, "topology.k_max: missing"),
    ("topology.n_agents-str", ("topology", "n_agents"), "4", "topology.n_agents: expected an integer"),
    # inputs, outputs
    ("inputs-object", ("inputs",), {}, "inputs: expected a list, got object"),
    ("inputs[0]-str", ("inputs", 0), "obs", "inputs[0]: expected an object"),
    ("inputs[0].name-missing", ("inputs", 0, "name"), DELETE, "inputs[0].name: missing"),
    ("inputs[0].shape-missing", ("inputs", 0, "shape"), DELETE, "inputs[0].shape: missing"),
    ("inputs[0].shape-no-batch", ("inputs", 0, "shape"), [1, 10], "inputs[0].shape: expected [null, ...]"),
    ("inputs[0].shape-zero", ("inputs", 0, "shape"), [None, 0], "inputs[0].shape[1]: expected an integer >= 1, got 0"),
    ("inputs[0].dtype-float64", ("inputs", 0, "dtype"), "float64", "inputs[0].dtype: expected one of 'float32', 'bool', 'int64'"),
    ("inputs[1].name-twice", ("inputs", 1, "name"), "obs", "inputs[1].name: 'obs' is listed twice"),
    ("inputs-without-obs", ("inputs", 0, "name"), "observation", "inputs: no 'obs' input"),
    ("inputs-without-msg", ("inputs",), lambda xs: [x for x in xs if not x["name"].startswith("msg")],
     "inputs: msg_dim is 4 but the policy lacks 'msg_in'"),
    ("inputs-without-avail", ("inputs",), lambda xs: [x for x in xs if x["name"] != "avail_actions"],
     "inputs: a discrete policy needs 'avail_actions'"),
    ("outputs-without-action", ("outputs", 0, "name"), "act", "outputs: no 'action' output"),
    ("outputs[0].dtype", ("outputs", 0, "dtype"), "float32", "outputs[0]: action should be int64 [null]"),
    ("outputs-without-hidden_out", ("outputs",), lambda xs: [x for x in xs if x["name"] != "hidden_out"],
     "recurrent: manifest says recurrent=True but the policy outputs lack 'hidden_out'"),
    # agents
    ("agents-object", ("agents",), {}, "agents: expected a list"),
    ("agents-one-short", ("agents",), lambda xs: xs[:-1], "agents: the manifest lists 3 agents, env_spec.n_agents says 4"),
    ("agents[2]-list", ("agents", 2), [], "agents[2]: expected an object, got list"),
    ("agents[2].id-missing", ("agents", 2, "id"), DELETE, "agents[2].id: missing"),
    ("agents[2].id-wrong", ("agents", 2, "id"), 3, "agents[2].id: expected 2 (entry j is agent j), got 3"),
    ("agents[2].dir-missing", ("agents", 2, "dir"), DELETE, "agents[2].dir: missing"),
    ("agents[2].dir-int", ("agents", 2, "dir"), 2, "agents[2].dir: expected a string"),
    ("agents[2].dir-outside", ("agents", 2, "dir"), "../agent_2", "agents[2].dir: expected a folder name inside the bundle"),
    ("agents[2].files-missing", ("agents", 2, "files"), DELETE, "agents[2].files: missing"),
    ("agents[2].files-list", ("agents", 2, "files"), [], "agents[2].files: expected an object"),
    ("agents[2].files-no-card", ("agents", 2, "files", "agent.json"), DELETE, "agents[2].files: 'agent.json' is not listed"),
    ("agents[2].files-outside", ("agents", 2, "files"), lambda fs: {**fs, "../x": "0" * 64}, "agents[2].files: expected file names inside"),
    ("agents[2].sha-short", ("agents", 2, "files", "policy.onnx"), "abc", f"{SHA}: expected a sha256 of 64 hex characters, got str 'abc'"),
    ("agents[2].sha-upper", ("agents", 2, "files", "policy.onnx"), lambda s: s.upper(), f"{SHA}: expected a sha256 of 64 hex characters"),
    ("agents[2].sha-int", ("agents", 2, "files", "policy.onnx"), 7, f"{SHA}: expected a sha256 of 64 hex characters, got int 7"),
    # source
    ("source-str", ("source",), "run", "source: expected an object"),
    ("source.run_dir-missing", ("source", "run_dir"), DELETE, "source.run_dir: missing"),
    ("source.checkpoint_step-negative", ("source", "checkpoint_step"), -1, "source.checkpoint_step: expected an integer >= 0"),
    ("source.seed-str", ("source", "seed"), "1", "source.seed: expected an integer, got str '1'"),
    ("source.seed-missing", ("source", "seed"), DELETE, "source.seed: missing"),
    ("source.git-null", ("source", "git"), None, "source.git: expected an object, got null"),
]


@pytest.mark.parametrize("path,value,message", [c[1:] for c in MANIFEST_CASES], ids=[c[0] for c in MANIFEST_CASES])
def test_every_malformed_manifest_field_is_one_named_error(raw, path, value, message):
    where = Path("/bundles/scout/swarm.json")
    with pytest.raises(BundleError) as e:
        Manifest.parse(mutate(raw, path, value), where)
    text = str(e.value)
    assert text.startswith(f"{where}: ") and message in text, text
    assert "\n" not in text
    if path[0] not in ("format", "format_version"):
        assert text.endswith("re-export the bundle with marl-export"), text


def test_a_manifest_that_is_not_an_object_is_refused(tmp_path):
    with pytest.raises(BundleError, match=r"swarm.json is corrupt \(not a JSON object\)"):
        Manifest.parse([1, 2], tmp_path / "swarm.json")


def test_a_silent_manifest_parses_and_its_messages_must_be_absent(raw):
    """The same team without messages: topology null, msg_dim and k_max 0, no msg_* in the graph."""
    silent = mutate(raw, ("inputs",), lambda xs: [x for x in xs if not x["name"].startswith("msg")])
    silent = mutate(silent, ("outputs",), lambda xs: [x for x in xs if x["name"] != "msg_out"])
    silent.update(comm="none", topology=None, msg_dim=0, k_max=0)
    m = Manifest.parse(silent, Path("swarm.json"))
    assert not m.communicates and m.msg_dim == 0 and Manifest.parse(m.to_dict(), Path("swarm.json")) == m
    for key, value, message in [("msg_dim", 4, "msg_dim: expected 0 without a topology, got 4"),
                                ("k_max", 2, "k_max: expected 0 without a topology, got 2"),
                                ("comm", "mean", "comm: comm 'mean' needs a topology")]:
        with pytest.raises(BundleError, match=f"swarm.json: {message}"):
            Manifest.parse({**silent, key: value}, Path("swarm.json"))


# ---- the round trip: one schema for writing and reading -----------------------------------------


def test_manifest_and_cards_round_trip_through_the_types(tiny):
    b = load_bundle(tiny)
    m = b.manifest
    assert Manifest.parse(m.to_dict(), tiny / "swarm.json") == m
    # what marl-export wrote is exactly the type's dict form (same keys, same order, same values)
    assert (tiny / "swarm.json").read_text() == json.dumps(m.to_dict(), indent=2)
    assert m.n_agents == 4 and m.communicates and (m.msg_dim, m.k_max) == (4, 2) and m.recurrent
    assert m.topology == {"spec": "knn:2", "kind": "knn", "n_agents": 4, "k_max": 2}
    assert [a.dir for a in m.agents] == [f"agent_{i}" for i in range(4)] and m.source.seed == 1
    assert m.input_names == ["obs", "avail_actions", "hidden", "msg_in", "msg_mask"]
    for i in range(m.n_agents):
        entry = b.agent(i)
        card_text = (entry.dir / "agent.json").read_text()
        assert AgentCard.parse(entry.card.to_dict(), entry.dir / "agent.json") == entry.card
        assert card_text == json.dumps(entry.card.to_dict(), indent=2)
        assert entry.card == AgentCard.for_agent(m, i, m.agents[i].files["policy.onnx"])
    with pytest.raises(Exception):  # frozen
        m.msg_dim = 3  # type: ignore[misc]


# ---- agent.json ---------------------------------------------------------------------------------

CARD_CASES: list[tuple[str, tuple, Any, str]] = [
    ("agent-missing", ("agent",), DELETE, "agent id None is not in this bundle (0..3)"),
    ("agent-str", ("agent",), "1", "agent id '1' is not in this bundle"),
    ("agent-out-of-range", ("agent",), 9, "agent id 9 is not in this bundle (0..3)"),
    ("format_version-2", ("format_version",), 2, "agent card version 2 != bundle version 1"),
    ("policy-missing", ("policy",), DELETE, "agent.json: policy: missing"),
    ("policy-outside", ("policy",), "../agent_0/policy.onnx", "agent.json: policy: expected a file name inside the agent folder"),
    ("policy-unlisted", ("policy",), "other.onnx", "agent.json: policy 'other.onnx'"),
    ("policy_sha256-missing", ("policy_sha256",), DELETE, "agent.json: policy_sha256: missing"),
    ("policy_sha256-short", ("policy_sha256",), "abc", "agent.json: policy_sha256: expected a sha256 of 64 hex characters, got str 'abc'"),
    ("policy_sha256-other", ("policy_sha256",), "0" * 64, "is not what swarm.json lists (agent 1)"),
    ("n_agents-str", ("n_agents",), "4", "agent.json: n_agents: expected an integer"),
    ("n_agents-other", ("n_agents",), 5, "agent.json: its n_agents do not match swarm.json's (agent 1)"),
    ("inputs-missing", ("inputs",), DELETE, "agent.json: inputs: missing"),
    ("inputs-other", ("inputs",), lambda xs: xs[:-1], "agent.json: its inputs do not match swarm.json's (agent 1)"),
    ("inputs[0].dtype", ("inputs", 0, "dtype"), "half", "agent.json: inputs[0].dtype: expected one of"),
    ("outputs-int", ("outputs",), 3, "agent.json: outputs: expected a list, got int 3"),
    ("recurrent-missing", ("recurrent",), DELETE, "agent.json: recurrent: missing"),
    ("recurrent-other", ("recurrent",), False, "agent.json: its recurrent do not match swarm.json's"),
    ("hidden_dim-zero", ("hidden_dim",), 0, "agent.json: hidden_dim: expected an integer >= 1, got 0"),
    ("hidden_dim-other", ("hidden_dim",), 63, "agent.json: its hidden_dim do not match swarm.json's"),
    ("msg_dim-negative", ("msg_dim",), -1, "agent.json: msg_dim: expected an integer >= 0"),
    ("k_max-other", ("k_max",), 9, "agent.json: its k_max do not match swarm.json's"),
    ("quantize-unknown", ("quantize",), "fp16", "agent.json: quantize: expected one of 'none', 'int8'"),
    ("quantize-other", ("quantize",), "int8", "agent.json: its quantize do not match swarm.json's"),
]


def _tamper_card(bundle: Path, out: Path, path: tuple, value: Any) -> Path:
    """A copy of ``bundle`` whose agent 1 card is mutated, with the card's new sha256 in swarm.json
    (so the card's own checks are what fail, not its checksum)."""
    shutil.copytree(bundle, out)
    card_path = out / "agent_1" / "agent.json"
    card_path.write_text(json.dumps(mutate(json.loads(card_path.read_text()), path, value), indent=2))
    m = json.loads((out / "swarm.json").read_text())
    m["agents"][1]["files"]["agent.json"] = sha256_file(card_path)
    (out / "swarm.json").write_text(json.dumps(m, indent=2))
    return out


@pytest.mark.parametrize("path,value,message", [c[1:] for c in CARD_CASES], ids=[c[0] for c in CARD_CASES])
def test_every_malformed_card_field_is_one_named_error(tiny, tmp_path, path, value, message):
    b = _tamper_card(tiny, tmp_path / "b", path, value)
    m = Manifest.parse(json.loads((b / "swarm.json").read_text()), b / "swarm.json")
    with pytest.raises(BundleError) as e:
        load_agent_dir(b / "agent_1", m)
    text = str(e.value)
    assert str(b / "agent_1") in text and message in text and "\n" not in text, text


def test_a_changed_card_is_reported_as_changed_before_its_fields(tiny, tmp_path):
    shutil.copytree(tiny, tmp_path / "b")
    card = tmp_path / "b" / "agent_1" / "agent.json"
    card.write_text(card.read_text().replace('"hidden_dim": 64', '"hidden_dim": "x"'))
    with pytest.raises(BundleError, match=r"agent_1/agent.json: sha256 .* does not match the manifest's"):
        load_bundle(tmp_path / "b")


# ---- the command lines: one error line, exit status 2, no traceback ----------------------------


def _broken_manifest(bundle: Path, out: Path, path: tuple, value: Any) -> Path:
    shutil.copytree(bundle, out)
    m = json.loads((out / "swarm.json").read_text())
    (out / "swarm.json").write_text(json.dumps(mutate(m, path, value), indent=2))
    return out


def _one_error_line(p: Any, message: str) -> None:
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr


CLI_CASES = [
    ("eval", ("agents", 2, "files", "policy.onnx"), "abc", f"swarm.json: {SHA}: expected a sha256 of 64 hex characters"),
    ("eval", ("source", "seed"), DELETE, "swarm.json: source.seed: missing; re-export the bundle with marl-export"),
    ("swarm", ("env_spec", "n_agents"), DELETE, "swarm.json: env_spec.n_agents: missing"),
    ("swarm", ("topology", "k_max"), 5, "swarm.json: topology.k_max: expected the manifest's k_max (2), got 5"),
    ("agent", ("env_spec", "obs_dim"), "10", "swarm.json: env_spec.obs_dim: expected an integer, got str '10'"),
    ("agent", ("msg_dim",), None, "swarm.json: msg_dim: expected an integer, got null"),
]


@pytest.mark.parametrize("cmd,path,value,message", CLI_CASES, ids=[f"{c[0]}-{'.'.join(map(str, c[1]))}" for c in CLI_CASES])
def test_cli_reports_a_malformed_manifest_in_one_line(tiny, tmp_path, cli, cmd, path, value, message):
    b = _broken_manifest(tiny, tmp_path / "b", path, value)
    if cmd == "eval":
        p = cli("evaluate", str(b), "--episodes", "2", timeout=120)
    elif cmd == "swarm":
        p = cli("swarm", str(b), "--episodes", "1", timeout=120)
    else:
        moved = tmp_path / "elsewhere.json"
        shutil.move(b / "swarm.json", moved)  # --manifest: the manifest is not next to the agent folder
        p = cli("agent", str(b / "agent_1"), "--manifest", str(moved), "--world", "ipc:///nonexistent", timeout=120)
        message = message.replace("swarm.json", "elsewhere.json")
    _one_error_line(p, message)


def test_cli_agent_reports_a_malformed_card_in_one_line(tiny, tmp_path, cli):
    b = _tamper_card(tiny, tmp_path / "b", ("policy_sha256",), "abc")
    p = cli("agent", str(b / "agent_1"), "--manifest", str(b / "swarm.json"), "--world", "ipc:///nonexistent", timeout=120)
    _one_error_line(p, "agent_1/agent.json: policy_sha256: expected a sha256 of 64 hex characters, got str 'abc'")


def _missing_agent_dir(b: Path) -> list[str]:
    shutil.rmtree(b / "agent_1")
    return ["agent", str(b / "agent_1"), "--world", "ipc:///nonexistent"]


def _changed_policy(b: Path) -> list[str]:
    f = b / "agent_2" / "policy.onnx"
    data = bytearray(f.read_bytes())
    data[-10] ^= 0xFF
    f.write_bytes(bytes(data))
    return ["evaluate", str(b), "--episodes", "2"]


def _other_version(b: Path) -> list[str]:
    m = json.loads((b / "swarm.json").read_text())
    m["format_version"] = 2
    (b / "swarm.json").write_text(json.dumps(m))
    return ["swarm", str(b), "--episodes", "1"]


def _missing_card(b: Path) -> list[str]:
    (b / "agent_0" / "agent.json").unlink()
    return ["agent", str(b / "agent_0"), "--world", "ipc:///nonexistent"]


BUNDLE_ERRORS = [
    (_missing_agent_dir, "agent_1 is not a directory; pass an agent folder of a bundle"),
    (_changed_policy, "agent_2/policy.onnx: sha256"),
    (_other_version, "bundle format version 2 is not supported by this runtime"),
    (_missing_card, "agent_0/agent.json is missing: the agent card"),
]


@pytest.mark.parametrize("make,message", BUNDLE_ERRORS, ids=[m.__name__.strip("_") for m, _ in BUNDLE_ERRORS])
def test_cli_other_bundle_errors_stay_one_line(tiny, tmp_path, cli, make, message):
    b = tmp_path / "b"
    shutil.copytree(tiny, b)
    cmd, *args = make(b)
    _one_error_line(cli(cmd, *args, timeout=120), message)
