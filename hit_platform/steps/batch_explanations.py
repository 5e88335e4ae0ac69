"""The champion's exact attributions of its latest batch, a bounded slice per run, long into `ml.batch_explanations`.

Which songs: those of the model version's latest batch in `ml.batch_predictions` (its latest Dagster run),
with the features that batch scored (`ml.features` at the lake snapshot it read), not yet explained for
that model version, in spotify_id order: the first `limit` of them. A song is explained once per model
version (its audio features do not change); the next run takes the next songs, so a batch of thousands
is explained over several runs and no run costs more than `limit` songs. A song with a missing feature
has no exact attribution (the value function needs every feature): it is counted, never explained.

One row per (song, country, feature): base + sum(attribution) over a (model_version, spotify_id,
country) is `value`, on the country's declared `scale` ("log-odds", or "probability, exact
enumeration" for an isotonic country), within 1e-9; `probability` is the batch's own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from hit_platform.adapters.lake.tables import BATCH_EXPLANATIONS_DDL, PROB_COLUMNS, table_exists
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.explain import Explainer
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.steps.datasets import at_version

TABLE = "ml.batch_explanations"


@dataclass
class Pending:
    """The slice of the version's latest batch a run explains, and what is left of that batch."""

    model_version: str
    batch_run_id: str | None  # None: this version has no batch yet
    lake_snapshot_read: int | None  # the snapshot the batch read its features at
    songs: pd.DataFrame  # prediction_id, spotify_id, the 14 features, PROB_COLUMNS: the slice, in order
    batch_songs: int = 0
    already_explained: int = 0
    missing_features: int = 0
    remaining_after: int = 0  # explainable songs of the batch left for later runs


def pending(con: duckdb.DuckDBPyConnection, model_version: str, limit: int) -> Pending:
    """The next `limit` songs of `model_version`'s latest batch that are not yet explained for it."""
    empty = pd.DataFrame(columns=["prediction_id", "spotify_id", *FEATURE_COLUMNS, *PROB_COLUMNS])
    if not table_exists(con, "ml", "batch_predictions"):
        return Pending(model_version, None, None, empty)
    latest = con.execute("""SELECT dagster_run_id, any_value(lake_snapshot_id) FROM ml.batch_predictions
                            WHERE model_version = ? GROUP BY dagster_run_id ORDER BY max(predicted_at) DESC LIMIT 1""",
                         [model_version]).fetchall()
    if not latest:
        return Pending(model_version, None, None, empty)
    run_id, snapshot = latest[0]
    done = (f"EXISTS (SELECT 1 FROM {TABLE} e WHERE e.model_version = $v AND e.spotify_id = b.spotify_id)"
            if table_exists(con, "ml", "batch_explanations") else "false")
    complete = " AND ".join(f"f.{c} IS NOT NULL" for c in FEATURE_COLUMNS)
    batch = f"""SELECT b.prediction_id, b.spotify_id, {done} AS done, {complete} AS complete,
                       {', '.join(f'f.{c}' for c in FEATURE_COLUMNS)}, {', '.join(f'b.{p}' for p in PROB_COLUMNS)}
                FROM ml.batch_predictions b JOIN {at_version('ml.features', snapshot)} f USING (spotify_id)
                WHERE b.model_version = $v AND b.dagster_run_id = $run"""
    params = {"v": model_version, "run": run_id}
    counts = con.execute(f"""SELECT count(*), count(*) FILTER (WHERE done),
                                    count(*) FILTER (WHERE NOT done AND NOT complete) FROM ({batch})""",
                         params).fetchall()[0]
    songs = con.execute(f"""SELECT * EXCLUDE (done, complete) FROM ({batch}) WHERE NOT done AND complete
                            ORDER BY spotify_id LIMIT {int(limit)}""", params).df()
    todo = counts[0] - counts[1] - counts[2]
    return Pending(model_version, run_id, int(snapshot), songs, batch_songs=counts[0], already_explained=counts[1],
                   missing_features=counts[2], remaining_after=todo - len(songs))


def explain(explainer: Explainer, slice_: Pending) -> tuple[pd.DataFrame, float]:
    """(the long rows of the slice's attributions, songs explained per second)."""
    songs = slice_.songs
    started = time.perf_counter()
    a = explainer.explain(songs[list(FEATURE_COLUMNS)])
    seconds = time.perf_counter() - started
    n, k, d = a.phi.shape
    X = songs[list(FEATURE_COLUMNS)].to_numpy(np.float64)
    P = songs[PROB_COLUMNS].to_numpy(np.float64)
    rows = pd.DataFrame({
        "prediction_id": np.repeat(songs["prediction_id"].to_numpy(), k * d),
        "spotify_id": np.repeat(songs["spotify_id"].to_numpy(), k * d),
        "country": np.tile(np.repeat(np.asarray(a.countries), d), n),
        "feature": np.tile(np.asarray(a.features), n * k),
        "feature_value": np.repeat(X, k, axis=0).ravel(),
        "attribution": a.phi.ravel(),
        "base": np.repeat(a.base.ravel(), d),
        "value": np.repeat(a.value.ravel(), d),
        "scale": np.tile(np.repeat(np.asarray(a.scales), d), n),
        "probability": np.repeat(P.ravel(), d),
        "background_size": np.tile(np.repeat(a.background_size.astype(np.int32), d), n),
    })
    assert list(a.countries) == list(COUNTRIES)  # PROB_COLUMNS are in COUNTRIES order
    return rows, (n / seconds if seconds > 0 and n else float("nan"))


def append(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, model_version: str, run_id: str,
           snapshot_read: int) -> int:
    """Append the rows (inside a transaction the caller holds: `Lake.write`), leaving out any song already
    explained for this version (a concurrent run's), so a song is never in the table twice; rows written."""
    con.execute(BATCH_EXPLANATIONS_DDL)
    con.register("explained_frame", rows)
    try:
        return con.execute(f"""
            INSERT INTO {TABLE}
            SELECT prediction_id, spotify_id, $v, country, feature, feature_value, attribution, base, value, scale,
                   probability, background_size, $run, now(), $snap
            FROM explained_frame r
            WHERE NOT EXISTS (SELECT 1 FROM {TABLE} e WHERE e.model_version = $v AND e.spotify_id = r.spotify_id)""",
                           {"v": model_version, "run": run_id, "snap": snapshot_read}).fetchall()[0][0]
    finally:
        con.unregister("explained_frame")
