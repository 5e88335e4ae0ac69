"""Keeping the embedded Ray and Ray Serve on 127.0.0.1.

What Ray 2.60 does on its own, measured here (psutil, serving process tree):
- `ray.init()` takes the machine's network address as node IP: GCS, raylet,
  core workers and agents listen on all interfaces (`::`) or on that address.
  With `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (Ray's own "local only" switch)
  the node IP is 127.0.0.1 and they all listen on loopback (`loopback_env`).
- The HAProxy ingress binds its stats and Prometheus frontends on all
  interfaces: `ingress.haproxy_wrapper` moves them.
- Each Serve replica opens an inter-deployment gRPC server on `[::]:0`,
  hard-coded. In loopback mode the replica's constructor calls
  `private_apis.bind_replica_grpc_to_loopback()` (see `in_loopback_mode`),
  which makes that `127.0.0.1:0`; peers dial the node IP, which is then
  127.0.0.1.
None of this applies when joining a cluster (`RAY_ADDRESS`): there Ray must
be reachable from other nodes, and the cluster's own settings rule.
"""

from __future__ import annotations

import os
import random
import socket

LOOPBACK_FLAG = "HIT_SERVE_LOOPBACK_ONLY"  # set for the serving process and inherited by its replicas


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, from 20000-32767: outside the kernel's ephemeral range (32768+), which Ray's
    processes and every outgoing connection draw from, and outside Ray's worker ports (10002-19999),
    so nothing else grabs it between now and the moment a server binds it."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(20_000, 32_767)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in 20000-32767 on {host}")


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def loopback_env() -> dict[str, str]:
    """Ray's node on 127.0.0.1, and the flag that tells the replicas they run in loopback mode."""
    return {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # node IP 127.0.0.1: Ray core listens on loopback
            LOOPBACK_FLAG: "1"}


def in_loopback_mode() -> bool:
    """Whether this process (the serving process or one of its replicas) keeps everything on loopback."""
    return os.environ.get(LOOPBACK_FLAG) == "1"


def listeners(pid: int) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every listening TCP socket of `pid` and its descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    found = set()
    for p in procs:
        try:
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    found.add((c.laddr.ip, c.laddr.port, p.name()))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sorted(found)


def is_loopback_address(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("::1", "localhost") or ip.startswith("::ffff:127.")
