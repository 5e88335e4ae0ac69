"""What the lake holds after ingest: rows per table, quarantined rows by reason, files by status; the files
landed, whose hashes are ingest's data version."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import duckdb

from hit_platform.adapters.lake.tables import table_exists
from hit_platform.steps.ingest.transaction import FileResult


def lake_summary(con: duckdb.DuckDBPyConnection) -> dict:
    """Rows per lake table, quarantined rows by reason, files by status, and the snapshot id (of the lake
    the connection is on)."""
    tables = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = current_database() "
        "ORDER BY 1, 2").fetchall()
    rows = {f"{s}.{t}": con.execute(f"SELECT count(*) FROM {s}.{t}").fetchall()[0][0] for s, t in tables}
    (catalog,), = con.execute("SELECT current_database()").fetchall()
    snapshot = con.execute(f'SELECT max(snapshot_id) FROM "{catalog}".snapshots()').fetchall()[0][0]
    summary = {"snapshot_id": int(snapshot), "rows": rows}
    if table_exists(con, "quarantine", "chart_rows"):
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

    @property
    def data_version(self) -> str:
        """The set of files landed: unchanged when nothing new arrived, so nothing downstream turns stale."""
        return hashlib.sha256("".join(self.file_sha256s).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class IngestReport:
    """What one ingest run did, as the metadata of the two tables it writes."""

    added_raw: int
    added_quarantined: int
    common: dict  # for both tables: files by status
    raw: dict  # rows of raw.chart_rows now, and the files table (markdown)
    quarantined: dict  # rows of quarantine.chart_rows now, and rows added by reason
    files_markdown: str


def ingest_report(results: list[FileResult], stored: Landed) -> IngestReport:
    by_status = {s: sum(r.status == s for r in results) for s in ("ingested", "rejected", "already_landed")}
    by_reason: dict[str, int] = {}
    for r in results:
        for k, v in r.quarantined_by_reason.items():
            by_reason[k] = by_reason.get(k, 0) + v
    files = ("| file | status | read | raw | quarantined | reason |\n|---|---|---|---|---|---|\n"
             + "\n".join(f"| {markdown_text(r.file_name)} | {r.status} | {r.rows_read} | {r.rows_raw} "
                         f"| {r.rows_quarantined} | {markdown_text(r.reason or '')} |" for r in results))
    return IngestReport(
        added_raw=sum(r.rows_raw for r in results), added_quarantined=sum(r.rows_quarantined for r in results),
        common={"files_ingested": by_status["ingested"], "files_rejected": by_status["rejected"],
                "files_already_landed": by_status["already_landed"]},
        raw={"dagster/row_count": stored.raw_rows},
        quarantined={"dagster/row_count": stored.quarantined_rows,
                     **{f"added_{k}": v for k, v in sorted(by_reason.items())}},
        files_markdown=files)


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+!|~-])")


def markdown_text(text: str) -> str:
    """Text from outside (a file name, a rejection's reason) as one literal markdown table cell: on one line,
    every markdown character escaped, so the Dagster UI shows it and renders nothing of it."""
    return _MARKDOWN.sub(r"\\\1", " ".join(text.split()))


def landed(con: duckdb.DuckDBPyConnection) -> Landed:
    if not table_exists(con, "raw", "landed_files"):
        return Landed([], 0, 0)
    shas = [sha for (sha,) in con.execute("SELECT file_sha256 FROM raw.landed_files ORDER BY 1").fetchall()]
    if not shas:
        return Landed([], 0, 0)
    raw_rows, quarantined_rows = con.execute(
        "SELECT (SELECT count(*) FROM raw.chart_rows), (SELECT count(*) FROM quarantine.chart_rows)").fetchall()[0]
    return Landed(shas, raw_rows, quarantined_rows)
