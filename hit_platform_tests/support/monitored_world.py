"""A small monitored world in a real lake: songs, their features, splits and labels, where the
"model" is the truth itself; and writers of served requests and batch predictions for it."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import BATCH_DDL
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.serving import inference_log
from hit_platform.serving.inference_log import Served
from hit_platform.serving.predictor import probe_rows
from hit_platform.settings import Settings

N = 800


def truth(X: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    Z = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1)
    return 1 / (1 + np.exp(-(Z @ rng.normal(0, 1.0, (X.shape[1], len(COUNTRIES))) - 1.0)))


def make_world(tmp_path_factory):
    """Songs, their features, splits and labels in a lake; the 'model' is the truth itself."""
    lake = Lake(Settings(warehouse=tmp_path_factory.mktemp("monitors") / "warehouse"))
    X = probe_rows(N, seed=0)
    P = truth(X)
    Y = np.random.default_rng(2).random(P.shape) < P
    ids = np.array([f"song{i:018d}" for i in range(N)])
    feats = pd.DataFrame(X, columns=list(FEATURE_COLUMNS)).assign(spotify_id=ids)
    splits = pd.DataFrame({"spotify_id": ids, "split": np.where(np.arange(N) % 10 < 7, "train", "test")})
    labels = pd.DataFrame({"spotify_id": np.repeat(ids, len(COUNTRIES)), "country": np.tile(COUNTRIES, N),
                           "label": Y.ravel()})

    def write(con):
        for name, frame in (("ml.features", feats), ("ml.splits", splits), ("core.song_labels", labels)):
            con.register("f", frame)
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM f")
            con.unregister("f")

    lake.write(write)
    with lake.connection(read_only=True) as con:
        snapshot = lake.snapshot_id(con)
    return lake, X, P, Y, ids, snapshot


def serve(lake: Lake, X: np.ndarray, P: np.ndarray, version: str, status: int = 200, latency: float = 5.0,
          ids=None) -> None:
    entries = [Served(str(uuid.uuid4()), datetime.now(timezone.utc), "/predict", status, latency, version, 5,
                      X[i:i + 1], P[i:i + 1], [(ids[i] if ids is not None else None, None, None, None)])
               for i in range(len(X))]
    lake.write(lambda con: inference_log.insert(con, inference_log.to_arrow(entries)))


def batch(lake: Lake, ids, P: np.ndarray, version: str, snapshot: int) -> None:
    frame = pd.DataFrame(P, columns=[f"p_{c}" for c in COUNTRIES]).assign(spotify_id=ids)

    def write(con):
        con.execute(BATCH_DDL)
        con.register("b", frame)
        con.execute(f"""INSERT INTO ml.batch_predictions SELECT 'r:' || spotify_id, spotify_id, ?, 'r', ?, now(),
                        'US', 0.5, {', '.join(f'p_{c}' for c in COUNTRIES)} FROM b""", [version, snapshot])
        con.unregister("b")

    lake.write(write)
