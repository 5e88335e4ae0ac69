"""One landing file's transaction, as SQL on the connection it is given: the good rows to
`raw.chart_rows`, the bad ones to `quarantine.chart_rows`, the file's record to `raw.landed_files`,
and a bump of `raw.ingest_sequence` so that two writers ingesting at once always conflict. The caller
(`adapters.lake.ingest`) owns the transaction and retries it whole."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from hit_platform.adapters.lake.tables import FILES_DDL, QUARANTINE_DDL, RAW_DDL, SEQUENCE_DDL, table_exists
from hit_platform.domain.columns import RELEASE_DATE_PRECISION
from hit_platform.settings import IngestSettings
from hit_platform.steps.ingest.quarantine import find_duplicates, quarantine_select, quarantined_by_reason
from hit_platform.steps.ingest.rules import CLASSIFIED, RAW_VALUES, sql_literal
from hit_platform.steps.ingest.staging import FileRejected, stage_file

RAW_COLUMNS = (*RAW_VALUES, "source_file", "file_sha256", "source_row", "ingested_at")
_REASON_CHARS = 400  # a rejection's reason in raw.landed_files: what and where, never the file's content


@dataclass
class FileResult:
    """What happened to one landing file."""

    file_name: str
    file_sha256: str
    status: str  # ingested | rejected | already_landed
    rows_read: int = 0
    rows_raw: int = 0
    rows_quarantined: int = 0
    reason: str | None = None
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    snapshot_id: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Staged:
    """A landing file read whole into the connection's temp tables (`rows_read`), or why it cannot be."""

    path: Path
    fmt: str
    sha256: str
    rows_read: int = 0
    rejection: str | None = None


def tables_missing(con: duckdb.DuckDBPyConnection) -> bool:
    return not table_exists(con, "raw", "ingest_sequence")


def create_tables(c: duckdb.DuckDBPyConnection) -> None:
    for ddl in (RAW_DDL, QUARANTINE_DDL, FILES_DDL, SEQUENCE_DDL):
        c.execute(ddl)
    if c.execute("SELECT count(*) FROM raw.ingest_sequence").fetchall()[0][0] == 0:
        c.execute("INSERT INTO raw.ingest_sequence VALUES (0)")


def release_date_precision_missing(con: duckdb.DuckDBPyConnection) -> bool:
    return RELEASE_DATE_PRECISION not in {r[0] for r in con.execute("DESCRIBE raw.chart_rows").fetchall()}


def add_release_date_precision(c: duckdb.DuckDBPyConnection) -> None:
    """A lake ingested before release dates kept their precision gains the column; its dates were
    all whole days then (a year or a month alone was quarantined), so they are marked 'day'."""
    c.execute(f"ALTER TABLE raw.chart_rows ADD COLUMN IF NOT EXISTS {RELEASE_DATE_PRECISION} VARCHAR")
    c.execute(f"UPDATE raw.chart_rows SET {RELEASE_DATE_PRECISION} = 'day' "
              f"WHERE album_release_date IS NOT NULL AND {RELEASE_DATE_PRECISION} IS NULL")


def already_landed(con: duckdb.DuckDBPyConnection, sha: str) -> str | None:
    rows = con.execute("SELECT file_name FROM raw.landed_files WHERE file_sha256 = ? LIMIT 1", [sha]).fetchall()
    return rows[0][0] if rows else None


def stage(con: duckdb.DuckDBPyConnection, path: Path, fmt: str, sha: str,
          ingest: IngestSettings | None = None) -> Staged:
    """Read the file whole into the connection's temp tables, outside any transaction. Whatever the file or
    the machine does to it meanwhile (a bad file, a full or failing disk, too little memory) rejects it, with
    the reason: a file that would fail again is not taken again by every run. A bug still raises."""
    try:
        return Staged(path, fmt, sha, rows_read=stage_file(con, path, fmt, ingest))
    except FileRejected as exc:
        return Staged(path, fmt, sha, rejection=str(exc)[:_REASON_CHARS])
    except (OSError, MemoryError, duckdb.Error) as exc:  # its first line: what and where, no file content
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        return Staged(path, fmt, sha, rejection=f"could not be staged: {type(exc).__name__}: {first}"[:_REASON_CHARS])


def store_file(c: duckdb.DuckDBPyConnection, staged: Staged) -> FileResult:
    """The file's one transaction, run again whole on a conflict: the rows staged, or its rejection."""
    path, sha = staged.path, staged.sha256
    c.execute("UPDATE raw.ingest_sequence SET n = n + 1")  # serialises ingest commits
    prior = already_landed(c, sha)
    if prior is not None:
        return FileResult(path.name, sha, "already_landed", reason=f"same content as {prior}")
    meta = [path.name, sha, path.stat().st_size, staged.fmt]
    if staged.rejection is not None:
        c.execute("INSERT INTO raw.landed_files VALUES (?, ?, ?, ?, 'rejected', 0, 0, 0, ?, now())",
                  meta + [staged.rejection])
        return FileResult(path.name, sha, "rejected", reason=staged.rejection)
    find_duplicates(c)
    by_reason = quarantined_by_reason(c)
    quarantined = sum(by_reason.values())
    file_sql = f"{sql_literal(path.name)}, {sql_literal(sha)}"
    c.execute(f"INSERT INTO raw.chart_rows ({', '.join(RAW_COLUMNS)}) "
              f"SELECT {', '.join('c.' + n for n in RAW_VALUES)}, {file_sql}, c.source_row, now() "
              "FROM file_rows c ANTI JOIN duplicates d USING (source_row) WHERE c.rule IS NULL")
    if quarantined:  # a clean file (the usual case) skips the statement
        c.execute(f"INSERT INTO quarantine.chart_rows {quarantine_select(file_sql)}")
    c.execute("INSERT INTO raw.landed_files VALUES (?, ?, ?, ?, 'ingested', ?, ?, ?, NULL, now())",
              meta + [staged.rows_read, staged.rows_read - quarantined, quarantined])
    return FileResult(path.name, sha, "ingested", staged.rows_read, staged.rows_read - quarantined, quarantined,
                      quarantined_by_reason=by_reason)


def drop_staging(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP VIEW IF EXISTS temp.file_rows")
    for t in (CLASSIFIED, "duplicates"):
        con.execute(f"DROP TABLE IF EXISTS temp.{t}")
