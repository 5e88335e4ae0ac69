"""The inference log: every request served, written to the lake table `ops.inference_log`.

One row per song predicted (the 14 model inputs exactly as the model saw
them, the identifiers the client sent, the 72 probabilities answered) plus
one row per refused request (its body and the error answered), each with the
request id, time, endpoint, status, latency and model version. Drift
monitors compare the feature columns with `ml.features` (same names, same
DOUBLE type); an audit finds a request by its id.

Logging never blocks or fails a request, and never loses one:
1. the request path appends to an in-memory buffer (`InferenceLogger.log`);
2. the replica's flusher thread writes the buffer every `flush_seconds` to a
   new Arrow IPC file in the journal (`<warehouse>/serving/journal/`):
   milliseconds, and no lake work inside the process that answers requests;
3. a `JournalCommitter` (in the serving process; in each replica when they
   run on a cluster) commits all waiting journal files to the lake in one
   retried transaction every `commit_seconds`, then deletes them. While the
   lake refuses (down, locked, misconfigured) the files stay and are retried,
   also after a restart.
Inserts skip request ids already in the table (an anti-join), so a file
committed twice (a crash between commit and delete) is never doubled.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.adapters.lake.connection import Lake
from hit_platform.serving.schemas import SONG_EXTRAS

log = logging.getLogger(__name__)

TABLE = "ops.inference_log"
_BODY_LIMIT = 65_536  # characters of a refused request's body kept for the audit


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'  # country codes such as IS, IN, DO are SQL keywords


PROBABILITIES_TYPE = pa.struct([(c, pa.float64()) for c in COUNTRIES])
ARROW_SCHEMA = pa.schema(
    [("request_id", pa.string()), ("item", pa.int32()),
     ("received_at", pa.timestamp("us", tz="UTC")), ("endpoint", pa.string()), ("status", pa.int32()),
     ("latency_ms", pa.float64()), ("n_songs", pa.int32()), ("model_version", pa.string()),
     ("top_k", pa.int32())]
    + [(c, pa.string()) for c in SONG_EXTRAS]
    + [(c, pa.float64()) for c in FEATURE_COLUMNS]
    + [("probabilities", PROBABILITIES_TYPE), ("request_body", pa.string()), ("response_body", pa.string())])

_DUCK_TYPES = {pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.float64(): "DOUBLE",
               pa.timestamp("us", tz="UTC"): "TIMESTAMP WITH TIME ZONE"}
COLUMN_COMMENTS = {
    "request_id": "id answered to the client; one request, one id",
    "item": "position of the song in the request (0-based); NULL for a refused request",
    "received_at": "when the request arrived (UTC)",
    "endpoint": "/predict or /predict/batch",
    "status": "HTTP status answered",
    "latency_ms": "time from receipt to answer inside the replica",
    "n_songs": "songs in the request (0 when refused)",
    "model_version": "registered version of hit_model that answered (NULL if refused before a model was used)",
    "top_k": "top_k asked for",
    "probabilities": "the 72 probabilities answered, one field per country",
    "request_body": "refused requests only: the body as received (truncated)",
    "response_body": "refused requests only: the error answered",
}


def create_table_sql() -> str:
    cols = []
    for f in ARROW_SCHEMA:
        if f.name == "probabilities":
            t = "STRUCT(" + ", ".join(f"{_q(c)} DOUBLE" for c in COUNTRIES) + ")"
        else:
            t = _DUCK_TYPES[f.type]
        cols.append(f"{_q(f.name)} {t}")
    return f"CREATE TABLE IF NOT EXISTS {TABLE} (\n    " + ",\n    ".join(cols) + "\n)"


@dataclass(slots=True)
class Served:
    """One request as answered: what the request path hands to the logger (no copies, no I/O)."""

    request_id: str
    received_at: datetime
    endpoint: str
    status: int
    latency_ms: float
    model_version: str | None
    top_k: int | None = None
    X: np.ndarray | None = None  # (n, 14) features as fed to the model
    P: np.ndarray | None = None  # (n, 72) probabilities answered
    extras: list[tuple] | None = None  # per song: SONG_EXTRAS values
    request_body: str | None = None  # refused requests only
    response_body: str | None = None

    @property
    def rows(self) -> int:
        return len(self.X) if self.X is not None else 1


def to_arrow(entries: list[Served]) -> pa.Table:
    """The log rows of some served requests, as one Arrow table in ARROW_SCHEMA.

    Runs in the flusher thread of a busy replica, so it does one pass per column over the requests
    (not per row) and lets Arrow repeat request-level values onto their songs.
    """
    counts = np.array([e.rows for e in entries], dtype=np.int64)
    owner = pa.array(np.repeat(np.arange(len(entries)), counts))  # row -> index of its request
    served = np.array([e.X is not None for e in entries], dtype=bool)
    missing = np.repeat(~served, counts)
    nan_x, nan_p = np.full((1, len(FEATURE_COLUMNS)), np.nan), np.full((1, len(COUNTRIES)), np.nan)
    X = np.concatenate([e.X if e.X is not None else nan_x for e in entries]) if entries else nan_x[:0]
    P = np.concatenate([e.P if e.X is not None else nan_p for e in entries]) if entries else nan_p[:0]
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    items = pa.array(np.arange(len(owner)) - starts, pa.int32(), mask=missing)
    blank = (None,) * len(SONG_EXTRAS)
    extras = [x for e in entries for x in (e.extras or [blank] * e.rows)] if entries else []

    def per_request(get, type_) -> pa.Array:
        return pa.array([get(e) for e in entries], type_).take(owner)

    cols = {
        "request_id": per_request(lambda e: e.request_id, pa.string()),
        "item": items,
        "received_at": per_request(lambda e: e.received_at, pa.timestamp("us", tz="UTC")),
        "endpoint": per_request(lambda e: e.endpoint, pa.string()),
        "status": per_request(lambda e: e.status, pa.int32()),
        "latency_ms": per_request(lambda e: float(e.latency_ms), pa.float64()),
        "n_songs": per_request(lambda e: len(e.X) if e.X is not None else 0, pa.int32()),
        "model_version": per_request(lambda e: e.model_version, pa.string()),
        "top_k": per_request(lambda e: e.top_k, pa.int32()),
    }
    for j, c in enumerate(SONG_EXTRAS):
        cols[c] = pa.array([x[j] for x in extras], pa.string())
    for j, c in enumerate(FEATURE_COLUMNS):
        cols[c] = pa.array(X[:, j], pa.float64(), mask=missing)
    cols["probabilities"] = pa.StructArray.from_arrays(
        [pa.array(P[:, j], pa.float64()) for j in range(len(COUNTRIES))], fields=list(PROBABILITIES_TYPE),
        mask=pa.array(missing))
    cols["request_body"] = per_request(lambda e: e.request_body, pa.string())
    cols["response_body"] = per_request(lambda e: e.response_body, pa.string())
    return pa.table([cols[f.name] for f in ARROW_SCHEMA], schema=ARROW_SCHEMA)


def truncate_body(body: bytes | str | None) -> str | None:
    if body is None:
        return None
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    return text if len(text) <= _BODY_LIMIT else text[:_BODY_LIMIT] + f"...[{len(text) - _BODY_LIMIT} more chars]"


def insert(con: duckdb.DuckDBPyConnection, table: pa.Table) -> int:
    """Add the rows of request ids not yet in the log; returns rows inserted. Call inside `Lake.write`."""
    if table.num_rows == 0:
        return 0
    con.execute(create_table_sql())
    since = min(table.column("received_at").to_pylist())
    con.register("_incoming_log", table)
    try:
        # A request's rows always travel together, so "id already there" means "all of it is there".
        # The time bound lets DuckLake skip the files of older requests.
        inserted = con.execute(f"""
            INSERT INTO {TABLE} BY NAME
            SELECT * FROM _incoming_log i
            WHERE NOT EXISTS (SELECT 1 FROM {TABLE} l WHERE l.request_id = i.request_id AND l.received_at >= ?)
        """, [since]).fetchall()
        return int(inserted[0][0]) if inserted else 0
    finally:
        con.unregister("_incoming_log")


# -- the journal: Arrow IPC files between the replicas and the lake -----------------------------------

JOURNAL_SUFFIX = ".arrow"


def write_journal(journal_dir: Path, table: pa.Table) -> Path:
    """Write rows to a new journal file atomically (temp file, fsync, rename): a file is whole or absent."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}{JOURNAL_SUFFIX}"
    tmp = journal_dir / ("." + name + ".tmp")
    with open(tmp, "wb") as f:
        with pa.ipc.new_stream(f, ARROW_SCHEMA) as writer:
            writer.write_table(table.cast(ARROW_SCHEMA))
        f.flush()
        os.fsync(f.fileno())
    path = journal_dir / name
    os.replace(tmp, path)
    return path


