"""The cluster's network (`cluster/netns.py`): what the test fixture and `hit-platform cluster`
build on. Each node sees only the bridge's /24 and its loopback, and `destroy` leaves nothing behind: no
process in a namespace, no namespace, no bridge, also when a node's processes ignore SIGTERM."""

from __future__ import annotations

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
