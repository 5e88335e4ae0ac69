"""`ops/attribution_drift` on a real DuckLake, a real MLflow store and real Dagster runs: served songs whose
tempo is stuck upstream (probabilities still ordinary) breach; served songs like the batch do not; no
served songs, no batch explanations or no declared background is a clear not-judged result.

The champion is a small real trees pipeline with its declared background, trained on a world where
tempo drives the charts (`support.models.synthetic_truth`); its batch is 200 songs of that world,
explained by the real `ml/batch_explanations` asset.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.tracking import Tracker
from hit_platform.defs.ml.explanations import batch_explanations
from hit_platform.defs.ml.predictions import batch_predictions
from hit_platform.defs.ops import attribution_drift
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.settings import Settings
from hit_platform_tests.support.models import synthetic_features
from hit_platform_tests.support.monitored_world import serve
from hit_platform_tests.support.lake_assets import materialize as materialized, write_features
from hit_platform_tests.support.serving import register_explained_version, register_version

SONGS = 200
THRESHOLDS = '{"min_rows": 150, "attribution_sample": 150}'


def materialize(settings: Settings, asset) -> dict:
    return materialized(settings, asset, monitors_json=THRESHOLDS)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    settings = Settings(warehouse=tmp_path_factory.mktemp("attribution_drift") / "warehouse")
    version = register_explained_version(settings, seed=4)
    Tracker(settings).promote(version)
    X = synthetic_features(SONGS, seed=11)
    frame = X.assign(spotify_id=[f"song{i:03d}" for i in range(SONGS)])[["spotify_id", *FEATURE_COLUMNS]]

    write_features(settings, frame)
    materialize(settings, batch_predictions)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HIT_BATCH_EXPLAIN_SONGS", str(SONGS))
        assert materialize(settings, batch_explanations)["songs_explained"] == SONGS
    return settings, version, Tracker(settings).load_version(version)


def served(settings: Settings, version: str, model, X: pd.DataFrame) -> np.ndarray:
    P = model.predict_proba(X)
    serve(Lake(settings), X.to_numpy(np.float64), P, version)
    return P


def test_no_served_songs_is_not_judged(world):
    settings, version, _ = world
    meta = materialize(settings, attribution_drift)
    assert meta["breached"] is False and "0 served songs" in meta["summary"] and "not judged" in meta["summary"]


def test_served_songs_like_the_batch_do_not_breach(world):
    settings, version, model = world
    served(settings, version, model, synthetic_features(150, seed=12))  # other songs of the same world
    meta = materialize(settings, attribution_drift)
    assert meta["breached"] is False, meta["summary"]
    assert meta["served_songs"] == 150 and meta["batch_songs"] == SONGS
    assert meta["median_importance_shift"] < 0.6 * meta["threshold_median_importance_shift"], meta["summary"]


def test_a_feature_stuck_upstream_breaches_though_the_probabilities_look_ordinary(world):
    settings, version, model = world
    X = synthetic_features(150, seed=13)
    P_ok = model.predict_proba(X)
    # the tempo pipeline sends one value for every song, one whose probabilities average like the real ones'
    stuck = min(np.quantile(X["tempo"], np.linspace(0.1, 0.9, 17)),
                key=lambda v: abs(model.predict_proba(X.assign(tempo=v)).mean() - P_ok.mean()))
    P_broken = served(settings, version, model, X.assign(tempo=stuck))
    assert abs(P_broken.mean() - P_ok.mean()) < 0.02  # the probabilities alone look ordinary
    meta = materialize(settings, attribution_drift)
    assert meta["breached"] is True, meta["summary"]
    assert "tempo" in meta["summary"] and meta["median_importance_shift"] > meta["threshold_median_importance_shift"]
    with Lake(settings).connection(read_only=True) as con:
        alerts = con.execute("SELECT kind, what FROM ops.alerts WHERE \"where\" = 'ops/attribution_drift'").fetchall()
        recorded = con.execute("""SELECT value, breached FROM ops.monitor_metrics WHERE monitor = 'attribution_drift'
                                  AND metric = 'median_importance_shift' ORDER BY checked_at DESC LIMIT 1""").fetchall()
    assert alerts and alerts[-1][0] == "monitor_breach" and "tempo" in alerts[-1][1]
    assert recorded == [(pytest.approx(meta["median_importance_shift"]), True)]


def test_a_champion_without_batch_explanations_is_not_judged(world):
    """A version with no declared background never has batch explanations (ml/batch_explanations says why):
    the monitor says it has nothing to compare with, and does not load the model."""
    settings, _, _ = world
    old = register_version(settings, seed=9)  # as registered before backgrounds were declared
    Tracker(settings).promote(old)
    served(settings, old, Tracker(settings).load_version(old), synthetic_features(150, seed=14))
    meta = materialize(settings, attribution_drift)
    assert meta["breached"] is False and "0 songs of version" in meta["summary"], meta["summary"]
    assert "not judged" in meta["summary"]
