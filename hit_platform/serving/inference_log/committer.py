"""The committer: journal segments into ops.inference_log, many segments per lake transaction, each
request exactly once; the segments of replicas that died are recovered. What it committed it hands to
whoever asked (`on_committed`): the shadow scorer (serving.shadow) is such a consumer."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from hit_platform.adapters.alerts import insert_alert
from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.maintenance import inline_small_commits
from hit_platform.adapters.lake.tables import INFERENCE_LOG, SHADOW_LOG, ensure_inference_log, ensure_shadow_log
from hit_platform.serving.background import lower_this_threads_priority
from hit_platform.serving.inference_log.journal import NEW, OPEN, SEALED, Segment, journal_files, read_segment
from hit_platform.serving.inference_log.schema import Served, to_arrow, to_shadow_arrow

log = logging.getLogger(__name__)

UNREADABLE = "unreadable"  # where a damaged journal file is kept, with an alert, for someone to look at
UNBORN_AFTER_S = 60.0  # a writer names its segment within microseconds; one older than this was left by a dead writer
_PID = re.compile(r"^\d+-(\d+)-")
# A request retried on a second replica after the first died carries the same request id; the two
# attempts are seconds apart. The anti-join looks this far back from the oldest row committed.
RETRY_WINDOW = "INTERVAL 1 HOUR"


def insert(con: duckdb.DuckDBPyConnection, table: pa.Table, target: str = INFERENCE_LOG) -> int:
    """Add the rows of request ids not yet in the log (`target`: the inference log or the shadow log);
    returns rows inserted. Call inside `Lake.write`.

    A request id already there keeps its rows, except when only a recovered copy is there (rows with
    `recovered_from`, from the journal of a replica that died) and this table holds the answer that was
    sent (the ingress's retry on another replica): that answer replaces it, in whichever round it comes."""
    if table.num_rows == 0:
        return 0
    (ensure_shadow_log if target == SHADOW_LOG else ensure_inference_log)(con)
    since = min(table.column("received_at").to_pylist())
    con.register("_incoming_log", table)
    try:
        # A request's rows always travel together, so "id already there" means "all of it is there".
        # The time bound lets DuckLake skip the files of older requests; the log is scanned once.
        window = f"received_at >= ?::TIMESTAMPTZ - {RETRY_WINDOW}"
        there = dict(con.execute(f"""
            SELECT l.request_id, bool_or(l.recovered_from IS NULL) FROM {target} l
            WHERE l.{window} AND l.request_id IN (SELECT request_id FROM _incoming_log) GROUP BY l.request_id
        """, [since]).fetchall())  # request id -> whether the answer sent is there (else only a recovered copy)
        replaced: set[str] = set()
        if not all(there.values()):
            ids = table.column("request_id")
            sent_now = set(pc.filter(ids, pc.is_null(table.column("recovered_from"))).to_pylist())
            replaced = {rid for rid, sent in there.items() if not sent and rid in sent_now}
        if replaced:  # the recovered copy goes, the answer sent comes in below
            con.execute(f"DELETE FROM {target} WHERE {window} AND recovered_from IS NOT NULL "
                        "AND request_id IN (SELECT unnest(?::VARCHAR[]))", [since, sorted(replaced)])
        con.register("_logged_ids", pa.table({"request_id": pa.array([r for r in there if r not in replaced],
                                                                     pa.string())}))
        inserted = con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM _incoming_log "
                               "WHERE request_id NOT IN (SELECT request_id FROM _logged_ids)").fetchall()
        return int(inserted[0][0]) if inserted else 0
    finally:
        con.unregister("_incoming_log")
        con.unregister("_logged_ids")


@dataclass
class _Taken:
    """A journal file this committer holds the lock of, and what it read from it."""

    path: Path
    file: object
    segment: Segment
    recovered: bool = False  # an open segment whose writer died
    damaged: str | None = None  # why part of the file cannot be read

    @property
    def rows(self) -> int:
        return self.segment.rows


def once_per_request(taken: list[_Taken]) -> tuple[pa.Table, pa.Table]:
    """The rows to commit to the inference log and to the shadow log, one attempt per request id: a
    request a dying replica journaled and another replica answered again keeps the answer that was sent
    (not the recovered one). Shadow-log rows come from records a replica journaled as scores
    (`Served.shadow_of`); the shadow scorer writes its own (serving.shadow)."""
    chosen: dict[tuple[str, bool], Served] = {}
    for t in taken:
        for e in t.segment.entries:
            if t.recovered:
                e.recovered_from = t.path.name
            key = (e.request_id, e.shadow_of is not None)
            kept = chosen.get(key)
            if kept is None or (kept.recovered_from is not None and e.recovered_from is None):
                chosen[key] = e
    answered = [e for (_, shadow), e in chosen.items() if not shadow]
    shadowed = [e for (_, shadow), e in chosen.items() if shadow]
    return to_arrow(answered), to_shadow_arrow(shadowed)


