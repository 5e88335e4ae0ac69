"""The inference log against a real DuckLake, without Ray: buffer -> journal -> lake; no loss, no doubles."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.adapters.lake.connection import Lake
from hit_platform.serving.inference_log import (TABLE, InferenceLogger, JournalCommitter, Served, insert,
                                                journal_files, read_journal, to_arrow, write_journal)
from hit_platform.adapters.lake.tables import requests_in_log
from hit_platform.settings import Settings


def served(n: int = 1, status: int = 200, at: datetime | None = None) -> Served:
    rid = str(uuid.uuid4())
    at = at or datetime.now(timezone.utc)
    if status != 200:
        return Served(rid, at, "/predict", status, 0.4, None, 5, request_body='{"energy": 2}',
                      response_body='{"detail": [{"loc": ["body", "energy"]}]}')
    rng = np.random.default_rng(abs(hash(rid)) % 2**32)
    return Served(rid, at, "/predict" if n == 1 else "/predict/batch", 200, 1.5, "3", 5,
                  rng.random((n, len(FEATURE_COLUMNS))), rng.random((n, len(COUNTRIES))),
                  [(f"song{i}", None, "A, B", "2024-01-01") for i in range(n)])


def logged(lake: Lake) -> dict[str, int]:
    return requests_in_log(lake)


def wait_for(predicate, timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return True
        threading.Event().wait(0.05)
    return predicate()


def test_rows_hold_features_probabilities_and_refusals(lake: Lake, tmp_path: Path):
    ok, batch, refused = served(1), served(3), served(status=422)
    journal = tmp_path / "journal"
    log = InferenceLogger(journal, flush_seconds=60)
    for e in (ok, batch, refused):
        log.log(e)
    assert log.pending_rows == 5
    log.flush()
    assert log.pending_rows == 0 and log.journaled_rows == 5 and len(journal_files(journal)) == 1
    assert logged(lake) == {}  # journaled, not yet committed
    committer = JournalCommitter(lake, journal)
    assert committer.commit() == 5 and journal_files(journal) == []
    assert logged(lake) == {ok.request_id: 1, batch.request_id: 3, refused.request_id: 1}
    with lake.connection(read_only=True) as con:
        cols = [r[0] for r in con.execute(f"DESCRIBE {TABLE}").fetchall()]
        assert set(FEATURE_COLUMNS) <= set(cols) and "probabilities" in cols
        row = con.execute(f"""SELECT item, n_songs, model_version, spotify_id, energy, probabilities."IS",
                                     probabilities.ZA FROM {TABLE} WHERE request_id = ? ORDER BY item""",
                          [batch.request_id]).fetchall()
        assert [r[0] for r in row] == [0, 1, 2] and row[0][1] == 3 and row[0][2] == "3" and row[2][3] == "song2"
        j, z = FEATURE_COLUMNS.index("energy"), COUNTRIES.index("ZA")
        assert row[1][4] == pytest.approx(batch.X[1, j]) and row[1][6] == pytest.approx(batch.P[1, z])
        bad = con.execute(f"SELECT item, status, energy, probabilities, request_body FROM {TABLE} "
                          "WHERE request_id = ?", [refused.request_id]).fetchall()[0]
        assert bad[:4] == (None, 422, None, None) and "energy" in bad[4]
    log.close()
    committer.close()


def test_journal_round_trips_the_rows_exactly(tmp_path: Path):
    entries = [served(1), served(4), served(status=400)]
    table = to_arrow(entries)
    path = write_journal(tmp_path / "journal", table)
    assert path.suffix == ".arrow" and not list((tmp_path / "journal").glob(".*.tmp"))
    assert read_journal(path).equals(table)


def test_lake_unavailable_keeps_the_journal_then_commits_without_loss_or_doubles(tmp_path: Path):
    """A catalog nobody can open: journal files stay; once it can be opened, they land exactly once."""
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the catalog's folder should be")
    settings = Settings(warehouse=tmp_path / "warehouse",
                        lake={"catalog": str(blocker / "catalog.sqlite"), "retries": 2, "retry_base_s": 0.01})
    lake, journal = Lake(settings), tmp_path / "journal"
    log, committer = InferenceLogger(journal, flush_seconds=60), JournalCommitter(lake, journal)
    down = [served(n) for n in (1, 2, 1, 5)]
    for e in down[:2]:
        log.log(e)
    log.flush()
    for e in down[2:]:
        log.log(e)
    log.flush()
    assert committer.commit() == 0
    assert len(journal_files(journal)) == 2 and committer.last_error and committer.committed_rows == 0

    blocker.unlink()  # the lake comes back
    up = served(2)
    log.log(up)
    log.flush()
    assert committer.commit() == 11 and journal_files(journal) == [] and committer.last_error is None
    expected = {e.request_id: e.rows for e in [*down, up]}
    assert logged(lake) == expected
    assert committer.commits == 1  # three files, one lake transaction

    # a journal file committed again (e.g. a crash between commit and delete) adds nothing
    write_journal(journal, to_arrow(down))
    assert committer.commit() == 0
    assert logged(lake) == expected and journal_files(journal) == []
    committer.close()


def test_a_full_disk_keeps_the_rows_in_memory(lake: Lake, tmp_path: Path):
    blocked = tmp_path / "journal"
    blocked.write_text("a file where the journal folder should be")
    log = InferenceLogger(blocked, flush_seconds=60)
    first = served(3)
    log.log(first)
    log.flush()
    assert log.pending_rows == 3 and log.last_error and log.journaled_rows == 0
    blocked.unlink()
    second = served(1)
    log.log(second)
    log.flush()
    assert log.pending_rows == 0 and log.last_error is None
    JournalCommitter(lake, blocked).close()
    assert logged(lake) == {first.request_id: 3, second.request_id: 1}


def test_journal_left_by_an_earlier_run_is_committed_at_start_up(lake: Lake, tmp_path: Path):
    journal = tmp_path / "journal"
    left = [served(1), served(4)]
    write_journal(journal, to_arrow(left))
    assert read_journal(journal_files(journal)[0]).num_rows == 5
    committer = JournalCommitter(lake, journal).start(every_seconds=60)  # the first round commits
    try:
        assert wait_for(lambda: not journal_files(journal))
        assert logged(lake) == {e.request_id: e.rows for e in left}
    finally:
        committer.close()


def test_background_threads_flush_by_size_and_time_and_close_flushes_the_rest(lake: Lake, tmp_path: Path):
    journal = tmp_path / "journal"
    committer = JournalCommitter(lake, journal).start(every_seconds=0.2)
    log = InferenceLogger(journal, flush_seconds=30, batch_rows=10).start()
    first = [served(4) for _ in range(3)]  # 12 rows >= batch_rows: wakes the flusher long before 30 s
    for e in first:
        log.log(e)
    assert wait_for(lambda: len(logged(lake)) == 3)
    assert logged(lake) == {e.request_id: 4 for e in first}
    last = served(1)
    log.log(last)
    log.close()  # flushes what the timer has not written yet
    committer.close()  # and commits it
    assert logged(lake)[last.request_id] == 1 and log.pending_rows == 0 and journal_files(journal) == []


def test_a_replica_can_commit_its_own_journal(lake: Lake, tmp_path: Path):
    """The cluster mode: the flusher also commits (no serving process on the replica's machine)."""
    journal = tmp_path / "journal"
    log = InferenceLogger(journal, flush_seconds=0.2, committer=JournalCommitter(lake, journal)).start()
    entries = [served(2) for _ in range(3)]
    for e in entries:
        log.log(e)
    assert wait_for(lambda: len(logged(lake)) == 3)
    assert log.stats()["committed_rows"] == 6
    log.close()
    assert logged(lake) == {e.request_id: 2 for e in entries}


def test_concurrent_committers_never_double_a_request(tmp_path: Path):
    """Two committers on one journal at once (two replicas on a cluster node): each request lands once."""
    settings = Settings(warehouse=tmp_path / "warehouse")
    journal = tmp_path / "journal"
    entries = [served(2) for _ in range(40)]
    for i in range(0, 40, 4):
        write_journal(journal, to_arrow(entries[i:i + 4]))
    committers = [JournalCommitter(Lake(settings), journal, max_rows=8) for _ in range(2)]
    threads = [threading.Thread(target=c.commit) for c in committers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in committers:
        c.close()
    assert journal_files(journal) == []
    assert logged(Lake(settings)) == {e.request_id: 2 for e in entries}
    assert sum(c.committed_rows for c in committers) == 80


def test_insert_is_idempotent_by_request_id(lake: Lake):
    older = served(2, at=datetime.now(timezone.utc) - timedelta(days=3))
    table = to_arrow([older, served(1)])
    assert lake.write(lambda con: insert(con, table)) == 3
    assert lake.write(lambda con: insert(con, table)) == 0
    assert sum(logged(lake).values()) == 3


def test_unreadable_journal_file_is_set_aside(lake: Lake, tmp_path: Path):
    journal = tmp_path / "journal"
    journal.mkdir()
    (journal / "00000000000000000001-1-deadbeef.arrow").write_text("not arrow\n")
    other = pa.table({"x": [1, 2]})  # an Arrow stream, but not the log's columns
    with pa.OSFile(str(journal / "00000000000000000002-1-0badf00d.arrow"), "wb") as f:
        with pa.ipc.new_stream(f, other.schema) as w:
            w.write_table(other)
    good = served(1)
    write_journal(journal, to_arrow([good]))
    committer = JournalCommitter(lake, journal)
    assert committer.commit() == 1
    assert logged(lake) == {good.request_id: 1}
    assert journal_files(journal) == [] and len(list((journal / "unreadable").iterdir())) == 2
    committer.close()
