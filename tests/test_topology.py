"""Topology (docs/design.md contract 2): who hears whom, the same in training and deployment."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from marl_edge.envs import EnvError, make
from marl_edge.envs.topology import (
    Topology,
    TopologyError,
    check_topology,
    grid_shape,
    message_volume,
    parse_topology,
)


def line(*xs: float) -> np.ndarray:
    """[1, n, 2] positions on the x axis."""
    return np.array([[[x, 0.0] for x in xs]], dtype=np.float32)


def reference(positions: np.ndarray, k_max: int, radius: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Slow, obviously-correct neighbours: sort others by (distance, index)."""
    B, n, _ = positions.shape
    idx = np.full((B, n, k_max), -1, dtype=np.int64)
    p = positions.astype(np.float64)
    for b in range(B):
        for i in range(n):
            others = sorted((float(np.sqrt(((p[b, i] - p[b, j]) ** 2).sum())), j) for j in range(n) if j != i)
            chosen = [j for dist, j in others if radius is None or dist <= radius][:k_max]
            idx[b, i, : len(chosen)] = chosen
    return idx, idx >= 0


def check_invariants(topo: Topology, idx: np.ndarray, mask: np.ndarray) -> None:
    B, n, k = idx.shape
    assert (n, k) == (topo.n_agents, topo.k_max)
    assert idx.dtype == np.int64 and mask.dtype == bool and mask.shape == idx.shape
    assert (idx[~mask] == -1).all() and (idx[mask] >= 0).all() and (idx[mask] < n).all()
    assert not (idx == np.arange(n)[None, :, None]).any(), "an agent heard itself"
    # valid slots first, no duplicates
    assert (np.diff(mask.astype(np.int8), axis=2) <= 0).all()
    for b in range(B):
        for i in range(n):
            heard = idx[b, i][mask[b, i]]
            assert len(set(heard.tolist())) == len(heard)


# ---- position-based kinds -------------------------------------------------------


def test_knn_hand_checked_on_a_line():
    topo = parse_topology("knn:2", 4)
    idx, mask = topo.neighbours(line(0, 1, 3, 7))
    assert idx[0].tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    assert mask.all()
    check_invariants(topo, idx, mask)


def test_knn_is_euclidean():
    # agent 1 is 4.24 away (Manhattan 6), agent 2 is 5 away (Manhattan 5)
    pos = np.array([[[0, 0], [3, 3], [5, 0]]], dtype=np.float32)
    idx, _ = parse_topology("knn:1", 3).neighbours(pos)
    assert idx[0, 0].tolist() == [1]
    # 3-D positions use every coordinate: agent 2 is 1 away in x-y but 3.16 away with z
    pos3 = np.array([[[0, 0, 0], [2, 0, 0], [0, 1, 3]]], dtype=np.float32)
    idx, _ = parse_topology("knn:1", 3).neighbours(pos3)
    assert idx[0, 0].tolist() == [1]


def test_range_inclusive_nearest_first_and_capped():
    pos = line(0, 1, 2, 3, 10)
    topo = parse_topology("range:2", 5)
    assert topo.k_max == 4 and str(topo) == "range:2"
    idx, mask = topo.neighbours(pos)
    assert idx[0].tolist() == [
        [1, 2, -1, -1],  # distance exactly 2 is in range
        [0, 2, 3, -1],  # 0 and 2 tie at 1: lower index first
        [1, 3, 0, -1],
        [2, 1, -1, -1],
        [-1, -1, -1, -1],  # nobody within 2 of x = 10
    ]
    assert mask[0].sum(axis=1).tolist() == [2, 3, 3, 2, 0]
    check_invariants(topo, idx, mask)

    capped = parse_topology("range:2", 5, k_max=2)
    assert capped.k_max == 2
    idx, mask = capped.neighbours(pos)
    assert idx[0].tolist() == [[1, 2], [0, 2], [1, 3], [2, 1], [-1, -1]]
    assert mask[0].tolist() == [[True, True]] * 4 + [[False, False]]


def test_ties_go_to_the_lower_index():
    # everyone on one spot: a non-stable sort would scramble the order for n > 16
    n = 20
    idx, mask = parse_topology("knn:19", n).neighbours(np.zeros((2, n, 2), dtype=np.float32))
    for i in range(n):
        assert idx[0, i].tolist() == [j for j in range(n) if j != i]
    assert (idx[1] == idx[0]).all() and mask.all()
    # a symmetric tie: agent 1 sits halfway between 0 and 2, whichever side each is on
    for pos in (line(-1, 0, 1), line(1, 0, -1)):
        idx, _ = parse_topology("knn:1", 3).neighbours(pos)
        assert idx[0, 1].tolist() == [0]


