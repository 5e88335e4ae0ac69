"""The candidates' grid as Ray tasks on a cluster: an executor `train_candidates` fits grid points with.

    pool = RayTaskPool("10.77.0.10:6379")          # joins the cluster (the caller runs on one of its nodes)
    train_candidates(..., workers=2, pool=lambda n: pool)

`train_candidates` hands a family's grid points to `executor.map(_fit_point, ...)` exactly as it does to its
local process pool; here each point is one Ray task, placed by Ray on any node with a free CPU. A fit depends
only on (data, family, grid point, seed), and the fitted pipeline comes back pickled, so the model is the
same bytes wherever it was fitted. The training data goes into the object store once per training (not once
per task). A task whose node dies is run again on another node (Ray's `max_retries`); a task that fails for
good fails the training with a `ClusterTrainingError` saying which grid point, where and why.

Plain Ray rather than dagster-ray: the grid is one step inside one asset (`ml/candidate_models`), and an
executor behind the pool hook the asset already has changes nothing else; dagster-ray runs whole Dagster
steps or runs as Ray jobs, which is a different unit.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor, Future

import numpy as np
import pandas as pd

from hit_platform.cluster.nodes import use_ray_auth


class ClusterTrainingError(RuntimeError):
    """A grid point could not be fitted on the Ray cluster (the message says which, where and why)."""


def _point_name(args: tuple) -> str:
    family, point = (args + (None, None))[:2]
    return f"family {family!r}, grid point {point!r}" if isinstance(family, str) else "a task"


class RayTaskPool(Executor):
    """`concurrent.futures.Executor` whose `submit` runs the call as a Ray task on the cluster at `address`."""

    def __init__(self, address: str, *, cpus_per_task: float = 1.0, retries: int = 3):
        import ray

        self.address, self.cpus, self.retries = address, cpus_per_task, retries
        self._started = not ray.is_initialized()
        if self._started:
            use_ray_auth()
            ray.init(address=address, namespace="hit_platform_training", logging_level=logging.WARNING)
        self._remote: dict = {}
        self._shared: dict[int, tuple[object, object]] = {}  # id(value) -> (value, its ObjectRef)

    def _share(self, value):
        """A DataFrame or array goes into the object store once; every task gets its ref."""
        import ray

        if not isinstance(value, (pd.DataFrame, pd.Series, np.ndarray)):
            return value
        if id(value) not in self._shared:  # the value is kept too, so its id is not reused meanwhile
            self._shared[id(value)] = (value, ray.put(value))
        return self._shared[id(value)][1]

    def submit(self, fn, /, *args, **kwargs) -> Future:
        import ray

        if fn not in self._remote:
            # retry_exceptions=False: a fit that raises would raise again; only a lost worker or node is retried
            # SPREAD: a family's grid points go to different nodes (Ray's default packs them onto this one first)
            self._remote[fn] = ray.remote(num_cpus=self.cpus, max_retries=self.retries, retry_exceptions=False,
                                          scheduling_strategy="SPREAD")(fn)
        ref = self._remote[fn].remote(*[self._share(a) for a in args], **kwargs)
        out: Future = Future()

        def settle(done: Future) -> None:
            try:
                out.set_result(done.result())
            except BaseException as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                out.set_exception(ClusterTrainingError(
                    f"candidate training on the Ray cluster at {self.address}: {_point_name(args)} failed "
                    f"after up to {self.retries} retries: {type(exc).__name__}: {reason}"))

        ref.future().add_done_callback(settle)
        return out

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        import ray

        self._shared.clear()
        if self._started and ray.is_initialized():
            ray.shutdown()


def cluster_pool(address: str | None):
    """What `train_candidates(pool=)` takes: the cluster's tasks at `address`, or None (its local processes)."""
    return None if not address else (lambda workers: RayTaskPool(address))
