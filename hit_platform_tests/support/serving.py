"""Serving helpers: champions in a temp MLflow store, valid songs, a per-module serving config."""

from __future__ import annotations

import sys
from pathlib import Path

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

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, X, Y=None):
        rng = np.random.default_rng(self.seed)
        self.coef_ = rng.normal(0, 0.6, size=(np.shape(X)[1], len(COUNTRIES)))
        self.intercept_ = rng.normal(-1.5, 0.5, size=len(COUNTRIES))
        return self

    def predict_proba(self, X):
        return 1.0 / (1.0 + np.exp(-(np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_)))


def make_pipeline(seed: int) -> Pipeline:
    X = pd.DataFrame(probe_rows(200, seed=seed), columns=list(FEATURE_COLUMNS))
    return Pipeline([("scale", StandardScaler()), ("model", LinearHits(seed))]).fit(X)


LINEAGE = {"lake_snapshot_id": "42", "git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": "false",
           "dagster_run_id": "dagster-run-test", "family": "linear-test"}


def promote_champion(settings: Settings, seed: int) -> str:
    """Log, register and promote a LinearHits pipeline; returns the new champion's version."""
    tracker = Tracker(settings)
    example = pd.DataFrame(probe_rows(3), columns=list(FEATURE_COLUMNS))
    run_id, uri = tracker.log_candidate(run_name=f"linear-{seed}", params={"seed": seed}, metrics={"auc": 0.5},
                                        pipeline=make_pipeline(seed), input_example=example, tags=LINEAGE,
                                        figures={}, tables={})
    version = tracker.register(uri, run_id, tags={**LINEAGE, "mlflow_run_id": run_id})
    tracker.promote(version.version)
    return str(version.version)


def song(**overrides) -> dict:
    base = {"danceability": 0.7, "energy": 0.6, "key": 5, "loudness": -6.5, "mode": 1, "speechiness": 0.05,
            "acousticness": 0.2, "instrumentalness": 0.0, "liveness": 0.1, "valence": 0.5, "tempo": 120.0,
            "time_signature": 4, "duration_ms": 200_000, "is_explicit": False}
    return {**base, **overrides}


def serving_env(tmp: Path, **config) -> tuple[Settings, ServeConfig]:
    settings = Settings(warehouse=tmp / "warehouse")
    cfg = ServeConfig(**{"port": free_port(), "log_flush_seconds": 1.0, "start_timeout_s": 180, **config})
    return settings, cfg
