"""What the lake holds after ingest: rows per table, quarantined rows by reason, files by status; the files
landed, whose hashes are ingest's data version."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import table_exists


def lake_summary(lake: Lake, con: duckdb.DuckDBPyConnection) -> dict:
    """Rows per lake table, quarantined rows by reason, files by status, and the snapshot id."""
    tables = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = ? "
        "ORDER BY 1, 2", [lake.alias]).fetchall()
    rows = {f"{s}.{t}": con.execute(f"SELECT count(*) FROM {s}.{t}").fetchall()[0][0] for s, t in tables}
    summary = {"snapshot_id": lake.snapshot_id(con), "rows": rows}
    if lake.table_exists(con, "quarantine", "chart_rows"):
        summary["quarantined_by_reason"] = dict(con.execute(
            "SELECT reason, count(*) FROM quarantine.chart_rows GROUP BY 1 ORDER BY 1").fetchall())
        summary["files_by_status"] = dict(con.execute(
            "SELECT status, count(*) FROM raw.landed_files GROUP BY 1 ORDER BY 1").fetchall())
        summary["rejected_files"] = [{"file": f, "reason": r} for f, r in con.execute(
            "SELECT file_name, reason FROM raw.landed_files WHERE status = 'rejected' ORDER BY 1").fetchall()]
    return summary


@dataclass(frozen=True)
class Landed:
    """What ingest has stored: the content hash of every landed file, and the rows of raw and quarantine."""

    file_sha256s: list[str]  # sorted
    raw_rows: int
    quarantined_rows: int


def landed(con: duckdb.DuckDBPyConnection) -> Landed:
    if not table_exists(con, "raw", "landed_files"):
        return Landed([], 0, 0)
    shas = [sha for (sha,) in con.execute("SELECT file_sha256 FROM raw.landed_files ORDER BY 1").fetchall()]
    if not shas:
        return Landed([], 0, 0)
    raw_rows, quarantined_rows = con.execute(
        "SELECT (SELECT count(*) FROM raw.chart_rows), (SELECT count(*) FROM quarantine.chart_rows)").fetchall()[0]
    return Landed(shas, raw_rows, quarantined_rows)
