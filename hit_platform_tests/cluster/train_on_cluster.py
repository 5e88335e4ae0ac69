"""Candidate training on synthetic songs, for the cluster tests: `python -m hit_platform_tests.cluster.train_on_cluster
ADDRESS` on a cluster node fits the grid as the cluster's Ray tasks and prints {family: sha256 of its prediction
bytes}; `hashes(None, workers)` does the same here, in this process (1) or the local pool (2). `... register
ADDRESS` trains from the lake of its settings and registers the best, as the training asset does."""

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


def register(address: str) -> str:
    """The candidates trained from the lake of this process's settings (HIT_* in its environment), their grid
    points as tasks on the cluster at `address`, and the best registered as a new version with its lineage,
    as ml/candidate_models does with HIT_TRAIN_RAY_ADDRESS; returns the version."""
    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.adapters.model_training import train_and_register, training_data
    from hit_platform.adapters.tracking import Tracker
    from hit_platform.settings import Settings

    settings = Settings()
    lake = Lake(settings)
    with lake.connection(read_only=True) as con:
        data = training_data(lake, con)
    trained = train_and_register(Tracker(settings), data, seed=0, families=FAMILIES, workers=2,
                                 splits_data_version="", dagster_run_id="", pool=cluster_pool(address))
    return str(trained.version.version)


if __name__ == "__main__":
    if sys.argv[1] == "register":
        print(f"registered {register(sys.argv[2])}", flush=True)
    else:
        print("result " + json.dumps(hashes(sys.argv[1])), flush=True)
