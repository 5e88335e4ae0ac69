"""One landing file, one lake transaction (retried whole on conflicts): the good rows to
`raw.chart_rows`, the bad ones to `quarantine.chart_rows`, the file's record to `raw.landed_files`,
and a bump of `raw.ingest_sequence` so that two writers ingesting at once always conflict."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import FILES_DDL, QUARANTINE_DDL, RAW_DDL, SEQUENCE_DDL
from hit_platform.domain.columns import RELEASE_DATE_PRECISION
from hit_platform.steps.ingest.landing import LANDING_SUFFIXES, file_sha256, landing_format
from hit_platform.steps.ingest.quarantine import find_duplicates, quarantine_select, quarantined_by_reason
from hit_platform.steps.ingest.rules import CLASSIFIED, RAW_VALUES, sql_literal
from hit_platform.steps.ingest.staging import FileRejected, delete_leftover_copies, stage_file

log = logging.getLogger(__name__)

RAW_COLUMNS = (*RAW_VALUES, "source_file", "file_sha256", "source_row", "ingested_at")


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


def ensure_tables(lake: Lake, con: duckdb.DuckDBPyConnection) -> None:
    if lake.table_exists(con, "raw", "ingest_sequence"):
        ensure_release_date_precision(lake, con)
        return

    def create(c: duckdb.DuckDBPyConnection) -> None:
        for ddl in (RAW_DDL, QUARANTINE_DDL, FILES_DDL, SEQUENCE_DDL):
            c.execute(ddl)
        if c.execute("SELECT count(*) FROM raw.ingest_sequence").fetchall()[0][0] == 0:
            c.execute("INSERT INTO raw.ingest_sequence VALUES (0)")

    lake.write(create, con=con, what="create ingest tables")


def ensure_release_date_precision(lake: Lake, con: duckdb.DuckDBPyConnection) -> None:
    """A lake ingested before release dates kept their precision gains the column; its dates were
    all whole days then (a year or a month alone was quarantined), so they are marked 'day'."""
    columns = {r[0] for r in con.execute("DESCRIBE raw.chart_rows").fetchall()}
    if RELEASE_DATE_PRECISION in columns:
        return

    def add(c: duckdb.DuckDBPyConnection) -> None:
        c.execute(f"ALTER TABLE raw.chart_rows ADD COLUMN IF NOT EXISTS {RELEASE_DATE_PRECISION} VARCHAR")
        c.execute(f"UPDATE raw.chart_rows SET {RELEASE_DATE_PRECISION} = 'day' "
                  f"WHERE album_release_date IS NOT NULL AND {RELEASE_DATE_PRECISION} IS NULL")

    lake.write(add, con=con, what=f"add raw.chart_rows.{RELEASE_DATE_PRECISION}")


def already_landed(con: duckdb.DuckDBPyConnection, sha: str) -> str | None:
    rows = con.execute("SELECT file_name FROM raw.landed_files WHERE file_sha256 = ? LIMIT 1", [sha]).fetchall()
    return rows[0][0] if rows else None


def ingest_file(lake: Lake, path: Path, con: duckdb.DuckDBPyConnection | None = None) -> FileResult:
    """Ingest one landing file in one lake transaction (retried whole on conflicts)."""
    fmt = landing_format(path)
    if fmt is None:
        raise ValueError(f"{path}: not a landing file (expected one of {', '.join(LANDING_SUFFIXES)})")
    # hashlib lets other threads run: the file is hashed while DuckDB opens the lake, not after it
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-sha256")
    hashing = hasher.submit(file_sha256, path)
    hasher.shutdown(wait=False)  # its one thread ends with the hash
    own = con is None
    con = con or lake.connect()
    try:
        ensure_tables(lake, con)
        sha = hashing.result()
        prior = already_landed(con, sha)
        if prior is not None:
            return FileResult(path.name, sha, "already_landed", reason=f"same content as {prior}")
        try:
            rows_read = stage_file(con, path, fmt)
            rejection = None
        except FileRejected as exc:
            rows_read, rejection = 0, str(exc)

        def transaction(c: duckdb.DuckDBPyConnection) -> FileResult:
            c.execute("UPDATE raw.ingest_sequence SET n = n + 1")  # serialises ingest commits
            prior = already_landed(c, sha)
            if prior is not None:
                return FileResult(path.name, sha, "already_landed", reason=f"same content as {prior}")
            meta = [path.name, sha, path.stat().st_size, fmt]
            if rejection is not None:
                c.execute("INSERT INTO raw.landed_files VALUES (?, ?, ?, ?, 'rejected', 0, 0, 0, ?, now())",
                          meta + [rejection])
                return FileResult(path.name, sha, "rejected", reason=rejection)
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
                      meta + [rows_read, rows_read - quarantined, quarantined])
            return FileResult(path.name, sha, "ingested", rows_read, rows_read - quarantined, quarantined,
                              quarantined_by_reason=by_reason)

        result = lake.write(transaction, con=con, what=f"ingest {path.name}")
        result.snapshot_id = lake.snapshot_id(con)
        log.info("%s: %s (%d read, %d raw, %d quarantined)%s", path.name, result.status, result.rows_read,
                 result.rows_raw, result.rows_quarantined, f": {result.reason}" if result.reason else "")
        return result
    finally:
        con.execute("DROP VIEW IF EXISTS temp.file_rows")
        for t in (CLASSIFIED, "duplicates"):
            con.execute(f"DROP TABLE IF EXISTS temp.{t}")
        if own:
            con.close()


def ingest_landing(lake: Lake, files: list[Path]) -> list[FileResult]:
    """Ingest the given landing files in order, one transaction each; first delete what an ingest
    killed in the middle left behind: data files of a commit (no snapshot references them) and
    decompressed copies of .gz files."""
    with lake.connection() as con:
        lake.delete_orphaned_files(con)
        delete_leftover_copies(lake, con)
        return [ingest_file(lake, path, con=con) for path in files]

