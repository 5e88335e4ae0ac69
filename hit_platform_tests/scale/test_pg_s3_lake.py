"""The lake with its catalog in PostgreSQL and its data on S3 (moto), by configuration alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from hit_platform.generator import FAULT_KINDS
from hit_platform.adapters.lake.ingest import ingest_landing
from hit_platform.steps.ingest import landing_files, lake_summary
from hit_platform.adapters.lake.connection import Lake
from hit_platform_tests.support.dumps import small_dump

pytestmark = pytest.mark.slow


def test_create_insert_and_time_travel(pg_s3_lake):
    lake, settings = pg_s3_lake.lake, pg_s3_lake.settings
    assert settings.catalog.startswith("postgres:") and settings.data_path.startswith("s3://")
    lake.write(lambda c: c.execute("CREATE TABLE core.t AS SELECT range AS x FROM range(20000)"))
    with lake.connection() as con:
        v1 = lake.snapshot_id(con)
    lake.write(lambda c: c.execute("INSERT INTO core.t SELECT range + 20000 FROM range(5000)"))
    lake.write(lambda c: c.execute("DELETE FROM core.t WHERE x < 100"))
    with lake.connection(read_only=True) as con:
        v3 = lake.snapshot_id(con)
        assert v3 == v1 + 2
        count = "SELECT count(*), sum(x) FROM core.t"
        assert con.execute(f"{count} AT (VERSION => {v1})").fetchall() == [(20000, sum(range(20000)))]
        assert con.execute(f"{count} AT (VERSION => {v1 + 1})").fetchall() == [(25000, sum(range(25000)))]
        assert con.execute(count).fetchall() == [(24900, sum(range(100, 25000)))]
        files = [r[0] for r in con.execute("SELECT data_file FROM ducklake_list_files('lake', 't', schema => 'core')"
                                           ).fetchall()]
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("INSERT INTO core.t VALUES (1)")
    # the catalog really is in PostgreSQL: its snapshot table, read with a plain PostgreSQL client
    import psycopg2

    with psycopg2.connect(pg_s3_lake.catalog_dsn) as pg, pg.cursor() as cur:
        cur.execute("SELECT max(snapshot_id) FROM ducklake_snapshot")
        assert cur.fetchone()[0] == v3
    # and the files really are in the bucket
    assert files and all(f.startswith(f"s3://{pg_s3_lake.s3.bucket}/{pg_s3_lake.prefix}/") for f in files)
    keys = pg_s3_lake.data_keys()
    assert {f.removeprefix(f"s3://{pg_s3_lake.s3.bucket}/") for f in files} <= set(keys)
    assert any(k.endswith(".parquet") for k in keys)
    # nothing of the lake on the local disk: no catalog file, no data folder
    assert not (settings.warehouse / "lake").exists()


def test_analyst_init_file_opens_the_pg_s3_lake_without_secrets_on_disk(pg_s3_lake):
    lake = pg_s3_lake.lake
    lake.write(lambda c: c.execute("CREATE TABLE core.t AS SELECT 42 AS answer FROM range(3)"))
    init = lake.write_init_file()
    text = init.read_text()
    creds = pg_s3_lake.s3.credentials
    assert creds.secret_access_key not in text and creds.access_key_id not in text
    assert "getenv('AWS_SECRET_ACCESS_KEY')" in text and "ducklake:postgres:" in text
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HIT_", "AWS_"))}
    env.update(AWS_ACCESS_KEY_ID=creds.access_key_id, AWS_SECRET_ACCESS_KEY=creds.secret_access_key)
    cli = Path(sys.executable).parent / "duckdb"
    out = subprocess.run([str(cli), "-init", str(init), "-csv", "-c", "SELECT sum(answer) AS s FROM core.t"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "126" in out.stdout


FAULTS = {k: 3 for k in FAULT_KINDS}
IGNORED = {"ingested_at"}  # the only column that differs between two ingests of the same files


def fingerprint(lake: Lake, con, table: str) -> tuple:
    """Order-independent fingerprint of a table's contents (all columns but ingested_at)."""
    schema, name = table.split(".")
    cols = [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = ? AND table_schema = ? "
        "AND table_name = ? ORDER BY ordinal_position", [lake.alias, schema, name]).fetchall()
        if r[0] not in IGNORED]
    row = f"hash({', '.join(cols)})"
    return tuple(con.execute(
        f"SELECT count(*), sum({row}::HUGEINT), bit_xor({row}), count(DISTINCT {row}) FROM {table}").fetchall()[0])


def test_ingest_gives_the_same_lake_as_sqlite_and_local_files(settings, pg_s3_lake):
    assert pg_s3_lake.settings.landing_dir == settings.landing_dir  # the same landing files for both
    manifest = small_dump(settings, faults=FAULTS, countries=5, history_days=4, increments=2)
    files = landing_files(settings.landing_dir)
    local, remote = Lake(settings), pg_s3_lake.lake
    results = {name: [r.as_dict() for r in ingest_landing(lk, files)] for name, lk in
               (("local", local), ("remote", remote))}
    for r in (*results["local"], *results["remote"]):
        r.pop("snapshot_id")
    assert results["local"] == results["remote"]
    tables = ("raw.chart_rows", "quarantine.chart_rows", "raw.landed_files")
    summaries, prints = {}, {}
    for name, lk in (("local", local), ("remote", remote)):
        with lk.connection(read_only=True) as con:
            summary = lake_summary(con)
            summary.pop("snapshot_id")
            summaries[name] = summary
            prints[name] = {t: fingerprint(lk, con, t) for t in tables}
    assert summaries["local"] == summaries["remote"]
    assert prints["local"] == prints["remote"]
    s = summaries["remote"]
    assert s["rows"]["raw.chart_rows"] > 0
    assert set(s["quarantined_by_reason"]) == {"missing_value", "out_of_range", "unknown_country", "wrong_type",
                                               "exact_duplicate", "key_duplicate"}
    assert all(n == 3 for n in s["quarantined_by_reason"].values())
    assert s["files_by_status"]["rejected"] > 0
    data_rows = sum(f["rows"] for f in manifest["files"] if f["kind"] in ("history", "increment"))
    assert s["rows"]["raw.chart_rows"] + sum(s["quarantined_by_reason"].values()) == data_rows
    # the remote lake's files are in the bucket
    assert any("/raw/chart_rows/" in k for k in pg_s3_lake.data_keys())
