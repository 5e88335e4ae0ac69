"""The inference log against a real DuckLake, without Ray: written before the answer -> journal -> lake;
no loss, no doubles, also when the writer is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.alerts import list_alerts
from hit_platform.serving.inference_log import (TABLE, InferenceLogger, JournalCommitter, SegmentWriter, Served,
                                                encode, insert, journal_files, read_segment, to_arrow)
from hit_platform.serving.inference_log.journal import OPEN
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


def sealed(journal: Path, entries: list[Served]) -> Path:
    """A sealed segment holding these requests, as a replica leaves it."""
    writer = SegmentWriter(journal)
    for e in entries:
        writer.append(encode(e))
    return writer.seal()


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
    # on disk before the answer: nothing waits in memory
    assert log.pending_rows == 0 and log.journaled_rows == 5
    assert [p.suffix for p in journal.iterdir()] == [OPEN]
    committer = JournalCommitter(lake, journal)
    assert committer.commit() == 0  # an open segment of a live writer is not taken
    log.flush()  # sealed
    assert len(journal_files(journal)) == 1
    assert logged(lake) == {}  # journaled, not yet committed
    assert committer.commit() == 5 and journal_files(journal) == []
    assert logged(lake) == {ok.request_id: 1, batch.request_id: 3, refused.request_id: 1}
    with lake.connection(read_only=True) as con:
        cols = [r[0] for r in con.execute(f"DESCRIBE {TABLE}").fetchall()]
        assert set(FEATURE_COLUMNS) <= set(cols) and "probabilities" in cols
        row = con.execute(f"""SELECT item, n_songs, model_version, spotify_id, energy, probabilities."IS",
                                     probabilities.ZA, recovered_from FROM {TABLE} WHERE request_id = ?
                              ORDER BY item""", [batch.request_id]).fetchall()
        assert [r[0] for r in row] == [0, 1, 2] and row[0][1] == 3 and row[0][2] == "3" and row[2][3] == "song2"
        j, z = FEATURE_COLUMNS.index("energy"), COUNTRIES.index("ZA")
        assert row[1][4] == batch.X[1, j] and row[1][6] == batch.P[1, z] and row[0][7] is None
        bad = con.execute(f"SELECT item, status, energy, probabilities, request_body FROM {TABLE} "
                          "WHERE request_id = ?", [refused.request_id]).fetchall()[0]
        assert bad[:4] == (None, 422, None, None) and "energy" in bad[4]
    log.close()
    committer.close()


def test_records_round_trip_exactly(tmp_path: Path):
    entries = [served(1), served(4), served(status=400)]
    path = sealed(tmp_path / "journal", entries)
    assert path.suffix == ".seg" and not list((tmp_path / "journal").glob(".*"))
    seg = read_segment(path)
    assert not seg.torn_tail and seg.corrupt_at is None and seg.good_bytes == seg.size
    assert to_arrow(seg.entries).equals(to_arrow(entries))


def test_a_torn_last_record_is_dropped_and_damage_inside_is_kept_with_an_alert(lake: Lake, tmp_path: Path):
    """(More ways a file can be damaged, and the open segment's torn tail: test_journal_damage.py.)"""
    journal = tmp_path / "journal"
    entries = [served(2) for _ in range(4)]
    writer = SegmentWriter(journal)
    for e in entries:
        writer.append(encode(e))
    os.close(writer.fd)  # its writer gone, the segment left open
    data = writer.path.read_bytes()
    writer.path.write_bytes(data[:-10])  # the last record cut short, as by a kill in the middle of a write
    seg = read_segment(writer.path)
    assert seg.torn_tail and seg.corrupt_at is None and len(seg.entries) == 3
    writer.path.unlink()

    path = sealed(journal, entries)
    first = len(encode(entries[0]))
    damaged = bytearray(data)
    damaged[first + 40] ^= 0xFF  # a flipped byte in the second record, with two whole records after it
    path.write_bytes(bytes(damaged))
    seg = read_segment(path)
    assert seg.corrupt_at == first and seg.unreadable == [(first, first + len(encode(entries[1])))]
    assert len(seg.entries) == 3  # reading resumed after the damage
    committer = JournalCommitter(lake, journal)
    assert committer.commit() == 6  # the whole records before and after the damage
    assert journal_files(journal) == [] and (journal / "unreadable" / path.name).read_bytes() == bytes(damaged)
    alert = [a for a in list_alerts(lake, kind="inference_log") if a["severity"] == "error"]
    assert len(alert) == 1 and path.name in alert[0]["what"] and f"bytes {first}-" in alert[0]["what"]
    committer.close()


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

    # a segment committed again (e.g. a crash between commit and delete) adds nothing
    sealed(journal, down)
    assert committer.commit() == 0
    assert logged(lake) == expected and journal_files(journal) == []
    committer.close()


def test_a_journal_that_cannot_be_written_buffers_then_refuses_then_recovers(lake: Lake, tmp_path: Path):
    blocked = tmp_path / "journal"
    blocked.write_text("a file where the journal folder should be")
    told = []
    log = InferenceLogger(blocked, flush_seconds=60, buffer_rows=5, on_trouble=lambda *a: told.append(a))
    first = served(3)
    log.log(first)
    log.flush()
    assert log.pending_rows == 3 and log.last_error and log.journaled_rows == 0
    assert log.state == "buffering" and log.accepting
    second = served(2)
    log.log(second)  # 5 rows held: the bound
    assert log.state == "refusing" and not log.accepting
    assert "HIT_SERVE_LOG_BUFFER_ROWS=5" in log.refuse() and log.stats()["refused_requests"] == 1
    blocked.unlink()
    log.flush()
    assert log.pending_rows == 0 and log.last_error is None and log.state == "ok" and log.accepting
    assert wait_for(lambda: [a[0] for a in told] == ["buffering", "refusing", "ok"])
    assert "FileExistsError" in told[0][1]  # the reason, as the disk gave it
    JournalCommitter(lake, blocked).close()
    assert logged(lake) == {first.request_id: 3, second.request_id: 2}


WRITER_UNDER_A_FILE_SIZE_LIMIT = """
import json, resource, signal, sys
from hit_platform.serving.inference_log import InferenceLogger
from hit_platform_tests.serving.test_inference_log import served
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
log = InferenceLogger(sys.argv[1], flush_seconds=60, buffer_rows=10_000)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))  # the disk fills up after a few records
ids = []
for _ in range(40):
    e = served(1)
    log.log(e)
    ids.append(e.request_id)
held = log.pending_rows
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
log.close()
print(json.dumps({"ids": ids, "held": held, "error": log.stats()["last_error"]}))
"""


def test_a_write_that_fails_halfway_leaves_only_whole_records(lake: Lake, tmp_path: Path):
    """A real short write (the file size limit hit mid-record): the segment is cut back to whole
    records, the rest waits in memory and is written once there is room; each request once."""
    journal = tmp_path / "journal"
    out = subprocess.run([sys.executable, "-c", WRITER_UNDER_A_FILE_SIZE_LIMIT, str(journal)], capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["held"] > 0 and result["error"] is None
    for path in journal_files(journal):
        seg = read_segment(path)
        assert not seg.torn_tail and seg.corrupt_at is None
    JournalCommitter(lake, journal).close()
    assert logged(lake) == {i: 1 for i in result["ids"]}


KILLED_WRITER = """
import sys
from hit_platform.serving.inference_log import InferenceLogger
from hit_platform_tests.serving.test_inference_log import served
log = InferenceLogger(sys.argv[1], flush_seconds=0.05, batch_rows=500).start()
while True:
    e = served(1 + len(sys.argv[1]) % 3)
    log.log(e)
    print(e.request_id, flush=True)  # "answered": only after the record is written
"""


def test_a_writer_killed_at_any_moment_loses_no_answered_request(lake: Lake, tmp_path: Path):
    """kill -9 of a process writing and sealing segments as fast as it can, three times: every request
    it answered is committed once; those of its open segment are marked recovered, with an alert."""
    journal = tmp_path / "journal"
    answered: list[str] = []
    for delay in (0.3, 0.55, 0.8):
        child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(journal)], stdout=subprocess.PIPE,
                                 text=True, cwd=Path(__file__).parents[2])
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(child.stdout))  # never let the pipe block it
        reader.start()
        assert wait_for(lambda: len(lines) > 0, timeout=60)
        threading.Event().wait(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        reader.join()
        answered += [line.strip() for line in lines if line.endswith("\n")]
    assert len(answered) > 100 and list(journal.glob("*" + OPEN))  # killed with a segment open
    committer = JournalCommitter(lake, journal)
    committer.commit()
    got = logged(lake)
    assert set(answered) <= set(got)  # every answered request; perhaps one more written, not yet printed
    assert len(got) - len(answered) <= 3 and not list(journal.iterdir())
    with lake.connection(read_only=True) as con:
        recovered = con.execute(f"SELECT count(DISTINCT request_id), count(DISTINCT recovered_from) FROM {TABLE} "
                                "WHERE recovered_from IS NOT NULL").fetchall()[0]
    # (a kill a few microseconds after a seal leaves an empty segment: nothing to recover there)
    assert recovered[0] > 0 and recovered[1] >= 2 and committer.recovered_rows > 0
    alerts = [a for a in list_alerts(lake, kind="inference_log") if "replica that died" in a["what"]]
    assert len(alerts) >= recovered[1]
    committer.close()


def test_a_request_retried_on_a_second_replica_is_logged_once(lake: Lake, tmp_path: Path):
    """Replica A journaled a request and died before answering; the ingress sent it to B under the same
    id. Whether the two land in one commit or in two, the log keeps it once: B's answer, the one sent."""
    journal = tmp_path / "journal"
    a = served(2)
    b = Served(a.request_id, a.received_at + timedelta(seconds=2), a.endpoint, 200, 3.0, a.model_version, a.top_k,
               a.X, a.P, a.extras)
    dead = SegmentWriter(journal)
    dead.append(encode(a))
    os.close(dead.fd)  # the writer is gone, its segment left open
    sealed(journal, [b])
    committer = JournalCommitter(lake, journal)
    assert committer.commit() == 2
    with lake.connection(read_only=True) as con:
        rows = con.execute(f"SELECT latency_ms, recovered_from FROM {TABLE}").fetchall()
    assert rows == [(3.0, None), (3.0, None)]
    # across rounds, the recovered attempt committed first: the answer sent a round later replaces it
    c = served(3)
    d = Served(c.request_id, c.received_at + timedelta(seconds=5), c.endpoint, 200, 9.0, c.model_version, c.top_k,
               c.X, c.P, c.extras)
    dead = SegmentWriter(journal)
    dead.append(encode(c))
    os.close(dead.fd)
    assert committer.commit() == 3
    sealed(journal, [d])
    committer.commit()
    # and the answer sent committed first: a recovered attempt a round later (a restarted committer) adds nothing
    e = served(1)
    f = Served(e.request_id, e.received_at + timedelta(seconds=1), e.endpoint, 200, 7.0, e.model_version, e.top_k,
               e.X, e.P, e.extras)
    sealed(journal, [f])
    assert committer.commit() == 1
    committer.close()
    dead = SegmentWriter(journal)
    dead.append(encode(e))
    os.close(dead.fd)
    JournalCommitter(lake, journal).close()
    with lake.connection(read_only=True) as con:
        kept = con.execute(f"SELECT request_id, latency_ms, recovered_from FROM {TABLE} WHERE request_id IN (?, ?)",
                           [c.request_id, e.request_id]).fetchall()
    assert sorted(kept) == sorted([(c.request_id, 9.0, None)] * 3 + [(e.request_id, 7.0, None)])
    assert not list(journal.iterdir())


def test_journal_left_by_an_earlier_run_is_committed_at_start_up(lake: Lake, tmp_path: Path):
    journal = tmp_path / "journal"
    left = [served(1), served(4)]
    assert read_segment(sealed(journal, left)).rows == 5
    committer = JournalCommitter(lake, journal).start(every_seconds=60)  # the first round commits
    try:
        assert wait_for(lambda: not journal_files(journal))
        assert logged(lake) == {e.request_id: e.rows for e in left}
    finally:
        committer.close()


def test_segments_are_sealed_by_size_and_time_and_close_seals_the_rest(lake: Lake, tmp_path: Path):
    journal = tmp_path / "journal"
    committer = JournalCommitter(lake, journal).start(every_seconds=0.2)
    log = InferenceLogger(journal, flush_seconds=30, batch_rows=10).start()
    first = [served(4) for _ in range(3)]  # 12 rows >= batch_rows: wakes the roller long before 30 s
    for e in first:
        log.log(e)
    assert wait_for(lambda: len(logged(lake)) == 3)
    assert logged(lake) == {e.request_id: 4 for e in first}
    last = served(1)
    log.log(last)
    log.close()  # seals what the timer has not sealed yet
    committer.close()  # and commits it
    assert logged(lake)[last.request_id] == 1 and not list(journal.iterdir())


def test_a_replica_can_commit_its_own_journal(lake: Lake, tmp_path: Path):
    """The cluster mode: the roller also commits (no serving process on the replica's machine)."""
    journal = tmp_path / "journal"
    committer = JournalCommitter(lake, journal)
    log = InferenceLogger(journal, flush_seconds=0.2, on_roll=committer.commit).start()
    entries = [served(2) for _ in range(3)]
    for e in entries:
        log.log(e)
    assert wait_for(lambda: len(logged(lake)) == 3)
    assert committer.stats()["committed_rows"] == 6
    log.close()
    committer.close()
    assert logged(lake) == {e.request_id: 2 for e in entries}


def test_concurrent_committers_never_double_a_request(tmp_path: Path):
    """Two committers on one journal at once (two replicas on a cluster node): each request lands once."""
    settings = Settings(warehouse=tmp_path / "warehouse")
    journal = tmp_path / "journal"
    entries = [served(2) for _ in range(40)]
    for i in range(0, 40, 4):
        sealed(journal, entries[i:i + 4])
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


def test_a_log_made_by_an_earlier_version_gains_its_new_column(lake: Lake):
    from hit_platform.adapters.lake.tables import inference_log_ddl

    old_ddl = inference_log_ddl().replace(',\n    "recovered_from" VARCHAR', "")
    assert "recovered_from" not in old_ddl
    lake.write(lambda con: con.execute(old_ddl))
    e = served(2)
    assert lake.write(lambda con: insert(con, to_arrow([e]))) == 2
    assert logged(lake) == {e.request_id: 2}


COMMITTER = """
import sys
from hit_platform.adapters.lake.connection import Lake
from hit_platform.serving.inference_log import JournalCommitter
from hit_platform.settings import Settings
JournalCommitter(Lake(Settings(warehouse=sys.argv[1])), sys.argv[2]).commit()
"""


def test_a_committer_killed_in_the_middle_of_a_lake_commit_loses_and_doubles_nothing(tmp_path: Path):
    """kill -9 of a committer while it writes the lake's data files (the commit not yet in the catalog),
    twice: the segments stay; the next committer commits every request once; the files the killed
    commits left are deleted by the orphan sweep."""
    settings = Settings(warehouse=tmp_path / "warehouse")
    lake, journal = Lake(settings), tmp_path / "journal"
    entries = [served(40) for _ in range(1000)]
    for i in range(0, len(entries), 50):
        sealed(journal, entries[i:i + 50])
    data = Path(settings.data_path) / "ops"

    def files() -> set[Path]:
        return set(data.rglob("*.parquet")) if data.exists() else set()

    for _ in range(2):
        before = files()
        child = subprocess.Popen([sys.executable, "-c", COMMITTER, str(settings.warehouse), str(journal)],
                                 cwd=Path(__file__).parents[2])
        while child.poll() is None and not files() - before:
            threading.Event().wait(0.002)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL  # killed before it finished: mid-commit
        assert len(journal_files(journal)) == 20 and logged(lake) == {}
    assert files()  # what the killed commits wrote
    committer = JournalCommitter(lake, journal)
    assert committer.commit() == 40_000 and journal_files(journal) == []
    assert logged(lake) == {e.request_id: 40 for e in entries}
    with lake.connection() as con:
        lake.delete_orphaned_files(con, older_than_s=0)
        referenced = {Path(r[0]).name for r in con.execute(
            f"SELECT path FROM __ducklake_metadata_{lake.alias}.ducklake_data_file").fetchall()}
    assert {p.name for p in files()} <= referenced
    committer.close()
