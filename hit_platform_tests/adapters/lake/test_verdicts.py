"""The gates' verdicts in a real DuckLake: a table's version is the snapshot that wrote it (whatever else the
lake commits), and a read at a snapshot is refused while a blocking check refused that version or never
judged it, by name."""

from __future__ import annotations

import pytest

from hit_platform.adapters.lake import verdicts
from hit_platform.adapters.lake.connection import Lake


def commit(lake: Lake, sql: str) -> int:
    with lake.connection() as con:
        lake.write(lambda c: c.execute(sql))
        return lake.snapshot_id(con)


def judge(lake: Lake, check: str, version: int, passed: bool, run: str = "run-1") -> None:
    v = verdicts.GateVerdict(check, "core/t", "core.t", version, version, None, True, passed,
                             "ok" if passed else "2 countries refused", run)
    lake.write(lambda c: verdicts.record(c, v))


def test_a_tables_version_is_the_snapshot_that_last_wrote_it(lake: Lake):
    created = commit(lake, "CREATE TABLE core.t AS SELECT range AS a FROM range(50000)")
    other = commit(lake, "CREATE TABLE ops.log AS SELECT 1 AS a")  # another table: not a new version of core.t
    appended = commit(lake, "INSERT INTO core.t SELECT range FROM range(10)")
    commit(lake, "INSERT INTO ops.log SELECT 2")
    altered = commit(lake, "ALTER TABLE core.t ADD COLUMN b INTEGER")
    deleted = commit(lake, "DELETE FROM core.t WHERE a < 5")
    replaced = commit(lake, "CREATE OR REPLACE TABLE core.t AS SELECT 1 AS a")
    with lake.connection(read_only=True) as con:
        seen = {n: verdicts.table_version(con, "core.t", n) for n in range(created - 1, replaced + 1)}
        assert verdicts.table_version(con, "core.missing", replaced) is None
    assert seen == {created - 1: None, created: created, other: created, appended: appended,
                    appended + 1: appended, altered: altered, deleted: deleted, replaced: replaced}


def test_duckLakes_upkeep_makes_no_new_version(lake: Lake):
    """The maintenance job's merge of small files, rewrite of deleted rows and flush of inlined rows write the
    same rows again: no new version, so what the gates judged stays judged, and a compacted raw table is not
    taken for rows no ingest recorded (before: it was, and the landing sensor re-ingested, retrained and
    promoted again: test_automation_e2e counted 3 champions for 2)."""
    alias = lake.alias
    first = commit(lake, "CREATE TABLE raw.t AS SELECT range AS a FROM range(100000)")
    for i in range(3):
        commit(lake, f"INSERT INTO raw.t SELECT range FROM range({i * 10}, {i * 10 + 10})")
    deleted = commit(lake, "DELETE FROM raw.t WHERE a < 90000")
    with lake.connection() as con:
        con.execute(f"CALL ducklake_set_option('{alias}', 'data_inlining_row_limit', 100)")
    inlined = commit(lake, "INSERT INTO raw.t VALUES (7)")
    upkeep = [commit(lake, f"CALL ducklake_{call}('{alias}')")
              for call in ("merge_adjacent_files", "rewrite_data_files", "flush_inlined_data")]
    with lake.connection(read_only=True) as con:
        kinds = {k for (changes,) in con.execute(f'SELECT changes FROM "{alias}".snapshots() WHERE snapshot_id > $n',
                                                  {"n": inlined}).fetchall() for k in changes}
        assert kinds and kinds <= set(verdicts.UPKEEP_CHANGES), kinds  # each call wrote its own kind of snapshot
        assert verdicts.table_version(con, "raw.t", upkeep[-1]) == inlined > deleted > first
        assert con.execute("SELECT count(*) FROM raw.t").fetchall() == [(10001,)]


def test_a_read_is_refused_until_every_blocking_check_passed_that_version(lake: Lake):
    first = commit(lake, "CREATE TABLE core.t AS SELECT range AS a FROM range(100)")
    judge(lake, "balance", first, True)
    judge(lake, "bias", first, False)
    second = commit(lake, "INSERT INTO core.t SELECT 7")  # written, and no check judged it (a killed run)
    commit(lake, "CREATE TABLE ops.alerts_like AS SELECT 1 AS a")
    gates = {"core.t": ["balance", "bias"]}
    with lake.connection(read_only=True) as con:
        at_first = verdicts.unjudged(con, first, gates)
        newest = lake.snapshot_id(con)
        at_newest = verdicts.unjudged(con, newest, gates)
        with pytest.raises(verdicts.UnjudgedData) as refused:
            verdicts.refuse_unjudged(con, first, gates, "trained from")
    assert [str(u) for u in at_first] == [
        f"core/t:bias refused core.t as written at lake snapshot {first} (in run run-1: 2 countries refused)"]
    assert str(refused.value) == f"lake snapshot {first} cannot be trained from: {at_first[0]}"
    assert [str(u) for u in at_newest] == [f"core/t:{c} never judged core.t as written at lake snapshot {second}"
                                           for c in ("balance", "bias")]
    # judged again (the thresholds changed): the newest verdict on that version decides
    judge(lake, "bias", first, True, run="run-2")
    with lake.connection(read_only=True) as con:
        assert verdicts.unjudged(con, first, gates) == []
        assert verdicts.unjudged(con, first, {"core.t": []}) == []
