"""The champion's probabilities for every song in `ml.features`, appended to `ml.batch_predictions`."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from hit_platform.adapters.lake.tables import BATCH_DDL, PROB_COLUMNS
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS


def score_features(con: duckdb.DuckDBPyConnection, model) -> pd.DataFrame:
    """One row per song of ml.features (by spotify_id): its top country and that probability, and the
    model's 72 probabilities (PROB_COLUMNS), all songs scored in one call."""
    df = con.execute(f"SELECT spotify_id, {', '.join(FEATURE_COLUMNS)} FROM ml.features ORDER BY spotify_id").df()
    P = model.predict_proba(df[list(FEATURE_COLUMNS)])  # all songs x 72 countries in one call
    top = P.argmax(axis=1)
    out = pd.DataFrame(P, columns=PROB_COLUMNS)
    out.insert(0, "top_probability", P[np.arange(len(P)), top])
    out.insert(0, "top_country", np.asarray(COUNTRIES)[top])
    out.insert(0, "spotify_id", df["spotify_id"].to_numpy())
    return out


def append(con: duckdb.DuckDBPyConnection, batch: pd.DataFrame, run_id: str, model_version: str,
           snapshot_read: int) -> None:
    """Append a scored batch (inside a transaction the caller holds: `Lake.write`); each row's
    `prediction_id` is `<run_id>:<spotify_id>`, which `hit-platform audit` traces."""
    con.execute(BATCH_DDL)
    con.register("batch_frame", batch)
    con.execute(f"""
        INSERT INTO ml.batch_predictions
        SELECT ? || ':' || spotify_id, spotify_id, ?, ?, ?, now(), top_country, top_probability,
               {', '.join(PROB_COLUMNS)}
        FROM batch_frame""", [run_id, model_version, run_id, snapshot_read])
    con.unregister("batch_frame")
