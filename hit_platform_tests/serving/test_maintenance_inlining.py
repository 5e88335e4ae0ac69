"""Small commits stay small (issue 28, part 2): the serving committer's rounds of a few requests are inlined in
the lake's catalog (DuckLake data inlining, HIT_MAINTENANCE_LOG_INLINE_ROWS), not one Parquet file each, and the
maintenance compaction flushes them into one file with every row and its time travel intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from hit_platform.adapters.lake import maintenance as upkeep
from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import requests_in_log
from hit_platform.serving.inference_log import JournalCommitter
from hit_platform.settings import Settings
from hit_platform_tests.serving.test_inference_log import sealed, served, wait_for
from hit_platform_tests.support.servers import postgres_missing_reason, postgres_server

ROUNDS = 30
pytestmark = pytest.mark.slow  # ~30 s: thirty committer rounds


def _parquet(settings: Settings) -> int:
    return sum(1 for _ in Path(settings.data_path).rglob("*.parquet"))


def test_rounds_of_a_few_requests_leave_no_file_until_maintenance_flushes_them_into_one(tmp_path: Path):
    settings = Settings(warehouse=tmp_path / "warehouse", maintenance={"log_inline_rows": 100})
    lake = Lake(settings)
    journal = tmp_path / "journal"
    committer = JournalCommitter(lake, journal).start(every_seconds=0.05)
    ids, snapshots = [], []
    try:
        for i in range(ROUNDS):  # one round per sealed segment of 1-3 requests, as a trickle of traffic leaves them
            entries = [served(n=1 + (i % 3)) for _ in range(1 + i % 2)]
            sealed(journal, entries)
            ids += [e.request_id for e in entries]
            assert wait_for(lambda: set(ids) <= set(requests_in_log(lake, ids)), timeout=30), "round not committed"
            if i == ROUNDS // 2:
                with lake.connection(read_only=True) as con:
                    snapshots.append((lake.snapshot_id(con), len(requests_in_log(lake, ids))))
    finally:
        committer.close()
    assert committer.commits >= ROUNDS
    with lake.connection() as con:
        grown = upkeep.footprint(lake, con)
        assert _parquet(settings) == 0 and grown.inlined_rows > 0, (grown, _parquet(settings))
        done = upkeep.compact(lake, con)
        after = upkeep.footprint(lake, con)
        snapshot, then = snapshots[0]
        at_then = con.execute(f"SELECT count(DISTINCT request_id) FROM ops.inference_log AT (VERSION => {snapshot})"
                              ).fetchall()[0][0]
    assert done["inlined_rows_flushed"] == grown.inlined_rows and after.inlined_rows == 0
    assert _parquet(settings) == after.data_files == 1
    assert set(requests_in_log(lake, ids)) == set(ids) and at_then == then
    # with inlining off, every round is a file of its own: what the catalog option saves
    off = Settings(warehouse=tmp_path / "off", maintenance={"log_inline_rows": 0})
    committer = JournalCommitter(Lake(off), tmp_path / "journal_off").start(every_seconds=0.05)
    try:
        for i in range(3):
            e = served()
            sealed(tmp_path / "journal_off", [e])
            assert wait_for(lambda: e.request_id in requests_in_log(Lake(off), [e.request_id]), timeout=30)
    finally:
        committer.close()
    assert _parquet(off) == 3


def test_with_a_postgresql_catalog_small_commits_are_inlined_flushed_and_old_snapshots_expired(tmp_path: Path):
    """The same upkeep with the catalog in PostgreSQL (docs/scale.md): inlined, flushed into one file, the
    snapshots past the retention expired except a protected one, which still reads what it read."""
    if postgres_missing_reason():
        pytest.skip(postgres_missing_reason())
    with postgres_server(tmp_path / "pg") as dsn:
        settings = Settings(warehouse=tmp_path / "warehouse", lake={"catalog": "postgres:" + dsn})
        lake = Lake(settings)
        with lake.connection() as con:
            upkeep.inline_small_commits(lake, con, 100)
            lake.write(lambda c: c.execute("CREATE TABLE ops.rounds (n INTEGER)"), con=con)
            for i in range(10):
                lake.write(lambda c, i=i: c.execute("INSERT INTO ops.rounds SELECT range FROM range(?)", [i + 1]),
                           con=con)
                if i == 4:
                    protected = lake.snapshot_id(con)
            grown = upkeep.footprint(lake, con)
            assert _parquet(settings) == 0 and grown.inlined_rows == 55 and grown.catalog_bytes is None
            assert upkeep.compact(lake, con)["inlined_rows_flushed"] == 55 and _parquet(settings) == 1
            expired = upkeep.expire(lake, con, upkeep.expirable(lake, con, 1e-9, {protected}))
            upkeep.delete_unreferenced(lake, con, 0)
            at_protected = con.execute(f"SELECT count(*) FROM ops.rounds AT (VERSION => {protected})").fetchall()
            assert expired == grown.snapshots + 1 - 2 and at_protected == [(15,)]
            assert upkeep.footprint(lake, con).snapshots == 2
