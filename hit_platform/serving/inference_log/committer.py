"""The committer: journal files into ops.inference_log, all waiting files in one retried transaction,
never doubling a request."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path

import duckdb
import pyarrow as pa

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import INFERENCE_LOG, inference_log_ddl
from hit_platform.serving.inference_log.buffer import lower_this_threads_priority
from hit_platform.serving.inference_log.journal import journal_files, read_journal

log = logging.getLogger(__name__)


def insert(con: duckdb.DuckDBPyConnection, table: pa.Table) -> int:
    """Add the rows of request ids not yet in the log; returns rows inserted. Call inside `Lake.write`."""
    if table.num_rows == 0:
        return 0
    con.execute(inference_log_ddl())
    since = min(table.column("received_at").to_pylist())
    con.register("_incoming_log", table)
    try:
        # A request's rows always travel together, so "id already there" means "all of it is there".
        # The time bound lets DuckLake skip the files of older requests.
        inserted = con.execute(f"""
            INSERT INTO {INFERENCE_LOG} BY NAME
            SELECT * FROM _incoming_log i
            WHERE NOT EXISTS (SELECT 1 FROM {INFERENCE_LOG} l WHERE l.request_id = i.request_id AND l.received_at >= ?)
        """, [since]).fetchall()
        return int(inserted[0][0]) if inserted else 0
    finally:
        con.unregister("_incoming_log")


class JournalCommitter:
    """Moves journal files into `ops.inference_log`: many files, one lake transaction, then the files go.

    Runs in the serving process (one writer for all local replicas: no commit conflicts, one lake
    snapshot per round instead of one per replica flush), or in each replica on a cluster. Several
    committers on one folder are safe: each takes an exclusive `flock` on a file before reading it,
    and deletes it only after the commit; a crash in between is undone by `insert`'s anti-join.
    While the lake refuses (down, locked too long, misconfigured) the files simply stay, and every
    later round, including the first one after a restart, tries again: nothing is lost.
    """

    def __init__(self, lake: Lake, journal_dir: Path, *, max_rows: int = 200_000):
        self.lake = lake
        self.journal_dir = Path(journal_dir)
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self.committed_rows = 0
        self.commits = 0
        self.last_error: str | None = None

    def start(self, every_seconds: float) -> JournalCommitter:
        if self._thread is None:
            def run():
                lower_this_threads_priority()
                try:  # a cold connection (extensions, catalog) costs more than a commit: open it now
                    self._connection()
                except Exception as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"  # the rounds below retry
                while True:
                    try:
                        self.commit()
                    except Exception:  # the next round retries
                        log.exception("inference log commit failed")
                    if self._stop.wait(every_seconds):
                        return
            self._thread = threading.Thread(target=run, name="inference-log-committer", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 120.0) -> None:
        """Stop the thread, commit what the journal holds, close the lake connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        try:
            self.commit()
        finally:
            if self._con is not None:
                self._con.close()
                self._con = None

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = self.lake.connect()
            self._con.execute("SET threads = 1")  # the cores belong to serving, not to logging
        return self._con

    def _write(self, table: pa.Table) -> int:
        con = self._connection()
        try:
            return self.lake.write(lambda c: insert(c, table), con=con, what="inference log commit")
        except BaseException:
            con, self._con = self._con, None  # a broken connection must not poison the next attempt
            try:
                con.close()
            except Exception:
                pass
            raise

    def commit(self) -> int:
        """Commit every journal file not locked by another committer; returns rows inserted."""
        inserted = 0
        with self._lock:
            while True:
                held, tables, rows = [], [], 0
                try:
                    for path in journal_files(self.journal_dir):
                        if rows >= self.max_rows:
                            break
                        got = self._take(path)
                        if got is not None:
                            held.append((path, got[0]))
                            tables.append(got[1])
                            rows += got[1].num_rows
                    if not held:
                        return inserted
                    try:
                        inserted += self._write(pa.concat_tables(tables))
                    except Exception as exc:
                        self.last_error = f"{type(exc).__name__}: {exc}"
                        log.warning("inference log: lake commit failed (%s); %d journal files kept for later",
                                    self.last_error, len(held))
                        return inserted
                    for path, _ in held:
                        path.unlink(missing_ok=True)
                    self.committed_rows += rows
                    self.commits += 1
                    self.last_error = None
                finally:
                    for _, f in held:
                        f.close()  # releases the flock
                if rows < self.max_rows:
                    return inserted

    def _take(self, path: Path):
        """(locked open file, rows) of one journal file, or None if it is gone, locked, or unreadable."""
        try:
            f = open(path, "rb")
        except FileNotFoundError:  # committed meanwhile by another committer
            return None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another committer holds it right now
            f.close()
            return None
        try:
            if not path.exists() or os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                f.close()  # committed and removed while we waited
                return None
            return f, read_journal(path)
        except FileNotFoundError:
            f.close()
            return None
        except ValueError as exc:
            bad = self.journal_dir / "unreadable"
            bad.mkdir(exist_ok=True)
            os.replace(path, bad / path.name)
            f.close()
            log.error("inference log: journal file %s is unreadable (%s); moved to %s", path, exc, bad)
            return None

    def stats(self) -> dict:
        return {"committed_rows": self.committed_rows, "commits": self.commits,
                "journal_files": len(journal_files(self.journal_dir)), "last_error": self.last_error}
