"""Where the replicas run: each replica's node, for /healthz, the pid file and `hit-platform status`.

On one machine every replica is on the one node; on a Ray cluster Serve spreads them, and this is how a
user sees where (and that a node which died took its replicas with it).
"""

from __future__ import annotations

import time
from collections import Counter


def this_node() -> dict | None:
    """The Ray node this process runs on (id and address), or None outside Ray."""
    import ray

    if not ray.is_initialized():
        return None
    from ray.util import get_node_ip_address

    return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": get_node_ip_address()}


def replica_nodes() -> list[dict]:
    """Every replica of the model deployment: replica id, state, node id and address, pid (Serve's controller)."""
    from hit_platform.private_apis import serve_replicas
    from hit_platform.serving.replica import APP_NAME, DEPLOYMENT_NAME

    return sorted(serve_replicas(APP_NAME, DEPLOYMENT_NAME), key=lambda r: (r["node_ip"] or "", r["replica_id"]))


def running_per_node(replicas: list[dict]) -> dict[str, int]:
    """Running replicas per node address."""
    return dict(sorted(Counter(r["node_ip"] for r in replicas if r["state"] == "RUNNING").items()))


class CachedPlacement:
    """`replica_nodes()` asked at most every `max_age` seconds (a /healthz poll must not load the controller)."""

    def __init__(self, max_age: float = 2.0):
        self.max_age, self.at, self.value, self.error = max_age, 0.0, [], None

    def get(self) -> dict:
        if time.monotonic() - self.at > self.max_age:
            try:
                self.value, self.error = replica_nodes(), None
            except Exception as exc:  # the controller busy or gone: say so, keep answering
                self.error = f"{type(exc).__name__}: {exc}"
            self.at = time.monotonic()
        return {"replicas": self.value, "running_per_node": running_per_node(self.value), "error": self.error}
