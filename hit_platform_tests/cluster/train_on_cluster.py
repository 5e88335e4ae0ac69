"""Candidate training on synthetic songs, for the cluster tests: `python -m hit_platform_tests.cluster.train_on_cluster
ADDRESS` on a cluster node fits the grid as the cluster's Ray tasks and prints {family: sha256 of its prediction
bytes}; `hashes(None, workers)` does the same here, in this process (1) or the local pool (2)."""

from __future__ import annotations

import json
import sys

from hit_platform.adapters.model_training import PROBE_ROWS, prediction_hash
from hit_platform.cluster.training import cluster_pool
from hit_platform.domain.models import train_candidates
from hit_platform_tests.support.models import synthetic_split

FAMILIES = ["trees", "mlp"]  # the heavy ones: their grid points go to the helpers (the pool, the cluster)


def data():
    (Xt, Yt, _), (Xv, Yv, _) = synthetic_split(1500, 1), synthetic_split(500, 2)
    return Xt, Yt, Xv, Yv


def hashes(address: str | None, workers: int = 2) -> dict[str, str]:
    Xt, Yt, Xv, Yv = data()
    results = train_candidates(Xt, Yt, Xv, Yv, seed=0, families=FAMILIES, workers=workers,
                               pool=cluster_pool(address), on_progress=lambda p: print(f"progress {p}", flush=True))
    return {r.family: prediction_hash(r.pipeline, Xv.head(PROBE_ROWS)) for r in results}


if __name__ == "__main__":
    print("result " + json.dumps(hashes(sys.argv[1])), flush=True)
