"""The cluster's network (`cluster/netns.py`): what the test fixture and `hit-platform cluster`
build on. Each node sees only the bridge's /24 and its loopback, and `destroy` leaves nothing behind: no
process in a namespace, no namespace, no bridge, also when a node's processes ignore SIGTERM."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from hit_platform.cluster.netns import NetnsNetwork, netns_missing_reason


@pytest.fixture
def network():
    if reason := netns_missing_reason():
        pytest.skip(f"no network namespaces here: {reason}")
    net = NetnsNetwork(prefix="hitn", subnet="10.80.0")
    try:
        yield net
    finally:
        net.destroy()


def test_nodes_reach_each_other_and_nothing_else_and_destroy_leaves_nothing(network):
    assert network.create(["a", "b"]) == {"a": "10.80.0.10", "b": "10.80.0.11"}
    subprocess.Popen(network.command("a", [sys.executable, "-m", "http.server", "--bind", "0.0.0.0", "18080"]),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def reach(node: str, ip: str) -> str:
        probe = (f"import socket, time\nfor _ in range(100):\n    try:\n        socket.create_connection(({ip!r}, 18080), 2)"
                 f"\n        print('ok'); break\n    except ConnectionRefusedError:\n        time.sleep(0.1)\n"
                 f"    except OSError as e:\n        print(e.strerror); break")
        return subprocess.run(network.command(node, [sys.executable, "-c", probe]), capture_output=True,
                              text=True, timeout=30).stdout.strip()

    assert reach("b", "10.80.0.10") == "ok" and reach("a", "127.0.0.1") == "ok"
    assert reach("b", "192.0.2.1") == "Network is unreachable"  # nothing past the bridge's /24
    routes = subprocess.run(network.command("a", ["ip", "route"]), capture_output=True, text=True).stdout
    assert "default" not in routes, routes  # nothing past the bridge's /24
    # a process that ignores SIGTERM, and its child, in node b
    subprocess.Popen(network.command("b", ["sh", "-c", "trap '' TERM; sleep 600 & sleep 600"]),
                     start_new_session=True)
    deadline = time.monotonic() + 10
    while len(network.pids("b")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = network.pids("b")
    assert len(pids) >= 2
    network.destroy()
    assert network.existing() == []
    assert subprocess.run(["ip", "link", "show", network.bridge], capture_output=True).returncode != 0
    for pid in pids:
        state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
        assert state == "" or state.startswith("Z"), (pid, state)  # gone (or a zombie its parent has not reaped yet)


def test_a_second_cluster_of_the_same_prefix_waits_for_the_first_instead_of_deleting_its_namespaces(tmp_path):
    """Two runs of the cluster tests side by side (a CI clone and a checkout): the second's `up` would delete
    the first's namespaces and kill its nodes mid-drill. It waits for the machine's lock on the prefix, and
    says who holds it when it gives up; `down` lets it go."""
    from hit_platform.cluster.nodes import LocalCluster

    first = LocalCluster(tmp_path / "a", prefix="hitq")
    first.hold()
    second = ("from pathlib import Path\nfrom hit_platform.cluster.nodes import LocalCluster\n"
              f"c = LocalCluster(Path({str(tmp_path / 'b')!r}), prefix='hitq')\n"
              "try:\n    c.hold(timeout=2)\n    print('held')\nexcept TimeoutError as exc:\n    print(exc)\n")
    run = lambda: subprocess.run([sys.executable, "-c", second], capture_output=True, text=True, timeout=60).stdout
    assert run().startswith(f"the hitq cluster on this machine is held by process {os.getpid()} ")
    first.down()
    assert run().strip() == "held"
