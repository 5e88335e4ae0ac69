"""Alerts: what went wrong, where and when, in the lake table `ops.alerts`.

Run failures (a run-failure sensor), failing quality gates and monitor breaches
all land here; `hit-platform alerts` lists them.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import duckdb

from hit_platform.adapters.lake.tables import ALERTS_DDL
from hit_platform.adapters.lake.connection import Lake

KINDS = ("run_failure", "gate_failure", "monitor_breach", "drift", "performance_estimate", "ingest", "inference_log",
         "maintenance")
SEVERITIES = ("warning", "error")


def raise_alert(lake: Lake, *, kind: str, severity: str, what: str, where: str, run_id: str | None = None,
                details: dict | None = None, alert_id: str | None = None) -> str:
    """Record one alert (idempotent by `alert_id`: the same event recorded twice is one alert)."""
    return lake.write(lambda con: insert_alert(con, kind=kind, severity=severity, what=what, where=where,
                                               run_id=run_id, details=details, alert_id=alert_id),
                      what="ops.alerts")


def insert_alert(con: duckdb.DuckDBPyConnection, *, kind: str, severity: str, what: str, where: str,
                 run_id: str | None = None, details: dict | None = None, alert_id: str | None = None) -> str:
    """`raise_alert` inside a transaction the caller holds (so the alert commits with what it is about)."""
    if kind not in KINDS:
        raise ValueError(f"alert kind {kind!r} is not one of {KINDS}")
    if severity not in SEVERITIES:
        raise ValueError(f"alert severity {severity!r} is not one of {SEVERITIES}")
    now = datetime.now(timezone.utc)
    alert_id = alert_id or f"{kind}:{where}:{run_id or now.isoformat()}"
    con.execute(ALERTS_DDL)
    if not con.execute("SELECT count(*) FROM ops.alerts WHERE alert_id = ?", [alert_id]).fetchall()[0][0]:
        con.execute("INSERT INTO ops.alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [alert_id, now, kind, severity, what, where, run_id, json.dumps(details or {}, default=str)])
    return alert_id


def list_alerts(lake: Lake, limit: int = 50, kind: str | tuple[str, ...] | None = None) -> list[dict]:
    """The newest alerts first, optionally of one kind or of any of several."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind or ())
    with lake.connection(read_only=True) as con:
        if not lake.table_exists(con, "ops", "alerts"):
            return []
        where, params = (f"WHERE kind IN ({', '.join('?' * len(kinds))})", list(kinds)) if kinds else ("", [])
        rows = con.execute(f'SELECT raised_at, kind, severity, what, "where", dagster_run_id, details, alert_id '
                           f"FROM ops.alerts {where} ORDER BY raised_at DESC LIMIT ?", params + [limit]).fetchall()
    cols = ("raised_at", "kind", "severity", "what", "where", "dagster_run_id", "details", "alert_id")
    return [dict(zip(cols, r)) for r in rows]
