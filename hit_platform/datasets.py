"""Training data out of the lake: features x 72 labels for one split, at one snapshot.

Row order is fixed (by spotify_id) and the columns are `FEATURE_COLUMNS` and
`COUNTRIES` in order, so the same snapshot always gives the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from hit_platform.countries import COUNTRIES
from hit_platform.features import FEATURE_COLUMNS


@dataclass
class Dataset:
    split: str
    spotify_ids: np.ndarray  # (n,)
    X: pd.DataFrame  # (n, len(FEATURE_COLUMNS)), float64
    Y: np.ndarray  # (n, 72) bool, columns in COUNTRIES order
    snapshot_id: int | None

    def __len__(self) -> int:
        return len(self.spotify_ids)


def _at(snapshot_id: int | None) -> str:
    return f" AT (VERSION => {int(snapshot_id)})" if snapshot_id is not None else ""


def load_split(con: duckdb.DuckDBPyConnection, split: str, snapshot_id: int | None = None) -> Dataset:
    """One split's songs with their features and per-country labels, optionally at a lake snapshot."""
    at = _at(snapshot_id)
    pivot = ", ".join(f"bool_or(l.label) FILTER (WHERE l.country = '{c}') AS \"{c}\"" for c in COUNTRIES)
    feats = ", ".join(f"f.{c}" for c in FEATURE_COLUMNS)
    df = con.execute(f"""
        SELECT f.spotify_id, {feats}, {pivot}
        FROM ml.features{at} f
        JOIN ml.splits{at} s USING (spotify_id)
        JOIN core.song_labels{at} l USING (spotify_id)
        WHERE s.split = ?
        GROUP BY ALL
        ORDER BY f.spotify_id""", [split]).df()
    if df.empty:
        raise ValueError(f"split {split!r} is empty in the lake{at or ''}: build ml/splits first")
    Y = df[list(COUNTRIES)].to_numpy(dtype=bool)
    X = df[list(FEATURE_COLUMNS)].astype("float64").reset_index(drop=True)
    return Dataset(split, df["spotify_id"].to_numpy(), X, Y, snapshot_id)
