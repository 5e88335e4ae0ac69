"""The shadow scorer: the challenger scores the answers the inference log has committed, into ops.shadow_log.

Every answered request is journaled with its feature rows before its answer
leaves, and the committer moves those records into `ops.inference_log` (see
inference_log). `ShadowScorer` consumes what is committed: after each commit
lands, the committer hands it the rows it carried (`take`, the committer's
`on_committed`), and the scorer's own thread, every `every_seconds`, scores
all it was handed with one model call per challenger and writes the scores to
`ops.shadow_log` in one lake transaction. So:

- a replica does nothing more per request with a challenger than without:
  the client's latency and bytes cannot change;
- the committer neither loads nor calls the challenger: its transaction
  holds the answers only;
- scores go to the lake in fewer, larger transactions than the answers, one
  every `SCORE_EVERY_COMMITS` commit rounds: an insert into the log costs
  50-100 ms of CPU before its first row (the anti-join that keeps requests
  once, the new file and its statistics), then ~6 us a row; and rows are
  scored column-wise, from the committed rows themselves. The CPU a
  challenger adds to the serving process, 7,500 answers a commit (measured
  in process, `bench/bench_lifecycle.py`): 23 ms per 1,000 answers when the
  committer scored inside each commit (3 runs), 30 ms with this scorer
  writing every commit, 14-21 ms writing every third (5 runs). The price: a
  score lands up to three commit rounds (15 s by default) after its answer's
  commit;
- answers committed but not scored when the process died are scored by the
  next one: when a scorer gets its first challenger, it looks once for answers
  received since a little before that challenger's newest score that have
  none (`unscored`);
- a score's `latency_ms` is the delay from the answer to its score.

A request answered by the challenger's own version (after a promotion) is not
scored, and no request is scored twice (`once_per_item` keeps one score of an answer a round
found twice, and `insert` skips request ids already in
ops.shadow_log, scores a replica journaled itself among them).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import INFERENCE_LOG, PROBABILITIES_TYPE, SHADOW_ARROW_SCHEMA, SHADOW_LOG
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.domain.probabilities import answered
from hit_platform.serving.background import lower_this_threads_priority
from hit_platform.serving.inference_log.committer import RETRY_WINDOW, insert

if TYPE_CHECKING:
    from hit_platform.serving.predictor import Predictor

log = logging.getLogger(__name__)

SCORE_EVERY_COMMITS = 3  # the scorer writes once per this many commit rounds (see the module's docstring)
# The inference-log columns a score is made of.
SOURCE_COLUMNS = ("request_id", "item", "received_at", "endpoint", "status", "model_version", "spotify_id",
                  "recovered_from", *FEATURE_COLUMNS)


def shadow_rows(rows: pa.Table, challenger: Predictor, now: datetime | None = None) -> pa.Table:
    """The ops.shadow_log rows of the challenger's scores of `rows` (inference-log rows: at least
    SOURCE_COLUMNS): every answered song another version answered, in one model call."""
    if rows.num_rows == 0:
        return SHADOW_ARROW_SCHEMA.empty_table()
    keep = pc.and_(pc.and_(pc.equal(rows["status"], 200), pc.is_valid(rows["item"])),
                   pc.not_equal(rows["model_version"], challenger.version))
    chosen = rows.select(list(SOURCE_COLUMNS)).filter(keep).combine_chunks()
    n = chosen.num_rows
    if n == 0:
        return SHADOW_ARROW_SCHEMA.empty_table()
    X = np.column_stack([chosen[c].to_numpy() for c in FEATURE_COLUMNS]).astype(np.float64, copy=False)
    P = answered(challenger.predict(X))
    utc = pa.timestamp("us", tz="UTC")  # rows read back from the lake carry DuckDB's "Etc/UTC"
    received = pc.cast(chosen["received_at"], utc)
    delay_us = pc.cast(pc.subtract(pa.scalar(now or datetime.now(timezone.utc), utc), received), pa.int64())
    cols = {
        "request_id": chosen["request_id"], "item": chosen["item"], "received_at": received,
        "endpoint": chosen["endpoint"], "champion_model_version": chosen["model_version"],
        "shadow_model_version": pa.array([challenger.version] * n, pa.string()),
        "latency_ms": pc.divide(pc.cast(delay_us, pa.float64()), 1000.0),
        "spotify_id": chosen["spotify_id"],
        "probabilities": pa.chunked_array([pa.StructArray.from_arrays(
            [pa.array(P[:, j], pa.float64()) for j in range(P.shape[1])], fields=list(PROBABILITIES_TYPE))]),
        "recovered_from": chosen["recovered_from"],
    }
    return pa.table([cols[f.name] for f in SHADOW_ARROW_SCHEMA],
                    names=SHADOW_ARROW_SCHEMA.names).cast(SHADOW_ARROW_SCHEMA)


def unscored(con: duckdb.DuckDBPyConnection, lake: Lake, challenger_version: str,
             slack: str = "INTERVAL 5 MINUTE") -> pa.Table:
    """Answers with no score received since `slack` before `challenger_version`'s newest score (and
    within the retry window): what a scorer that died between a commit and its own write left behind.
    The slack covers the answers committed out of order around that score (a dead replica's segment,
    a slow commit); anything older was scored while that scorer lived, or came while nothing shadowed."""
    if not (lake.table_exists(con, "ops", "shadow_log") and lake.table_exists(con, "ops", "inference_log")):
        return pa.table({})
    columns = ", ".join(f'l."{c}"' for c in SOURCE_COLUMNS)
    return con.execute(f"""
        WITH newest AS (SELECT max(received_at) AS t FROM {SHADOW_LOG} WHERE shadow_model_version = $version),
             bound AS (SELECT t, greatest(t - {slack}, now() - {RETRY_WINDOW}) AS since FROM newest)
        SELECT {columns}
        FROM {INFERENCE_LOG} l, bound
        WHERE bound.t IS NOT NULL AND l.received_at >= bound.since AND l.status = 200 AND l.item IS NOT NULL
          AND l.model_version <> $version
          AND NOT EXISTS (SELECT 1 FROM {SHADOW_LOG} s WHERE s.request_id = l.request_id
                                                       AND s.received_at >= bound.since)
        ORDER BY l.received_at, l.request_id, l.item
    """, {"version": challenger_version}).to_arrow_table()


class ShadowScorer:
    """Scores committed answers with the challenger, into ops.shadow_log (see the module's docstring).

    `set_challenger` names who scores what is taken from then on (None: nothing is scored); rows
    already taken are scored by the challenger that held when they were taken. The first challenger
    also looks back for what an earlier scorer left unscored (`unscored`; with `catch_up`, which only
    one scorer per lake may have: several would score the same rows). A challenger that
    cannot score loses its rows and says why (`last_error`); a lake that refuses keeps them for the
    next round. At most `max_rows` wait; past that the oldest are dropped and counted.
    """

    def __init__(self, lake: Lake, *, every_seconds: float = 15.0, max_rows: int = 200_000, catch_up: bool = True):
        self.lake = lake
        self.every_seconds = every_seconds
        self.max_rows = max_rows
        self.catch_up = catch_up
        self.challenger: Predictor | None = None
        self._had_challenger = False
        self._taken: list[tuple[Predictor, pa.Table]] = []
        self._taken_rows = 0
        self._unwritten: list[pa.Table] = []  # scores the lake refused, written first next round
        self._look_back: Predictor | None = None  # the first challenger's `unscored`, to do next round
        self._lock = threading.Lock()  # `_taken` and `_look_back`
        self._round = threading.Lock()  # one round at a time (the thread, `close`, a test)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self.shadowed_rows = 0
        self.dropped_rows = 0
        self.last_error: str | None = None

    def set_challenger(self, challenger: Predictor | None) -> None:
        with self._lock:
            if challenger is not None and not self._had_challenger:
                self._had_challenger = True
                self._look_back = challenger if self.catch_up else None
            self.challenger = challenger

    def take(self, rows: pa.Table) -> None:
        """Inference-log rows just committed (the committer's `on_committed`): held for the next round."""
        challenger = self.challenger
        if challenger is None or rows.num_rows == 0:
            return
        with self._lock:
            self._taken.append((challenger, rows))
            self._taken_rows += rows.num_rows
            while self._taken_rows > self.max_rows and len(self._taken) > 1:
                _, dropped = self._taken.pop(0)
                self._taken_rows -= dropped.num_rows
                self.dropped_rows += dropped.num_rows
                log.warning("shadow scorer: %d rows wait (more than %d); the oldest %d are not scored",
                            self._taken_rows + dropped.num_rows, self.max_rows, dropped.num_rows)

    def start(self) -> ShadowScorer:
        if self._thread is None:
            def run():
                lower_this_threads_priority()
                while not self._stop.wait(self.every_seconds):
                    try:
                        self.score()
                    except Exception:  # the next round retries
                        log.exception("shadow scoring failed")
            self._thread = threading.Thread(target=run, name="shadow-scorer", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 60.0) -> None:
        """Stop the thread, score and write what was taken, close the lake connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        try:
            self.score()
        finally:
            if self._con is not None:
                self._con.close()
                self._con = None

    def score(self) -> int:
        """One round: what a new challenger left unscored before, what was taken since; returns rows written."""
        with self._round:
            with self._lock:
                taken, self._taken, self._taken_rows = self._taken, [], 0
                look_back, self._look_back = self._look_back, None
            tables, self._unwritten, failed = list(self._unwritten), [], False
            if look_back is not None:
                try:
                    tables.append(shadow_rows(unscored(self._connection(), self.lake, look_back.version), look_back))
                except Exception as exc:
                    failed = self._failed(f"looking back for answers version {look_back.version} has not scored", exc)
                    with self._lock:  # try again next round, unless another challenger came meanwhile
                        if self._look_back is None and self.challenger is look_back:
                            self._look_back = look_back
            for challenger, rows in _by_challenger(taken):
                try:
                    tables.append(shadow_rows(rows, challenger))
                except Exception as exc:  # it would fail again: these rows stay unscored, and we say why
                    failed = self._failed(f"version {challenger.version} cannot score {rows.num_rows} rows", exc)
            tables = [t for t in tables if t.num_rows]
            written = 0
            if tables:
                try:
                    written = self._write(once_per_item(pa.concat_tables(tables)))
                except Exception as exc:
                    while sum(t.num_rows for t in tables) > self.max_rows and len(tables) > 1:
                        self.dropped_rows += tables.pop(0).num_rows  # a lake down for long: keep the newest
                    self._unwritten = tables
                    failed = self._failed("writing ops.shadow_log", exc)
            self.shadowed_rows += written
            if not failed:
                self.last_error = None
            return written

    def _write(self, table: pa.Table) -> int:
        try:
            return self.lake.write(lambda c: insert(c, table, SHADOW_LOG), con=self._connection(),
                                   what="shadow log commit")
        except BaseException:
            con, self._con = self._con, None  # a broken connection must not poison the next attempt
            try:
                if con is not None:
                    con.close()
            except Exception:
                pass
            raise

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = self.lake.connect()
            self._con.execute("SET threads = 1")  # the cores belong to serving
        return self._con

    def _failed(self, what: str, exc: Exception) -> bool:
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        log.error("shadow scorer: %s", self.last_error)
        return True

    def stats(self) -> dict:
        return {"challenger_version": self.challenger.version if self.challenger is not None else None,
                "shadowed_rows": self.shadowed_rows, "waiting_rows": self._taken_rows,
                "dropped_rows": self.dropped_rows, "last_error": self.last_error}


def once_per_item(scores: pa.Table) -> pa.Table:
    """`scores` with the first row of each (request_id, item) only: a round's look-back (`unscored`, read
    from the lake) can find an answer the committer has since handed over too, and the insert's check
    for request ids already in ops.shadow_log cannot see duplicates within the rows it inserts."""
    numbered = scores.append_column("_row", pa.array(np.arange(scores.num_rows, dtype=np.int64)))
    first = numbered.group_by(["request_id", "item"], use_threads=False).aggregate([("_row", "min")])
    if first.num_rows == scores.num_rows:
        return scores
    return scores.take(pc.sort_indices(first["_row_min"]))


def _by_challenger(taken: list[tuple[Predictor, pa.Table]]) -> list[tuple[Predictor, pa.Table]]:
    """The taken rows, one table per challenger, in the order the challengers came."""
    groups: dict[int, tuple[Predictor, list[pa.Table]]] = {}
    for challenger, rows in taken:
        groups.setdefault(id(challenger), (challenger, []))[1].append(rows)
    return [(c, pa.concat_tables(tables)) for c, tables in groups.values()]
