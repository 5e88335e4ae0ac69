"""Retention of the serving logs: raw rows of `ops.inference_log` and `ops.shadow_log` are kept N days;
past that, whole days are folded into daily aggregates that the monitors and the dashboard read, and the
raw rows go. What stays of an expired request:

- `ops.inference_log_daily`: per day, model version, endpoint and status: requests, songs, latency
  quantiles, the mean of every feature and of every country's probability (the dashboard's daily traffic);
- `ops.shadow_log_daily`: per day and (champion, challenger): songs scored and the mean absolute difference
  of their probabilities;
- `ops.inference_log_first_served`: the first answer each model version gave each `spotify_id` (what the
  delayed-label monitor scores once labels arrive: bounded by songs x versions, not by requests);
- `ops.inference_log_expired`: each expired request's id, when it was served, by which version, and when
  it expired, kept `HIT_MAINTENANCE_EXPIRED_IDS_KEEP_DAYS` so `audit` says "expired" rather than "unknown".

A day is folded whole (the cutoff is a UTC midnight), once; rows committed late for a day already folded
(a dead replica's journal) add their own aggregate rows, which readers sum. Runs inside `Lake.write`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb

from hit_platform.adapters.lake.tables import table_exists
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS

DAILY = "ops.inference_log_daily"
SHADOW_DAILY = "ops.shadow_log_daily"
FIRST_SERVED = "ops.inference_log_first_served"
EXPIRED = "ops.inference_log_expired"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'  # country codes such as IS, IN, DO are SQL keywords


_MEAN_PROBS = "{" + ", ".join(f"{_q(c)}: avg(probabilities.{_q(c)})" for c in COUNTRIES) + "}"
_MEAN_ABS_DIFF = ("(" + " + ".join(f"abs(s.probabilities.{_q(c)} - l.probabilities.{_q(c)})" for c in COUNTRIES)
                  + f") / {len(COUNTRIES)}")
_PROBS_TYPE = "STRUCT(" + ", ".join(f"{_q(c)} DOUBLE" for c in COUNTRIES) + ")"

DDL = [
    f"""CREATE TABLE IF NOT EXISTS {DAILY} (day DATE, model_version VARCHAR, endpoint VARCHAR, status INTEGER,
        requests BIGINT, songs BIGINT, latency_p50_ms DOUBLE, latency_p99_ms DOUBLE, latency_mean_ms DOUBLE,
        {', '.join(f'{_q("mean_" + c)} DOUBLE' for c in FEATURE_COLUMNS)}, mean_probabilities {_PROBS_TYPE},
        folded_at TIMESTAMPTZ)""",
    f"""CREATE TABLE IF NOT EXISTS {SHADOW_DAILY} (day DATE, champion_model_version VARCHAR,
        shadow_model_version VARCHAR, songs BIGINT, mean_abs_diff DOUBLE, folded_at TIMESTAMPTZ)""",
    f"""CREATE TABLE IF NOT EXISTS {FIRST_SERVED} (model_version VARCHAR, spotify_id VARCHAR,
        received_at TIMESTAMPTZ, probabilities {_PROBS_TYPE})""",
    f"""CREATE TABLE IF NOT EXISTS {EXPIRED} (request_id VARCHAR, received_at TIMESTAMPTZ, endpoint VARCHAR,
        status INTEGER, model_version VARCHAR, songs BIGINT, expired_at TIMESTAMPTZ, kept_days DOUBLE)""",
]


def cutoff(now: datetime, keep_days: float) -> datetime:
    """Rows received before this UTC midnight are expired: every whole day older than `keep_days`."""
    edge = now.astimezone(timezone.utc) - timedelta(days=keep_days)
    return edge.replace(hour=0, minute=0, second=0, microsecond=0)


def expire_logs(con: duckdb.DuckDBPyConnection, before: datetime, keep_days: float, now: datetime,
                expired_ids_keep_days: float) -> dict[str, int]:
    """Fold the log rows received before `before` into the aggregates, record their request ids, delete them;
    forget expired ids older than `expired_ids_keep_days`. Returns {what: rows}."""
    out = {"inference_rows_expired": 0, "shadow_rows_expired": 0, "requests_expired": 0, "expired_ids_forgotten": 0}
    if not table_exists(con, "ops", "inference_log"):
        return out
    for ddl in DDL:
        con.execute(ddl)
    p = {"before": before, "now": now}
    if table_exists(con, "ops", "shadow_log"):
        con.execute(f"""INSERT INTO {SHADOW_DAILY}
            SELECT s.received_at::DATE, s.champion_model_version, s.shadow_model_version, count(*),
                   avg({_MEAN_ABS_DIFF}), $now
            FROM ops.shadow_log s LEFT JOIN ops.inference_log l USING (request_id, item)
            WHERE s.received_at < $before GROUP BY ALL""", p)
        out["shadow_rows_expired"] = _deleted(con, "DELETE FROM ops.shadow_log WHERE received_at < $before",
                                              {"before": before})
    features = ", ".join(f"avg({_q(c)})" for c in FEATURE_COLUMNS)
    con.execute(f"""INSERT INTO {DAILY}
        WITH req AS (SELECT request_id, any_value(latency_ms) AS ms FROM ops.inference_log
                     WHERE received_at < $before GROUP BY request_id)
        SELECT l.received_at::DATE, l.model_version, l.endpoint, l.status, count(DISTINCT l.request_id),
               count(l.item), quantile_cont(r.ms, 0.5), quantile_cont(r.ms, 0.99), avg(r.ms), {features},
               {_MEAN_PROBS}, $now
        FROM ops.inference_log l JOIN req r USING (request_id)
        WHERE l.received_at < $before GROUP BY ALL""", p)
    con.execute(f"""INSERT INTO {FIRST_SERVED}
        SELECT model_version, spotify_id, received_at, probabilities FROM ops.inference_log l
        WHERE received_at < $before AND status = 200 AND spotify_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM {FIRST_SERVED} f
                          WHERE f.model_version = l.model_version AND f.spotify_id = l.spotify_id)
        QUALIFY row_number() OVER (PARTITION BY model_version, spotify_id ORDER BY received_at) = 1""",
                {"before": before})
    out["requests_expired"] = _deleted(con, f"""INSERT INTO {EXPIRED}
        SELECT request_id, min(received_at), any_value(endpoint), any_value(status), any_value(model_version),
               count(item), $now, {float(keep_days)} FROM ops.inference_log
        WHERE received_at < $before GROUP BY request_id""", p)
    out["inference_rows_expired"] = _deleted(con, "DELETE FROM ops.inference_log WHERE received_at < $before",
                                                 {"before": before})
    out["expired_ids_forgotten"] = _deleted(con, f"DELETE FROM {EXPIRED} WHERE received_at < $forget",
                                            {"forget": now - timedelta(days=expired_ids_keep_days)})
    return out


def _deleted(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> int:
    rows = con.execute(sql, params).fetchall()
    return int(rows[0][0]) if rows else 0


def raw_rows_older_than(con: duckdb.DuckDBPyConnection, before: datetime,
                        ids_before: datetime | None = None) -> dict[str, int]:
    """Raw log rows received before `before` per table, and expired ids older than `ids_before`: what the
    retention check bounds (0 once the retention ran)."""
    out = {}
    for table, edge in (("inference_log", before), ("shadow_log", before), ("inference_log_expired", ids_before)):
        if edge is not None and table_exists(con, "ops", table):
            out[table] = int(con.execute(f"SELECT count(*) FROM ops.{table} WHERE received_at < ?",
                                         [edge]).fetchall()[0][0])
    return out


def expired_request(con: duckdb.DuckDBPyConnection, request_id: str) -> dict | None:
    """What the log kept of a request whose raw rows expired, or None when it has no record of one."""
    if not table_exists(con, "ops", "inference_log_expired"):
        return None
    rows = con.execute(f"SELECT received_at, endpoint, status, model_version, songs, expired_at, kept_days "
                       f"FROM {EXPIRED} WHERE request_id = ? ORDER BY expired_at LIMIT 1", [request_id]).fetchall()
    if not rows:
        return None
    at, endpoint, status, version, songs, expired_at, kept = rows[0]
    return {"at": at, "endpoint": endpoint, "status": status, "model_version": version, "songs": songs,
            "expired_at": expired_at, "kept_days": kept}


def traffic_by_day(con: duckdb.DuckDBPyConnection, days: int = 30) -> list[tuple]:
    """(day, requests, songs, answered 5xx, p99 ms, from): the newest `days` days of traffic, from the raw
    log while it holds a day and from the daily aggregates once it was folded (the dashboard's table)."""
    parts = []
    if table_exists(con, "ops", "inference_log"):
        parts.append("""SELECT received_at::DATE AS day, count(DISTINCT request_id) AS requests, count(item) AS songs,
                               count(DISTINCT request_id) FILTER (WHERE status >= 500) AS errors,
                               quantile_cont(latency_ms, 0.99) AS p99, 'raw log' AS source
                        FROM ops.inference_log GROUP BY 1""")
    if table_exists(con, "ops", "inference_log_daily"):
        parts.append(f"""SELECT day, sum(requests), sum(songs), coalesce(sum(requests) FILTER (WHERE status >= 500), 0),
                                max(latency_p99_ms), 'daily aggregate' FROM {DAILY} GROUP BY 1""")
    if not parts:
        return []
    return con.execute(f"SELECT * FROM ({' UNION ALL '.join(parts)}) ORDER BY day DESC LIMIT ?", [days]).fetchall()
