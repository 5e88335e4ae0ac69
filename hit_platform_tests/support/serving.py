"""Serving helpers: champions in a temp MLflow store, valid songs, a per-module serving config."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import httpx

import cloudpickle
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.settings import ServeConfig
from hit_platform.serving.loopback import free_port
from hit_platform.serving.predictor import probe_rows
from hit_platform.settings import Settings
from hit_platform.adapters.tracking import Tracker

# The replica unpickles the model without importing this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class LinearHits(BaseEstimator):
    """72 logistic outputs from one matrix product: the serving contract at realistic speed."""

    def __init__(self, seed: int = 0, nudge: float = 0.0):
        self.seed = seed
        self.nudge = nudge  # another model that agrees closely with seed's: its weights moved this much

    def fit(self, X, Y=None):
        rng = np.random.default_rng(self.seed)
        self.coef_ = rng.normal(0, 0.6, size=(np.shape(X)[1], len(COUNTRIES)))
        self.intercept_ = rng.normal(-1.5, 0.5, size=len(COUNTRIES))
        if self.nudge:
            self.coef_ = self.coef_ + np.random.default_rng(10_000 + self.seed).normal(0, self.nudge, self.coef_.shape)
        return self

    def predict_proba(self, X):
        return 1.0 / (1.0 + np.exp(-(np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_)))


def make_pipeline(seed: int, nudge: float = 0.0) -> Pipeline:
    X = pd.DataFrame(probe_rows(200, seed=seed), columns=list(FEATURE_COLUMNS))
    return Pipeline([("scale", StandardScaler()), ("model", LinearHits(seed, nudge))]).fit(X)


LINEAGE = {"lake_snapshot_id": "42", "git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": "false",
           "dagster_run_id": "dagster-run-test", "family": "linear-test"}


def register_version(settings: Settings, seed: int, nudge: float = 0.0) -> str:
    """Log and register a LinearHits pipeline; returns its version."""
    tracker = Tracker(settings)
    example = pd.DataFrame(probe_rows(3), columns=list(FEATURE_COLUMNS))
    run_id, uri = tracker.log_candidate(run_name=f"linear-{seed}", params={"seed": seed, "nudge": nudge},
                                        metrics={"auc": 0.5}, pipeline=make_pipeline(seed, nudge),
                                        input_example=example, tags=LINEAGE, figures={}, tables={})
    return str(tracker.register(uri, run_id, tags={**LINEAGE, "mlflow_run_id": run_id}).version)


EXPLAINED_TREES = {"learning_rate": 0.3, "max_leaf_nodes": 7, "min_samples_leaf": 20, "max_iter": 25, "holdout": 0.0}


def register_explained_version(settings: Settings, seed: int) -> str:
    """Log and register a small real trees pipeline (one the exact attributions know, ~2 s to fit) with its
    declared background, as `train_and_register` logs them; returns its version."""
    from hit_platform.adapters.model_explanations import background_tags, declare_background, log_background
    from hit_platform.domain.models.candidates import FAMILIES
    from hit_platform_tests.support.models import synthetic_features, synthetic_truth

    X = synthetic_features(800, seed)
    Y = np.random.default_rng(seed + 1).random((len(X), len(COUNTRIES))) < synthetic_truth(X)
    pipeline = FAMILIES["trees"].build(dict(EXPLAINED_TREES), seed).fit(X, Y)
    tracker = Tracker(settings)
    lineage = {**LINEAGE, "family": "trees"}
    run_id, uri = tracker.log_candidate(run_name=f"trees-{seed}", params={"family": "trees", **EXPLAINED_TREES},
                                        metrics={"auc": 0.5}, pipeline=pipeline, input_example=X.head(3),
                                        tags=lineage, figures={}, tables={})
    background = declare_background(X, "trees", seed)
    log_background(tracker, run_id, background)
    return str(tracker.register(uri, run_id, tags={**lineage, "mlflow_run_id": run_id,
                                                   **background_tags(background)}).version)


def promote_champion(settings: Settings, seed: int, explained: bool = False) -> str:
    """Log, register and promote a LinearHits pipeline (`explained`: a trees pipeline with its declared
    background, which /explain can explain); returns the new champion's version."""
    version = register_explained_version(settings, seed) if explained else register_version(settings, seed)
    Tracker(settings).promote(version)
    return version


def song(**overrides) -> dict:
    base = {"danceability": 0.7, "energy": 0.6, "key": 5, "loudness": -6.5, "mode": 1, "speechiness": 0.05,
            "acousticness": 0.2, "instrumentalness": 0.0, "liveness": 0.1, "valence": 0.5, "tempo": 120.0,
            "time_signature": 4, "duration_ms": 200_000, "is_explicit": False}
    return {**base, **overrides}


def serving_env(tmp: Path, **config) -> tuple[Settings, ServeConfig]:
    settings = Settings(warehouse=tmp / "warehouse")
    cfg = ServeConfig(**{"port": free_port(), "log_flush_seconds": 1.0, "start_timeout_s": 180, **config})
    return settings, cfg


def under_load(endpoint: str, action, clients: int = 4, before_s: float = 1.5, after_s: float = 1.5):
    """`action()` while `clients` threads post /predict without pause; returns its result and every
    request's (status, model version or error) in the order answered."""
    stop = threading.Event()
    results: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def hammer():
        with httpx.Client(base_url=endpoint, timeout=30) as client:
            while not stop.is_set():
                try:
                    r = client.post("/predict", json=song())
                    outcome = (r.status_code, r.json().get("model_version") if r.status_code == 200 else r.text)
                except httpx.HTTPError as exc:
                    outcome = (0, repr(exc))
                with lock:
                    results.append(outcome)

    threads = [threading.Thread(target=hammer) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(before_s)
    try:
        done = action()
        time.sleep(after_s)
    finally:
        stop.set()
        for t in threads:
            t.join()
    return done, results


def swapped_cleanly(results, old: str, new: str, what: str) -> None:
    failed = [r for r in results if r[0] != 200]
    assert failed == [], f"{len(failed)} of {len(results)} requests failed during the {what}: {failed[:5]}"
    versions = [v for _, v in results]
    assert set(versions) == {old, new}
    last_old = max(i for i, v in enumerate(versions) if v == old)
    assert all(v == new for v in versions[last_old + 1:])  # no flapping back once swapped


SONGS = [song(danceability=0.1 * i, tempo=90.0 + 7 * i, spotify_id=f"bytes{i}") for i in range(1, 6)]


def answers(endpoint: str, songs: list[dict] = SONGS) -> list[bytes]:
    """The answer bodies to SONGS, with the request id (fresh on every request) blanked."""
    out = []
    with httpx.Client(base_url=endpoint, timeout=30) as client:
        for s in songs:
            r = client.post("/predict", json=s)
            assert r.status_code == 200, r.text
            out.append(r.content.replace(r.json()["request_id"].encode(), b"<request_id>"))
    return out
