"""The inference logger against a real DuckLake, without Ray: batching, spooling, replay, no loss, no doubles."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from hit_platform.countries import COUNTRIES
from hit_platform.features import FEATURE_COLUMNS
from hit_platform.lake import Lake
from hit_platform.serving.inference_log import (TABLE, InferenceLogger, Served, insert, read_spool, requests_in_log,
                                                spool_files, to_arrow, write_spool)
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


def test_rows_hold_features_probabilities_and_refusals(lake: Lake, tmp_path: Path):
    ok, batch, refused = served(1), served(3), served(status=422)
    log = InferenceLogger(lake, tmp_path / "spool", flush_seconds=60)
    for e in (ok, batch, refused):
        log.log(e)
    assert log.pending_rows == 5
    log.flush()
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


def test_lake_unavailable_spools_then_replays_without_loss_or_doubles(tmp_path: Path):
    """A catalog the logger cannot open: rows go to the spool; once it can, they land exactly once."""
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the catalog's folder should be")
    settings = Settings(warehouse=tmp_path / "warehouse", lake_catalog=str(blocker / "catalog.sqlite"),
                        lake_retries=2, lake_retry_base_s=0.01)
    lake, spool = Lake(settings), tmp_path / "spool"
    log = InferenceLogger(lake, spool, flush_seconds=60)
    down = [served(n) for n in (1, 2, 1, 5)]
    for e in down[:2]:
        log.log(e)
    log.flush()
    for e in down[2:]:
        log.log(e)
    log.flush()
    assert len(spool_files(spool)) == 2 and log.spooled_rows == 9 and log.last_error

    blocker.unlink()  # the lake comes back
    up = served(2)
    log.log(up)
    log.flush()
    assert spool_files(spool) == []
    expected = {e.request_id: e.rows for e in [*down, up]}
    assert logged(lake) == expected
    assert log.replayed_rows == 9 and log.written_rows == 2

    # a spool file replayed again (e.g. a crash between commit and delete) adds nothing
    write_spool(spool, to_arrow(down))
    log.flush()
    assert logged(lake) == expected and spool_files(spool) == []
    log.close()


def test_spool_is_replayed_at_start_up(lake: Lake, tmp_path: Path):
    spool = tmp_path / "spool"
    left = [served(1), served(4)]
    write_spool(spool, to_arrow(left))
    assert read_spool(spool_files(spool)[0]).num_rows == 5
    log = InferenceLogger(lake, spool, flush_seconds=60).start()  # the first round replays
    try:
        for _ in range(200):
            if not spool_files(spool):
                break
            threading.Event().wait(0.05)
        assert logged(lake) == {e.request_id: e.rows for e in left}
    finally:
        log.close()


def test_background_thread_flushes_by_size_and_time_and_close_flushes_the_rest(lake: Lake, tmp_path: Path):
    log = InferenceLogger(lake, tmp_path / "spool", flush_seconds=0.3, batch_rows=10).start()
    first = [served(4) for _ in range(3)]  # 12 rows >= batch_rows: wakes the flusher
    for e in first:
        log.log(e)
    for _ in range(200):
        if len(logged(lake)) == 3:
            break
        threading.Event().wait(0.05)
    assert logged(lake) == {e.request_id: 4 for e in first}
    last = served(1)
    log.log(last)
    log.close()  # flushes what the timer has not written yet
    assert logged(lake)[last.request_id] == 1 and log.pending_rows == 0


def test_concurrent_loggers_never_double_a_spooled_request(tmp_path: Path):
    """Two replicas replaying the same spool at once: each request lands once."""
    settings = Settings(warehouse=tmp_path / "warehouse")
    spool = tmp_path / "spool"
    entries = [served(2) for _ in range(20)]
    for i in range(0, 20, 4):
        write_spool(spool, to_arrow(entries[i:i + 4]))
    loggers = [InferenceLogger(Lake(settings), spool, flush_seconds=60) for _ in range(2)]
    threads = [threading.Thread(target=lg.flush) for lg in loggers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for lg in loggers:
        lg.flush()
        lg.close()
    assert logged(Lake(settings)) == {e.request_id: 2 for e in entries}


def test_insert_is_idempotent_by_request_id(lake: Lake):
    older = served(2, at=datetime.now(timezone.utc) - timedelta(days=3))
    table = to_arrow([older, served(1)])
    assert lake.write(lambda con: insert(con, table)) == 3
    assert lake.write(lambda con: insert(con, table)) == 0
    assert sum(logged(lake).values()) == 3


def test_unreadable_spool_file_is_set_aside(lake: Lake, tmp_path: Path):
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "00000000000000000001-1-deadbeef.jsonl").write_text("not json\n")
    good = served(1)
    (spool / "00000000000000000002-1-cafebabe.jsonl").write_text(
        "\n".join(json.dumps({**r, "received_at": r["received_at"].isoformat()})
                  for r in to_arrow([good]).to_pylist()) + "\n")
    log = InferenceLogger(lake, spool, flush_seconds=60)
    log.flush()
    assert logged(lake) == {good.request_id: 1}
    assert spool_files(spool) == [] and len(list((spool / "unreadable").iterdir())) == 1
    log.close()