@pytest.mark.parametrize("spec", ["knn:1", "knn:3", "knn:11", "range:2", "range:0", "range:3.5"])
def test_matches_reference_with_many_ties(spec):
    # integer grid positions (like rendezvous): many equal distances and shared cells
    rng = np.random.default_rng(7)
    pos = rng.integers(0, 5, size=(16, 12, 2)).astype(np.float32)
    topo = parse_topology(spec, 12)
    idx, mask = topo.neighbours(pos)
    ref_idx, ref_mask = reference(pos, topo.k_max, topo.radius)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(mask, ref_mask)
    check_invariants(topo, idx, mask)


@pytest.mark.parametrize("spec", ["knn:3", "range:0.6", "broadcast", "graph:ring", "graph:grid"])
def test_deterministic_and_batch_equals_per_slot(spec):
    """Training calls it on a batch of B slots; the world server on one. They must agree."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(-1, 1, size=(32, 10, 2)).astype(np.float32)
    pos[:, 5] = pos[:, 2]  # shared spots make ties
    topo = parse_topology(spec, 10)
    idx, mask = topo.neighbours(pos)
    again_idx, again_mask = parse_topology(spec, 10).neighbours(pos.copy())
    np.testing.assert_array_equal(idx, again_idx)
    np.testing.assert_array_equal(mask, again_mask)
    for b in range(pos.shape[0]):
        one_idx, one_mask = topo.neighbours(pos[b : b + 1])
        np.testing.assert_array_equal(one_idx[0], idx[b])
        np.testing.assert_array_equal(one_mask[0], mask[b])
    # a non-contiguous view of the same numbers gives the same answer
    strided = np.asfortranarray(pos)
    np.testing.assert_array_equal(topo.neighbours(strided)[0], idx)
    check_invariants(topo, idx, mask)


def test_returned_arrays_are_fresh():
    topo = parse_topology("graph:ring", 4)
    idx, mask = topo.neighbours(batch=2)
    idx[:] = 99
    mask[:] = False
    idx2, mask2 = topo.neighbours(batch=2)
    assert idx2[0, 0].tolist() == [1, 3] and mask2.all()


# ---- static kinds ----------------------------------------------------------------


def test_broadcast():
    topo = parse_topology("broadcast", 4)
    assert topo.k_max == 3 and not topo.needs_positions
    idx, mask = topo.neighbours(batch=3)
    assert idx.shape == (3, 4, 3) and mask.all()
    assert idx[2].tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    # with positions: still everyone, nearest first (what the knn aggregator relies on)
    idx, mask = topo.neighbours(line(5, 4, 3, 2))
    assert idx.shape == (1, 4, 3) and mask.all()
    assert idx[0, 3].tolist() == [2, 1, 0] and idx[0, 1].tolist() == [0, 2, 3]


def test_ring():
    topo = parse_topology("graph:ring", 5)
    assert topo.k_max == 2
    idx, mask = topo.neighbours()
    assert idx[0].tolist() == [[1, 4], [0, 2], [1, 3], [2, 4], [0, 3]]
    assert mask.all()
    two = parse_topology("graph:ring", 2)
    assert two.k_max == 1 and two.neighbours()[0][0].tolist() == [[1], [0]]


@pytest.mark.parametrize("spec", ["broadcast", "graph:ring", "graph:grid", "range:1"])
def test_a_team_of_one_hears_nobody(spec):
    topo = parse_topology(spec, 1)
    idx, mask = topo.neighbours(np.zeros((3, 1, 2), dtype=np.float32))
    assert topo.k_max == 0 and idx.shape == mask.shape == (3, 1, 0)
    assert message_volume(topo, 1, 4)["messages_per_step"] == 0


def test_grid():
    assert grid_shape(16) == (4, 4) and grid_shape(6) == (2, 3) and grid_shape(10) == (3, 4) and grid_shape(5) == (2, 3)
    topo = parse_topology("graph:grid", 6)  # 0 1 2 / 3 4 5
    assert topo.k_max == 3
    idx, mask = topo.neighbours()
    assert idx[0].tolist() == [[1, 3, -1], [0, 2, 4], [1, 5, -1], [0, 4, -1], [1, 3, 5], [2, 4, -1]]
    check_invariants(topo, idx, mask)
    # partial last row: 0 1 2 / 3 4 5 / 6
    idx, mask = parse_topology("graph:grid", 7).neighbours()
    assert idx[0, 6].tolist() == [3, -1, -1] and idx[0, 3].tolist() == [0, 4, 6]
    # 4x4: corners have 2 neighbours, interior 4
    idx, mask = parse_topology("graph:grid", 16).neighbours()
    assert mask[0].sum(axis=1).tolist() == [2, 3, 3, 2, 3, 4, 4, 3, 3, 4, 4, 3, 2, 3, 3, 2]
    assert idx[0, 5].tolist() == [1, 4, 6, 9]


def test_graph_file_json(tmp_path):
    f = tmp_path / "g.json"
    f.write_text(json.dumps({"edges": [[0, 1], [1, 2], [2, 1], [3, 0]], "directed": False}))
    topo = parse_topology(f"graph:{f}", 4)
    assert topo.k_max == 2 and str(topo) == f"graph:{f}"
    idx, mask = topo.neighbours(batch=2)
    assert idx[1].tolist() == [[1, 3], [0, 2], [1, -1], [0, -1]]
    check_invariants(topo, idx, mask)
    # directed: [i, j] means i sends to j (j hears i)
    f.write_text(json.dumps({"edges": [[0, 1], [0, 2], [3, 2]], "directed": True, "n_agents": 4}))
    idx, mask = parse_topology(f"graph:{f}", 4).neighbours()
    assert idx[0].tolist() == [[-1, -1], [0, -1], [0, 3], [-1, -1]]


def test_graph_file_text(tmp_path):
    f = tmp_path / "edges.txt"
    f.write_text("# a star around 0\n0 1\n0 2   # trailing comment\n\n3,0\n")
    idx, _ = parse_topology(f"graph:{f}", 4).neighbours()
    assert idx[0].tolist() == [[1, 2, 3], [0, -1, -1], [0, -1, -1], [0, -1, -1]]
    f.write_text("# directed chain\ndirected\n0 1\n1 2\n")
    idx, _ = parse_topology(f"graph:{f}", 3).neighbours()
    assert idx[0].tolist() == [[-1], [0], [1]]


# ---- spec strings, records ---------------------------------------------------------


@pytest.mark.parametrize("spec", ["broadcast", "knn:3", "range:0.5", "range:2", "range:1e-05", "graph:ring", "graph:grid"])
def test_round_trip(spec):
    topo = parse_topology(spec, 8)
    assert str(topo) == spec == topo.spec
    d = json.loads(json.dumps(topo.to_dict()))
    assert Topology.from_dict(d) == topo
    assert Topology.from_string(str(topo), 8) == topo


def test_round_trip_keeps_the_range_cap_and_canonicalises():
    topo = parse_topology(" Range:1.50 ", 8, k_max=3)
    assert str(topo) == "range:1.5"
    back = Topology.from_dict(json.loads(json.dumps(topo.to_dict())))
    assert back == topo and back.k_max == 3


def test_file_graph_record_needs_no_file(tmp_path):
    f = tmp_path / "g.txt"
    f.write_text("0 1\n1 2\n")
    topo = parse_topology(f"graph:{f}", 3)
    d = json.loads(json.dumps(topo.to_dict()))
    f.unlink()
    back = Topology.from_dict(d)
    assert back == topo
    np.testing.assert_array_equal(back.neighbours()[0], topo.neighbours()[0])


# ---- the spread env and message volume -------------------------------------------------


def test_spread_knn3_message_volume():
    env = make("spread", n_envs=4, n_agents=16)
    pos = env.reset(0).positions
    assert pos.shape == (4, 16, 2)
    n, k, d = 16, 3, 8
    topo = parse_topology("knn:3", n)
    check_topology(topo, env.spec)
    idx, mask = topo.neighbours(pos)
    ref_idx, _ = reference(pos, k, None)
    np.testing.assert_array_equal(idx, ref_idx)
    vol = message_volume(topo, n, d, pos)
    assert vol["messages_per_step"] == n * k == 48
    assert vol["floats_per_step"] == n * k * d
    assert vol["bytes_per_step"] == n * k * d * 4
    assert vol["broadcast_messages_per_step"] == n * (n - 1)
    assert vol["broadcast_floats_per_step"] == n * (n - 1) * d
    assert vol["broadcast_bytes_per_step"] == n * (n - 1) * d * 4
    assert vol["fraction_of_broadcast"] == pytest.approx(3 / 15)
    assert message_volume(topo, n, d) == vol  # knn is exact without positions
    bvol = message_volume(parse_topology("broadcast", n), n, d, pos)
    assert bvol["messages_per_step"] == bvol["broadcast_messages_per_step"] == n * (n - 1)
    assert bvol["floats_per_step"] == n * (n - 1) * d


def test_message_volume_static_and_range():
    assert message_volume(parse_topology("graph:ring", 5), 5, 2)["messages_per_step"] == 10
    assert message_volume(parse_topology("graph:grid", 6), 6, 1)["messages_per_step"] == 14  # 7 edges, both ways
    topo = parse_topology("range:2", 5)
    vol = message_volume(topo, 5, 4, line(0, 1, 2, 3, 10))
    assert vol["exact"] and vol["messages_per_step"] == 10 and vol["bytes_per_step"] == 10 * 4 * 4
    two = np.concatenate([line(0, 1, 2, 3, 10), line(0, 50, 100, 150, 200)])  # 10 and 0 messages
    assert message_volume(topo, 5, 4, two)["messages_per_step"] == 5.0
    bound = message_volume(parse_topology("range:2", 5, k_max=2), 5, 4)
    assert not bound["exact"] and bound["messages_per_step"] == 10


# ---- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, n, words",
    [
        ("knn:0", 4, "K must be in 1..3"),
        ("knn:x", 4, "K must be an integer"),
        ("knn:4", 4, "K must be in 1..3"),
        ("knn:", 4, "K must be an integer"),
        ("knn:2", 1, "at least 2 agents"),
        ("range:-1", 4, "R must be a finite number >= 0"),
        ("range:abc", 4, "R must be a number"),
        ("range:nan", 4, "R must be a finite number"),
        ("graph:/missing/graph.json", 4, "no such file"),
        ("graph:", 4, "name a graph"),
        ("star:3", 4, "unknown topology 'star:3'"),
        ("", 4, "topology must be a string"),
        ("broadcast:2", 4, "takes no argument"),
    ],
)
def test_bad_spec_strings(spec, n, words):
    with pytest.raises(TopologyError) as err:
        parse_topology(spec, n)
    msg = str(err.value)
    assert words in msg and "\n" not in msg


def test_k_max_only_for_range():
    with pytest.raises(TopologyError, match="applies only to range"):
        parse_topology("knn:2", 5, k_max=4)
    assert parse_topology("knn:2", 5, k_max=2).k_max == 2  # agreeing is fine
    with pytest.raises(TopologyError, match="k_max must be in 1..4"):
        parse_topology("range:1", 5, k_max=5)


@pytest.mark.parametrize(
    "content, words",
    [
        ('{"edges": [[0, 4]]}', "edge [0, 4] is out of range; agents are 0..3"),
        ('{"edges": [[2, 2]]}', "self-loop"),
        ('{"edges": []}', "no edges"),
        ('{"edges": [[0, 1]], "directional": true}', "unknown keys ['directional']"),
        ('{"edges": [[0, 1]], "n_agents": 5}', "for 5 agents"),
        ('{"edges": [[0, "1"]]}', "pair of agent indices"),
        ('{"edges": [[0, 1]', "invalid JSON at line 1"),
        ("0 1\n1 9\n", "edge [1, 9] is out of range"),
        ("0 1\n1 2 3\n", "line 2 must be two agent indices"),
        ("0 one\n", "line 1 must be two agent indices"),
    ],
)
def test_bad_graph_files(tmp_path, content, words):
    f = tmp_path / "g.graph"
    f.write_text(content)
    with pytest.raises(TopologyError) as err:
        parse_topology(f"graph:{f}", 4)
    msg = str(err.value)
    assert words in msg and str(f) in msg and "\n" not in msg


def test_env_without_positions():
    spec = make("two_step").spec
    assert not spec.has_positions
    for ok in ("broadcast", "graph:ring"):
        check_topology(parse_topology(ok, spec.n_agents), spec)
    with pytest.raises(TopologyError) as err:
        check_topology(parse_topology("knn:1", spec.n_agents), spec)
    assert str(err.value) == "knn:1 needs agent positions; env two_step has none — use broadcast or graph:ring|grid|FILE"
    with pytest.raises(TopologyError, match="range:0.5 needs agent positions; env two_step"):
        check_topology(parse_topology("range:0.5", spec.n_agents), spec)
    assert isinstance(err.value, EnvError)  # CLIs catch EnvError for one-line messages
    with pytest.raises(TopologyError, match="built for 3 agents; env two_step has 2"):
        check_topology(parse_topology("broadcast", 3), spec)


def test_neighbours_input_errors():
    knn = parse_topology("knn:2", 4)
    with pytest.raises(TopologyError, match="knn:2 needs agent positions"):
        knn.neighbours(None)
    with pytest.raises(TopologyError, match=r"shape \[B, 4, d\].*positions\[None\]"):
        knn.neighbours(np.zeros((4, 2)))
    with pytest.raises(TopologyError, match=r"shape \[B, 4, d\]"):
        knn.neighbours(np.zeros((1, 5, 2)))
    with pytest.raises(TopologyError, match="batch=3 but positions have batch 1"):
        knn.neighbours(np.zeros((1, 4, 2)), batch=3)
    bad = np.zeros((1, 4, 2))
    bad[0, 2, 1] = np.nan
    with pytest.raises(TopologyError, match="agent 2 in slot 0"):
        knn.neighbours(bad)
    with pytest.raises(TopologyError, match="built for 4 agents, not 5"):
        message_volume(knn, 5, 8)
    with pytest.raises(TopologyError, match="d must be an int >= 1"):
        message_volume(knn, 4, 0)


def test_module_loads_no_torch():
    code = "import sys, marl_edge.envs.topology\nprint(','.join(m for m in ('torch', 'onnx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""
