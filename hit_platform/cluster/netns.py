"""A private network for a Ray cluster on one Linux machine: one network namespace per node, on a bridge.

    net = NetnsNetwork(prefix="hitc", subnet="10.77.0")   # bridge hitc-br at 10.77.0.1
    net.create(["head", "w1", "w2"])                       # namespaces hitc-head (10.77.0.10), hitc-w1 (.11)...
    net.run("head", ["ray", "start", ...])                 # a command inside a node's namespace
    net.destroy()                                          # every process in them killed, namespaces deleted

Each namespace has its loopback and one veth onto the bridge, with no default route: a node reaches
only the other nodes, the bridge's address in the host's namespace (where the tests' PostgreSQL and S3
listen) and its own loopback. Only the filesystem is shared, as the same paths on real machines are not:
each node is given its own folders (`--temp-dir`, its journal).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class NetnsError(RuntimeError):
    """The namespaces cannot be made or used here (the message says why)."""


def netns_missing_reason() -> str | None:
    """Why network namespaces cannot be made on this machine, or None."""
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed: apt-get install -y iproute2"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN); run as root"
    probe = f"hitprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"'ip netns add' failed here: {made.stderr.strip() or made.stdout.strip()}"
    try:
        veth = subprocess.run(["ip", "link", "add", f"{probe}a", "type", "veth", "peer", "name", f"{probe}b"],
                              capture_output=True, text=True)
        if veth.returncode != 0:
            return f"'ip link add type veth' failed here: {veth.stderr.strip()}"
        subprocess.run(["ip", "link", "del", f"{probe}a"], capture_output=True)
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", "-n", netns, *args] if netns else ["ip", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {done.stderr.strip() or done.stdout.strip()}")


@dataclass
class NetnsNetwork:
    """Namespaces `<prefix>-<node>` at `<subnet>.10`, `.11`, ... on bridge `<prefix>-br` at `<subnet>.1`."""

    prefix: str = "hitc"
    subnet: str = "10.77.0"
    nodes: dict[str, str] = field(default_factory=dict)  # node name -> its address

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-br"

    @property
    def host_address(self) -> str:
        """The host's own address on the bridge: where services for the nodes (PostgreSQL, S3) listen."""
        return f"{self.subnet}.1"

    def namespace(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def create(self, names: list[str]) -> dict[str, str]:
        """Make the bridge and a namespace per node (anything left by an earlier run of this prefix first
        removed). Returns node -> address."""
        if len(self.bridge) > 15 or any(len(f"{self.prefix}{i}h") > 15 for i in range(len(names))):
            raise NetnsError(f"prefix {self.prefix!r} too long for Linux interface names (15 characters)")
        self.destroy()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, name in enumerate(names):
            ns, host_end, node_end = self.namespace(name), f"{self.prefix}{i}h", f"{self.prefix}{i}n"
            address = f"{self.subnet}.{10 + i}"
            _ip("netns", "add", ns)
            # a pair whose namespace was just deleted may outlive it a moment (the kernel frees it later)
            subprocess.run(["ip", "link", "del", host_end], capture_output=True)
            _ip("link", "add", host_end, "type", "veth", "peer", "name", node_end)
            _ip("link", "set", node_end, "netns", ns)
            _ip("link", "set", host_end, "master", self.bridge)
            _ip("link", "set", host_end, "up")
            _ip("link", "set", "lo", "up", netns=ns)
            _ip("addr", "add", f"{address}/24", "dev", node_end, netns=ns)
            _ip("link", "set", node_end, "up", netns=ns)
            self.nodes[name] = address
        return dict(self.nodes)

    def command(self, node: str, cmd: list[str]) -> list[str]:
        """`cmd` run inside `node`'s namespace."""
        return ["ip", "netns", "exec", self.namespace(node), *cmd]

    def pids(self, node: str) -> list[int]:
        """Every process in `node`'s namespace (Ray's raylet, its workers, the replicas, HAProxy...)."""
        done = subprocess.run(["ip", "netns", "pids", self.namespace(node)], capture_output=True, text=True)
        return [int(p) for p in done.stdout.split() if p.isdigit()]

    def kill(self, node: str, timeout: float = 20.0) -> int:
        """SIGKILL every process in `node`'s namespace (again, until none is left); returns how many."""
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while (pids := self.pids(node)) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        if left := self.pids(node):
            raise NetnsError(f"processes {left} in {self.namespace(node)} outlived SIGKILL for {timeout:.0f} s")
        return len(killed)

    def existing(self) -> list[str]:
        """This prefix's namespaces that exist now."""
        done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        names = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
        return [n for n in names if n.startswith(f"{self.prefix}-")]

    def destroy(self) -> None:
        """Kill every process in this prefix's namespaces, delete them and the bridge. Safe to repeat."""
        for ns in self.existing():
            node = ns[len(self.prefix) + 1:]
            try:
                self.kill(node)
            finally:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        self.nodes.clear()
