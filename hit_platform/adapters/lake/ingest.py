"""Ingest's transactions on the lake: one landing file, one lake transaction, retried whole on conflicts
(`Lake.write`); the SQL of each part is in `steps.ingest`. Before a run, what an ingest killed in the
middle left behind is deleted: data files of a commit no snapshot references, and decompressed copies
of .gz files."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb

from hit_platform.adapters.alerts import raise_alert
from hit_platform.adapters.lake.connection import Lake
from hit_platform.steps.ingest.landing import LANDING_SUFFIXES, file_sha256, landing_format
from hit_platform.steps.ingest.staging import delete_leftover_copies
from hit_platform.steps.ingest.transaction import (FileResult, add_release_date_precision, already_landed,
                                                   create_tables, drop_staging, release_date_precision_missing,
                                                   stage, store_file, tables_missing)

log = logging.getLogger(__name__)


def ensure_tables(lake: Lake, con: duckdb.DuckDBPyConnection) -> None:
    if tables_missing(con):
        lake.write(create_tables, con=con, what="create ingest tables")
    elif release_date_precision_missing(con):
        lake.write(add_release_date_precision, con=con, what="add raw.chart_rows.album_release_date_precision")


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
        staged = stage(con, path, fmt, sha, lake.settings.ingest)
        result = lake.write(lambda c: store_file(c, staged), con=con, what=f"ingest {path.name}")
        result.snapshot_id = lake.snapshot_id(con)
        log.info("%s: %s (%d read, %d raw, %d quarantined)%s", path.name, result.status, result.rows_read,
                 result.rows_raw, result.rows_quarantined, f": {result.reason}" if result.reason else "")
        return result
    finally:
        drop_staging(con)
        if own:
            con.close()


def ingest_landing(lake: Lake, files: list[Path]) -> list[FileResult]:
    """Ingest the given landing files in order, one transaction each, after deleting what an ingest
    killed in the middle left behind."""
    with lake.connection() as con:
        lake.delete_orphaned_files(con)
        delete_leftover_copies(con, lake.settings.lake.orphan_grace_s)
        return [ingest_file(lake, path, con=con) for path in files]


def alert_on(lake: Lake, results: list[FileResult], run_id: str | None) -> None:
    """An alert for every rejected file (an error) and every file with quarantined rows (a warning), each
    recorded once however often it is reported."""
    for r in results:
        if r.status == "rejected":
            raise_alert(lake, kind="ingest", severity="error", where=f"landing/{r.file_name}",
                        what=f"file rejected, nothing stored: {r.reason}", run_id=run_id,
                        alert_id=f"rejected:{r.file_sha256}", details={"file_sha256": r.file_sha256})
        elif r.rows_quarantined:
            raise_alert(lake, kind="ingest", severity="warning", where=f"landing/{r.file_name}",
                        what=f"{r.rows_quarantined} of {r.rows_read} rows quarantined "
                             f"({', '.join(f'{k} {v}' for k, v in sorted(r.quarantined_by_reason.items()))})",
                        run_id=run_id, alert_id=f"quarantined:{r.file_sha256}",
                        details=dict(r.quarantined_by_reason))
