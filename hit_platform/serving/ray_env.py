"""The environment the serving process sets before it imports Ray (Ray reads it at import).

Loopback (`loopback.loopback_env`), the HAProxy ingress (`ingress.ingress_env`),
and two measured choices for a machine whose job is serving: replicas at
normal priority, and Ray's own per-request metrics off.
"""

from __future__ import annotations

import os
from pathlib import Path

from hit_platform.serving.ingress import ingress_env
from hit_platform.serving.loopback import is_loopback, loopback_env


def ray_env(*, host: str, fast_proxy: bool, state_dir: Path, joining_cluster: bool,
            ingress_secret: str | None = None) -> dict[str, str]:
    """Environment for the serving process (and, on a cluster, for Serve's controller, proxies and replicas:
    `main.ServingProcess.start_ray`). Variables already in the environment win, so an operator can override
    any of them. `ingress_secret`: what our HAProxy stamps beside each request id (`ingress.ingress_secret`)."""
    loopback = is_loopback(host) and not joining_cluster
    env: dict[str, str] = loopback_env() if loopback else {}
    # Ray starts its workers, the replicas among them, at niceness 15: on a machine whose job is
    # serving they then lose the CPU to any normal process (a load generator, a lake commit) and
    # the p99 latency triples. Serve at normal priority.
    if not joining_cluster:  # a cluster's raylets have their own settings
        env["RAY_worker_niceness"] = "0"
        # Ray's own Prometheus metrics: a per-request record in each replica, exported through the
        # dashboard agent (~5% of a core at 1,500 requests/s). The inference log and ops/serving_health
        # already hold every request's status and latency. RAY_enable_metrics_collection=1 keeps them.
        env["RAY_enable_metrics_collection"] = "0"
    else:
        # A node's first worker with the serving process's runtime env starts cold (it imports Serve) before
        # its proxy reports ready: on a busy node that passes Serve's 5 s, and the proxy is killed and started
        # again, over and over.
        env["RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"] = "30"
    if fast_proxy:
        env.update(ingress_env(state_dir=state_dir, loopback=loopback, joining_cluster=joining_cluster,
                               secret=ingress_secret))
    return {k: os.environ.get(k, v) for k, v in env.items()}