class JournalCommitter:
    """Moves journal segments into `ops.inference_log`: many segments, one lake transaction, then they go.

    Runs in the serving process (one writer for all local replicas: no commit conflicts, one lake
    snapshot per round instead of one per replica), or in each replica on a cluster. Several
    committers on one folder are safe: each takes an exclusive `flock` on a file before reading it,
    and deletes it only after the commit; a crash in between is undone by `insert`'s anti-join.
    An `.open` segment it can lock belongs to a writer that died: its whole records are committed,
    marked `recovered_from`, with an `ops.alerts` row. While the lake refuses (down, locked,
    misconfigured) the files stay, and every later round, also after a restart, tries again.

    After each commit lands, `on_committed(rows)` gets the inference-log rows it carried (an Arrow
    table in the log's schema, possibly holding requests an earlier commit already had); it runs in
    the committer's thread, so it should only take them.
    """

    def __init__(self, lake: Lake, journal_dir: Path, *, max_rows: int = 200_000,
                 on_committed: Callable[[pa.Table], None] | None = None):
        self.lake = lake
        self.journal_dir = Path(journal_dir)
        self.max_rows = max_rows
        self.on_committed = on_committed
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self.committed_rows = 0
        self.recovered_rows = 0
        self.commits = 0
        self.last_error: str | None = None

    def start(self, every_seconds: float) -> JournalCommitter:
        if self._thread is None:
            def run():
                lower_this_threads_priority()
                try:  # a cold connection (extensions, catalog) costs more than a commit: open it now,
                    # and create the table, so that the log is there to query before its first rows
                    self.lake.write(ensure_inference_log, con=self._connection(), what="inference log table")
                    # a round of a few requests is inlined in the catalog, not a Parquet file of its own
                    # (the maintenance job flushes them): a day of rounds is not thousands of small files
                    inline_small_commits(self.lake, self._connection(), self.lake.settings.maintenance.log_inline_rows)
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

    def drain(self, timeout: float = 30.0) -> bool:
        """Commit until no segment is left, waiting up to `timeout` s for writers still holding open
        segments to finish (replicas shutting down seal theirs; dying ones release their lock).
        Returns whether the journal is empty."""
        deadline = time.monotonic() + timeout
        while True:
            self.commit()
            left = journal_files(self.journal_dir, (SEALED, OPEN))
            if not left or time.monotonic() >= deadline or (self.last_error and not any(
                    p.suffix == OPEN for p in left)):
                return not left
            time.sleep(0.2)

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = self.lake.connect()
            self._con.execute("SET threads = 1")  # the cores belong to serving, not to logging
        return self._con

    def _write(self, taken: list[_Taken]) -> int:
        table, shadow = once_per_request(taken)
        con = self._connection()

        def write(c: duckdb.DuckDBPyConnection) -> int:
            n = insert(c, table)
            insert(c, shadow, SHADOW_LOG)  # scores a replica journaled commit with the answers they shadow
            for t in taken:  # the alerts commit with the rows they speak of
                if t.recovered and (t.segment.entries or t.segment.torn_tail):
                    _alert_recovered(c, t)
                if t.damaged:
                    _alert_damaged(c, t, self.journal_dir / UNREADABLE)
            return n

        try:
            n = self.lake.write(write, con=con, what="inference log commit")
        except BaseException:
            con, self._con = self._con, None  # a broken connection must not poison the next attempt
            try:
                con.close()
            except Exception:
                pass
            raise
        if self.on_committed is not None and table.num_rows:
            try:
                self.on_committed(table)
            except Exception:  # a consumer's trouble never holds back the log
                log.exception("inference log: the consumer of committed rows failed")
        return n

    def commit(self) -> int:
        """Commit every sealed segment and every dead writer's open segment; returns rows inserted."""
        inserted = 0
        with self._lock:
            self._sweep_unborn()
            while True:
                taken: list[_Taken] = []
                rows = 0
                try:
                    for path in journal_files(self.journal_dir, (SEALED, OPEN)):
                        if rows >= self.max_rows:
                            break
                        t = self._take(path)
                        if t is not None:
                            taken.append(t)
                            rows += t.rows
                    if not taken:
                        return inserted
                    try:
                        inserted += self._write(taken)
                    except Exception as exc:
                        self.last_error = f"{type(exc).__name__}: {exc}"
                        log.warning("inference log: lake commit failed (%s); %d journal files kept for later",
                                    self.last_error, len(taken))
                        return inserted
                    for t in taken:
                        self._retire(t)
                    self.committed_rows += rows
                    self.recovered_rows += sum(t.rows for t in taken if t.recovered)
                    self.commits += 1
                    self.last_error = None
                finally:
                    for t in taken:
                        t.file.close()  # releases the flock
                if rows < self.max_rows:
                    return inserted

    def _sweep_unborn(self) -> None:
        """Remove segments a writer died creating (killed between creating and naming one): always empty,
        since records are written only once a segment has its `.open` name."""
        try:
            unborn = list(self.journal_dir.glob(".*" + NEW))
        except OSError:
            return
        now = time.time()
        for path in unborn:
            try:
                if now - path.stat().st_mtime < UNBORN_AFTER_S:
                    continue  # likely a live writer between creating and locking it
                with open(path, "rb") as f:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # its creator is gone
                    path.unlink(missing_ok=True)
            except (BlockingIOError, FileNotFoundError):
                continue

    def _retire(self, t: _Taken) -> None:
        """After its commit: a file goes, a damaged one is kept aside for someone to look at."""
        if t.damaged:
            bad = self.journal_dir / UNREADABLE
            bad.mkdir(exist_ok=True)
            os.replace(t.path, bad / t.path.name)
            log.error("inference log: %s: %s; kept in %s", t.path.name, t.damaged, bad)
        else:
            t.path.unlink(missing_ok=True)

    def _take(self, path: Path) -> _Taken | None:
        """A journal file locked and read, or None if it is gone, or locked (a live writer, another committer)."""
        try:
            f = open(path, "rb")
        except FileNotFoundError:  # sealed or committed meanwhile
            return None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its writer is alive, or another committer holds it right now
            f.close()
            return None
        try:
            if not path.exists() or os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                f.close()  # sealed, committed or removed while we looked
                return None
            t = _Taken(path, f, read_segment(path), recovered=path.suffix == OPEN)
            if t.segment.unreadable:
                ranges = ", ".join(f"{a}-{b}" for a, b in t.segment.unreadable[:5])
                more = f" and {len(t.segment.unreadable) - 5} more ranges" if len(t.segment.unreadable) > 5 else ""
                t.damaged = (f"bytes {ranges}{more} of {t.segment.size} cannot be read as journal records; "
                             f"the {len(t.segment.entries)} whole records around them were committed")
            return t
        except FileNotFoundError:
            f.close()
            return None

    def stats(self) -> dict:
        return {"committed_rows": self.committed_rows, "recovered_rows": self.recovered_rows, "commits": self.commits,
                "journal_files": len(journal_files(self.journal_dir)), "last_error": self.last_error}