def read_journal(path: Path) -> pa.Table:
    """The rows of one journal file; ValueError if it is not an inference-log Arrow stream."""
    try:
        with pa.OSFile(str(path), "rb") as f:
            table = pa.ipc.open_stream(f).read_all()
    except FileNotFoundError:
        raise
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"{path.name}: not an Arrow IPC stream ({exc})") from exc
    if not table.schema.equals(ARROW_SCHEMA):
        raise ValueError(f"{path.name}: columns {table.schema.names[:5]}... are not the inference log's")
    return table


def journal_files(journal_dir: Path) -> list[Path]:
    """Journal files, oldest first (names start with a nanosecond timestamp)."""
    return sorted(journal_dir.glob("*" + JOURNAL_SUFFIX)) if journal_dir.exists() else []


class InferenceLogger:
    """A replica's side of the log: buffers served requests, a background thread writes them to the journal.

    The request path only appends to a deque. Every `flush_seconds` (or once `batch_rows` wait) the
    flusher turns the buffer into one Arrow table and one journal file: a few milliseconds, no
    lake, no locks shared with other replicas. With `committer` set (replicas on a cluster, where
    the serving process cannot see their disk), the flusher also commits the journal itself.
    """

    def __init__(self, journal_dir: Path, *, flush_seconds: float = 1.0, batch_rows: int = 5_000,
                 committer: JournalCommitter | None = None):
        self.journal_dir = Path(journal_dir)
        self.flush_seconds = flush_seconds
        self.batch_rows = batch_rows
        self.committer = committer
        self._buffer: deque[Served] = deque()
        self._pending = 0
        self._count_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time (thread, close, tests)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.journaled_rows = 0
        self.last_error: str | None = None

    # -- request path --------------------------------------------------------------------------
    def log(self, entry: Served) -> None:
        """Queue one served request: O(1), no I/O, never raises."""
        self._buffer.append(entry)
        with self._count_lock:
            self._pending += entry.rows
            full = self._pending >= self.batch_rows
        if full:
            self._wake.set()

    @property
    def pending_rows(self) -> int:
        return self._pending

    # -- background thread ---------------------------------------------------------------------
    def start(self) -> InferenceLogger:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inference-log-flusher", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        _lower_this_threads_priority()
        while not self._stop.is_set():
            try:
                self.flush()
                if self.committer is not None:
                    self.committer.commit()
            except Exception:  # never let the flusher die: the next round retries
                log.exception("inference log flush failed")
            self._wake.wait(self.flush_seconds)
            self._wake.clear()

    def close(self, timeout: float = 60.0) -> None:
        """Stop the flusher and write what is left to the journal (and the lake, with a committer)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()
        if self.committer is not None:
            self.committer.close()

    def flush(self) -> dict:
        """Write the buffer to one journal file. If the disk refuses, the rows stay buffered for the next round."""
        with self._flush_lock:
            entries = []
            while True:
                try:
                    entries.append(self._buffer.popleft())
                except IndexError:
                    break
            if entries:
                rows = sum(e.rows for e in entries)
                try:
                    write_journal(self.journal_dir, to_arrow(entries))
                except Exception as exc:
                    self._buffer.extendleft(reversed(entries))  # keep them, in order, for the next round
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.error("inference log: cannot write the journal in %s (%s); %d rows kept in memory",
                              self.journal_dir, self.last_error, rows)
                    return self.stats()
                with self._count_lock:
                    self._pending -= rows
                self.journaled_rows += rows
                self.last_error = None
            return self.stats()

    def stats(self) -> dict:
        out = {"pending_rows": self._pending, "journaled_rows": self.journaled_rows,
               "journal_files": len(journal_files(self.journal_dir)), "last_error": self.last_error}
        if self.committer is not None:
            out["committed_rows"] = self.committer.committed_rows
            out["commit_error"] = self.committer.last_error
        return out


def _lower_this_threads_priority(niceness: int = 10) -> None:
    """Background work yields the CPU to request handling (Linux: per-thread niceness)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError, PermissionError):
        pass  # not Linux, or not allowed: only the priority is lost


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
                _lower_this_threads_priority()
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


def requests_in_log(lake: Lake, request_ids: list[str] | None = None) -> dict[str, int]:
    """{request_id: rows} of the log (optionally only those ids): for tests, audits and the benchmark."""
    try:
        con = lake.connect(read_only=True)
    except FileNotFoundError:  # no lake yet: nothing logged
        return {}
    except duckdb.InvalidInputException as exc:  # its catalog file exists, its first commit does not yet
        if "does not exist" in str(exc):
            return {}
        raise
    with con:
        if not lake.table_exists(con, "ops", "inference_log"):
            return {}
        if request_ids is None:
            rows = con.execute(f"SELECT request_id, count(*) FROM {TABLE} GROUP BY ALL").fetchall()
        else:
            rows = con.execute(f"SELECT request_id, count(*) FROM {TABLE} WHERE list_contains(?, request_id) "
                               "GROUP BY ALL", [request_ids]).fetchall()
    return dict(rows)
