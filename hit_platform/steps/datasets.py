"""Training data out of the lake: features x 72 labels for one split, at one snapshot.

Row order is fixed (by spotify_id) and the columns are `FEATURE_COLUMNS` and
`COUNTRIES` in order, so the same snapshot always gives the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS


@dataclass
class Dataset:
    split: str
    spotify_ids: np.ndarray  # (n,)
    X: pd.DataFrame  # (n, len(FEATURE_COLUMNS)), float64
    Y: np.ndarray  # (n, 72) bool, columns in COUNTRIES order
    snapshot_id: int | None

    def __len__(self) -> int:
        return len(self.spotify_ids)


def at_version(table: str, snapshot_id: int | None) -> str:
    """A table reference at a lake snapshot, usable with an alias (DuckDB's parser takes no alias
    right after an AT clause)."""
    if snapshot_id is None:
        return table
    return f"(SELECT * FROM {table} AT (VERSION => {int(snapshot_id)}))"


def reread_sql(table: str, snapshot_id: int) -> str:
    """The query that reads a table again as a lake snapshot left it (shown beside what an asset wrote)."""
    return f"SELECT * FROM {table} AT (VERSION => {snapshot_id})"


# Every table `load_split` reads: what a training or an evaluation at a snapshot asks the gates' verdicts of.
SPLIT_TABLES = ("ml.features", "ml.splits", "core.song_labels")


def load_split(con: duckdb.DuckDBPyConnection, split: str, snapshot_id: int | None = None) -> Dataset:
    """One split's songs with their features and per-country labels, optionally at a lake snapshot."""
    # each song's hit countries as one list, spread over the 72 columns here: 72 FILTERed aggregates in
    # the query cost 4x the CPU (every label row tested against every country)
    feats = ", ".join(f"f.{c}" for c in FEATURE_COLUMNS)
    df = con.execute(f"""
        SELECT f.spotify_id, {feats},
               coalesce(list(l.country) FILTER (WHERE l.label), []::VARCHAR[]) AS hit_countries
        FROM {at_version("ml.features", snapshot_id)} f
        JOIN {at_version("ml.splits", snapshot_id)} s USING (spotify_id)
        JOIN {at_version("core.song_labels", snapshot_id)} l USING (spotify_id)
        WHERE s.split = ?
        GROUP BY ALL
        ORDER BY f.spotify_id""", [split]).df()
    if df.empty:
        where = f" at snapshot {snapshot_id}" if snapshot_id is not None else ""
        raise ValueError(f"split {split!r} is empty in the lake{where}: build ml/splits first")
    column = {c: j for j, c in enumerate(COUNTRIES)}
    Y = np.zeros((len(df), len(COUNTRIES)), dtype=bool)
    for i, hits in enumerate(df["hit_countries"]):
        Y[i, [column[c] for c in hits if c in column]] = True
    X = df[list(FEATURE_COLUMNS)].astype("float64").reset_index(drop=True)
    return Dataset(split, df["spotify_id"].to_numpy(), X, Y, snapshot_id)
