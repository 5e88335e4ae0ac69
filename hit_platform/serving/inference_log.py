"""The inference log: every request served, written to the lake table `ops.inference_log`.

One row per song predicted (the 14 model inputs exactly as the model saw
them, the identifiers the client sent, the 72 probabilities answered) plus
one row per refused request (its body and the error answered), each with the
request id, time, endpoint, status, latency and model version. Drift
monitors compare the feature columns with `ml.features` (same names, same
DOUBLE type); an audit finds a request by its id.

Logging never blocks or fails a request: the request path appends to an
in-memory buffer; a background thread flushes it every `flush_seconds` (or
once `batch_rows` wait), each flush one retried `Lake.write` transaction.
When the lake refuses (down, locked for too long, misconfigured), the rows
go to a JSON-lines spool file under `<warehouse>/serving/spool/`, replayed
on every later flush and at start-up. Inserts skip request ids already in
the table (an anti-join), so a replayed or retried batch is never doubled.
"""

from __future__ import annotations

import fcntl
import json
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

from hit_platform.countries import COUNTRIES
from hit_platform.features import FEATURE_COLUMNS
from hit_platform.lake import Lake
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


# -- the spool: rows the lake refused, as JSON lines --------------------------------------------------

def write_spool(spool_dir: Path, table: pa.Table) -> Path:
    """Write rows to a new spool file atomically (temp file + rename): a file is whole or absent."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
    tmp = spool_dir / ("." + name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in table.to_pylist():
            row["received_at"] = row["received_at"].isoformat()
            f.write(json.dumps(row, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    path = spool_dir / name
    os.replace(tmp, path)
    return path


def read_spool(path: Path) -> pa.Table:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                row["received_at"] = datetime.fromisoformat(row["received_at"])
                rows.append(row)
    return pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)


def spool_files(spool_dir: Path) -> list[Path]:
    """Spool files, oldest first (names start with a nanosecond timestamp)."""
    return sorted(spool_dir.glob("*.jsonl")) if spool_dir.exists() else []


class InferenceLogger:
    """Buffers served requests and writes them to `ops.inference_log` from a background thread."""

    def __init__(self, lake: Lake, spool_dir: Path, *, flush_seconds: float = 5.0, batch_rows: int = 5_000):
        self.lake = lake
        self.spool_dir = Path(spool_dir)
        self.flush_seconds = flush_seconds
        self.batch_rows = batch_rows
        self._buffer: deque[Served] = deque()
        self._pending = 0
        self._count_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time (thread, close, tests)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self.written_rows = 0
        self.spooled_rows = 0
        self.replayed_rows = 0
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
        """Start the flusher; its first flush replays what earlier runs left in the spool."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inference-log-flusher", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.flush()
            except Exception:  # never let the flusher die: the next round retries
                log.exception("inference log flush failed")
            self._wake.wait(self.flush_seconds)
            self._wake.clear()

    def close(self, timeout: float = 60.0) -> None:
        """Stop the flusher and flush what is left (to the lake, else to the spool)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()
        if self._con is not None:
            self._con.close()
            self._con = None

    # -- flushing ------------------------------------------------------------------------------
    def _drain(self) -> list[Served]:
        entries = []
        while True:
            try:
                entries.append(self._buffer.popleft())
            except IndexError:
                break
        with self._count_lock:
            self._pending -= sum(e.rows for e in entries)
        return entries

    def _write(self, table: pa.Table) -> int:
        if self._con is None:
            self._con = self.lake.connect()
            self._con.execute("SET threads = 1")  # the replica's cores belong to serving, not to logging
        try:
            return self.lake.write(lambda con: insert(con, table), con=self._con, what="inference log flush")
        except BaseException:
            con, self._con = self._con, None  # a broken connection must not poison the next attempt
            try:
                con.close()
            except Exception:
                pass
            raise

    def flush(self) -> dict:
        """Replay the spool, then write the buffer; rows the lake refuses go to the spool."""
        with self._flush_lock:
            lake_ok = self._replay()
            entries = self._drain()
            if not entries:
                return self.stats()
            table = to_arrow(entries)
            if lake_ok:
                try:
                    self.written_rows += self._write(table)
                    self.last_error = None
                    return self.stats()
                except Exception as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("inference log: lake write failed (%s); spooling %d rows",
                                self.last_error, table.num_rows)
            path = write_spool(self.spool_dir, table)
            self.spooled_rows += table.num_rows
            log.info("inference log: %d rows spooled to %s", table.num_rows, path)
            return self.stats()

    def _replay(self) -> bool:
        """Write spool files to the lake, oldest first; False if the lake refused one."""
        for path in spool_files(self.spool_dir):
            try:
                f = open(path, "rb")
            except FileNotFoundError:  # replayed meanwhile by another replica
                continue
            with f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # another replica is replaying it right now
                    continue
                try:
                    if not path.exists() or os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                        continue  # replayed and removed while we waited
                    try:
                        table = read_spool(path)
                    except (ValueError, KeyError, pa.ArrowInvalid) as exc:
                        bad = self.spool_dir / "unreadable"
                        bad.mkdir(exist_ok=True)
                        os.replace(path, bad / path.name)
                        log.error("inference log: spool file %s is unreadable (%s); moved to %s", path, exc, bad)
                        continue
                    try:
                        self.replayed_rows += self._write(table)
                    except Exception as exc:
                        self.last_error = f"{type(exc).__name__}: {exc}"
                        log.warning("inference log: replay of %s failed (%s); kept for later", path, exc)
                        return False
                    path.unlink()  # after the commit: a crash in between is undone by the anti-join
                finally:
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return True

    def stats(self) -> dict:
        return {"pending_rows": self._pending, "written_rows": self.written_rows,
                "spooled_rows": self.spooled_rows, "replayed_rows": self.replayed_rows,
                "spool_files": len(spool_files(self.spool_dir)), "last_error": self.last_error}


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