def _alert_recovered(con: duckdb.DuckDBPyConnection, t: _Taken) -> None:
    seg = t.segment
    m = _PID.match(t.path.name)
    tail = (" An unfinished last record was dropped: its replica died while writing it, before answering."
            if seg.torn_tail else "")
    insert_alert(con, kind="inference_log", severity="warning", where=f"journal/{t.path.name}",
                 alert_id=f"inference_log:recovered:{t.path.name}",
                 what=f"recovered {len(seg.entries)} answered requests ({seg.rows} rows) from the journal of a "
                      f"replica that died (pid {m.group(1) if m else '?'}); they are in {INFERENCE_LOG} with "
                      f"recovered_from = '{t.path.name}'.{tail}",
                 details={"segment": t.path.name, "requests": len(seg.entries), "rows": seg.rows,
                          "bytes": seg.size, "dropped_tail_bytes": seg.tail_bytes})


def _alert_damaged(con: duckdb.DuckDBPyConnection, t: _Taken, kept_in: Path) -> None:
    insert_alert(con, kind="inference_log", severity="error", where=f"journal/{t.path.name}",
                 alert_id=f"inference_log:unreadable:{t.path.name}",
                 what=f"journal file {t.path.name}: {t.damaged}. The file is kept in {kept_in} for inspection.",
                 details={"file": t.path.name, "kept_in": str(kept_in), "bytes": t.segment.size,
                          "unreadable": t.segment.unreadable, "records_committed": len(t.segment.entries)})
