"""Retention of the batch tables: `ml.batch_predictions` and `ml.batch_explanations` gain a batch for every
model version the platform predicts with, so a year of retrains would keep every version's rows for good.

A model version's rows are kept while it still matters to someone: it is the champion or the challenger,
it is one of the `keep_versions` versions that predicted (or explained) most recently, or it did so within
`keep_days`. The rows of every other version go, in both tables at once; what went is recorded per
(table, version, Dagster run) in `ml.batch_expired` (rows, when predicted, when expired), so
`hit-platform audit <prediction_id>` of an expired batch prediction says it expired and when. Those records
are forgotten like the serving log's expired ids (HIT_MAINTENANCE_EXPIRED_IDS_KEEP_DAYS). Runs inside
`Lake.write`: one transaction, safe to retry.

A kept version (the champion above all) predicts again whenever new data arrives, each time a whole batch, so
its own batches are bounded too: those predicted before `keep_days` go (recorded the same way, reason
'superseded') except the rows a reader still needs: the version's latest batch (the label-free estimate's
population, the batch explanations' songs, audit), each song's first prediction by the version (the
delayed-label monitor scores it, with the lake snapshot it was made at), and the batches a label-free
estimate still realized again is of (`performance_estimates.REALIZE_DAYS`). `ml.batch_explanations` does
not grow per batch (a song is explained once per version), so a kept version's explanations all stay.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb

from hit_platform.adapters.lake.tables import table_exists
from hit_platform.steps import performance_estimates as estimates

EXPIRED = "ml.batch_expired"
# table -> the column its rows are dated by
TABLES = {"ml.batch_predictions": "predicted_at", "ml.batch_explanations": "explained_at"}

DDL = f"""CREATE TABLE IF NOT EXISTS {EXPIRED} (table_name VARCHAR, model_version VARCHAR, dagster_run_id VARCHAR,
    rows BIGINT, first_at TIMESTAMPTZ, last_at TIMESTAMPTZ, expired_at TIMESTAMPTZ, keep_versions INTEGER,
    keep_days DOUBLE)"""
COLUMNS = ("table_name, model_version, dagster_run_id, rows, first_at, last_at, expired_at, keep_versions, "
           "keep_days, reason")
SUPERSEDED = "superseded"  # ml.batch_expired.reason of a kept version's old batch (NULL: its version expired)


def _present(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return {t: c for t, c in TABLES.items() if table_exists(con, *t.split("."))}


def versions_past_bound(con: duckdb.DuckDBPyConnection, protected: set[str], keep_versions: int,
                        before: datetime) -> list[str]:
    """The model versions whose rows may go: none of `protected` (the champion, the challenger), none of
    the `keep_versions` versions active most recently, none active since `before` (active: predicted or
    explained, in either table). In version order."""
    tables = _present(con)
    if not tables:
        return []
    union = " UNION ALL ".join(f"SELECT model_version, max({c}) AS active FROM {t} GROUP BY 1"
                               for t, c in tables.items())
    rows = con.execute(f"""
        WITH last AS (SELECT model_version, max(active) AS active FROM ({union}) GROUP BY 1),
             ranked AS (SELECT *, row_number() OVER (ORDER BY active DESC, model_version DESC) AS recent FROM last)
        SELECT model_version FROM ranked WHERE recent > $keep AND active < $before""",
                       {"keep": int(keep_versions), "before": before}).fetchall()
    return sorted((str(r[0]) for r in rows if str(r[0]) not in protected),
                  key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v))


def superseded(con: duckdb.DuckDBPyConnection, gone: list[str], before: datetime,
               now: datetime) -> tuple[str, dict] | None:
    """(query, parameters) of the rows of ml.batch_predictions of versions not in `gone` that no reader
    needs: predicted before `before`, not of the version's latest batch (Dagster run), not a song's first
    prediction by the version, not of a batch a label-free estimate since `now - REALIZE_DAYS` was made on.
    None without the table."""
    if not table_exists(con, "ml", "batch_predictions"):
        return None
    params: dict = {"gone": list(gone), "before": before}
    estimated = ""
    if table_exists(con, *estimates.TABLE.split(".")):
        params["realized"] = now - timedelta(days=estimates.REALIZE_DAYS)
        estimated = f"""AND NOT EXISTS (SELECT 1 FROM {estimates.TABLE} e WHERE e.source = 'batch'
            AND e.model_version = r.model_version AND e.window_end = r.predicted_at AND e.estimated_at >= $realized)"""
    return f"""SELECT prediction_id, model_version, dagster_run_id, predicted_at FROM (
        SELECT prediction_id, model_version, dagster_run_id, predicted_at,
               row_number() OVER (PARTITION BY model_version, spotify_id ORDER BY predicted_at, prediction_id) AS nth,
               arg_max(dagster_run_id, predicted_at) OVER (PARTITION BY model_version) AS latest_run
        FROM ml.batch_predictions WHERE NOT list_contains($gone, model_version)) r
        WHERE nth > 1 AND dagster_run_id <> latest_run AND predicted_at < $before {estimated}""", params


def _record_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)
    con.execute(f"ALTER TABLE {EXPIRED} ADD COLUMN IF NOT EXISTS reason VARCHAR")


def expire_batches(con: duckdb.DuckDBPyConnection, versions: list[str], now: datetime, keep_versions: int,
                   keep_days: float, forget_before: datetime,
                   superseded_before: datetime | None = None) -> dict[str, int]:
    """Record, then delete, every row of `versions` in both batch tables, and (given `superseded_before`)
    the `superseded` rows of the kept versions; forget the records of batches predicted before
    `forget_before`. Returns {what: rows}."""
    out = {"versions_expired": len(versions), "predictions_expired": 0, "explanations_expired": 0,
           "superseded_expired": 0, "expired_records_forgotten": 0}
    tables = _present(con)
    if versions and tables:
        _record_table(con)
    for table, at in tables.items() if versions else ():
        p = {"versions": versions, "now": now, "keep": int(keep_versions), "days": float(keep_days), "t": table}
        con.execute(f"""INSERT INTO {EXPIRED} ({COLUMNS})
            SELECT $t, model_version, dagster_run_id, count(*), min({at}), max({at}), $now, $keep, $days, NULL
            FROM {table} WHERE list_contains($versions, model_version) GROUP BY ALL""", p)
        gone = con.execute(f"DELETE FROM {table} WHERE list_contains($versions, model_version)",
                           {"versions": versions}).fetchall()
        out["predictions_expired" if table.endswith("predictions") else "explanations_expired"] = \
            int(gone[0][0]) if gone else 0
    old = superseded(con, versions, superseded_before, now) if superseded_before is not None else None
    if old is not None and con.execute(f"SELECT count(*) FROM ({old[0]})", old[1]).fetchall()[0][0]:
        query, p = old
        _record_table(con)
        con.execute(f"""INSERT INTO {EXPIRED} ({COLUMNS})
            SELECT 'ml.batch_predictions', model_version, dagster_run_id, count(*), min(predicted_at),
                   max(predicted_at), $now, $keep, $days, '{SUPERSEDED}' FROM ({query}) GROUP BY ALL""",
                    {**p, "now": now, "keep": int(keep_versions), "days": float(keep_days)})
        gone = con.execute(f"""DELETE FROM ml.batch_predictions
                               WHERE prediction_id IN (SELECT prediction_id FROM ({query}))""", p).fetchall()
        out["superseded_expired"] = int(gone[0][0]) if gone else 0
    if table_exists(con, "ml", "batch_expired"):
        forgot = con.execute(f"DELETE FROM {EXPIRED} WHERE last_at < ?", [forget_before]).fetchall()
        out["expired_records_forgotten"] = int(forgot[0][0]) if forgot else 0
    return out


def rows_past_bound(con: duckdb.DuckDBPyConnection, protected: set[str], keep_versions: int, before: datetime,
                    forget_before: datetime, now: datetime | None = None) -> dict[str, int]:
    """Rows per batch table of the versions past the bound, the kept versions' superseded rows (given
    `now`), and expired records older than their own bound: what the retention check bounds (0 once the
    retention ran)."""
    versions = versions_past_bound(con, protected, keep_versions, before)
    out = {t.split(".")[1]: int(con.execute(f"SELECT count(*) FROM {t} WHERE list_contains(?, model_version)",
                                            [versions]).fetchall()[0][0]) if versions else 0
           for t in _present(con)}
    old = superseded(con, versions, before, now) if now is not None else None
    if old is not None:
        out["batch_predictions_superseded"] = int(con.execute(f"SELECT count(*) FROM ({old[0]})",
                                                              old[1]).fetchall()[0][0])
    if table_exists(con, "ml", "batch_expired"):
        out["batch_expired"] = int(con.execute(f"SELECT count(*) FROM {EXPIRED} WHERE last_at < ?",
                                               [forget_before]).fetchall()[0][0])
    return out


def expired_prediction(con: duckdb.DuckDBPyConnection, prediction_id: str) -> dict | None:
    """What is recorded of the batch a `<dagster run id>:<spotify_id>` prediction id belonged to, when that
    batch's rows expired; None when no expired batch of that run is recorded."""
    run_id, sep, song = prediction_id.partition(":")
    if not sep or not song or not table_exists(con, "ml", "batch_expired"):
        return None
    columns = {d[0] for d in con.execute(f"SELECT * FROM {EXPIRED} LIMIT 0").description}
    reason = "reason" if "reason" in columns else "NULL"  # a record table made before superseded batches went
    rows = con.execute(f"""SELECT model_version, rows, first_at, expired_at, keep_versions, keep_days, {reason}
                           FROM {EXPIRED} WHERE table_name = 'ml.batch_predictions' AND dagster_run_id = ?
                           ORDER BY expired_at LIMIT 1""", [run_id]).fetchall()
    if not rows:
        return None
    version, n, at, expired_at, keep_versions, keep_days, why = rows[0]
    return {"model_version": str(version), "dagster_run_id": run_id, "spotify_id": song, "batch_rows": n,
            "at": at, "expired_at": expired_at, "keep_versions": keep_versions, "keep_days": keep_days,
            "reason": why}
