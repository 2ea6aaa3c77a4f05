"""Separate devices: every agent in its own network namespace, joined to the
world by veth pairs on a bridge, speaking TCP. Skipped (with the reason)
where namespaces cannot be created (not root, no CAP_NET_ADMIN, no iproute2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from marl_edge.runtime.swarm import SwarmOptions, run_swarm
from marl_edge.runtime.team import evaluate_bundle


def sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30)


class Lab:
    """A bridge 10.<x>.0.1/24 in this namespace and one namespace + veth per agent."""

    def __init__(self, n: int) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.net = 200 + int(self.tag, 16) % 50
        self.bridge = f"mebr{self.tag}"
        self.ns = [f"me{self.tag}a{i}" for i in range(n)]
        self.host_ifs = [f"me{self.tag}v{i}" for i in range(n)]
        self.ok = False

    def ip(self, i: int) -> str:
        return f"10.{self.net}.0.{10 + i}"

    @property
    def world_ip(self) -> str:
        return f"10.{self.net}.0.1"

    def up(self) -> None:
        steps = [
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{self.world_ip}/24", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ]
        for i, ns in enumerate(self.ns):
            steps += [
                ["ip", "netns", "add", ns],
                ["ip", "link", "add", self.host_ifs[i], "type", "veth", "peer", "name", "eth0", "netns", ns],
                ["ip", "link", "set", self.host_ifs[i], "master", self.bridge],
                ["ip", "link", "set", self.host_ifs[i], "up"],
                ["ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.ip(i)}/24", "dev", "eth0"],
                ["ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"],
                ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"],
            ]
        for cmd in steps:
            r = sh(*cmd)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
        self.ok = True

    def down(self) -> None:
        for ns in self.ns:
            sh("ip", "netns", "del", ns)
        for h in self.host_ifs:
            sh("ip", "link", "del", h)
        sh("ip", "link", "del", self.bridge)


@pytest.fixture
def lab():
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CAP_NET_ADMIN)")
    lab = Lab(4)
    try:
        lab.up()
    except RuntimeError as e:
        lab.down()
        pytest.skip(f"cannot build network namespaces here: {e}")
    try:
        yield lab
    finally:
        lab.down()


def test_agents_on_separate_network_namespaces_over_tcp(lab, tmp_path, make_bundle):
    bundle = make_bundle(tmp_path, "ns", steps=600, comm="attention", topology="knn:2")
    # every agent listens on its own device's address; nothing on loopback
    opts = SwarmOptions(
        episodes=6,
        seed=2,
        transport="tcp",
        world_bind=f"tcp://{lab.world_ip}:*",
        agent_bind=lambda i: f"tcp://{lab.ip(i)}:*",
        agent_prefix=lambda i: ["ip", "netns", "exec", lab.ns[i]],
    )
    res = run_swarm(bundle, opts)
    assert res["returns"] == evaluate_bundle(bundle, episodes=6, seed=2)["returns"]
    assert res["msgs_per_step"] == 4 * 2 and res["invalid_frames"] == 0
    # the agents really were elsewhere: each listened on its own namespace's address
    assert [res["endpoints"][i].rsplit(":", 1)[0] for i in range(4)] == [f"tcp://{lab.ip(i)}" for i in range(4)]
