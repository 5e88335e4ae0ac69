"""Dagster's run, event and schedule storage in PostgreSQL (dagster-postgres), materializing
the ingest asset into a lake whose catalog is in PostgreSQL and whose data is on S3."""

from __future__ import annotations

import textwrap
import uuid

import dagster as dg
import pytest

from hit_platform.defs.raw import QUARANTINED_CHART_ROWS, RAW_CHART_ROWS, ingest_chart_files
from hit_platform.defs.resources import LakeResource
from hit_platform_tests.support.dumps import small_dump
from hit_platform_tests.support.servers import create_database

pytestmark = pytest.mark.slow

# The README's snippet: dagster.yaml storage in PostgreSQL, connection from the environment.
# `scheme: postgresql+psycopg2`: dagster-postgres brings psycopg2, while SQLAlchemy 2.1's
# default driver for plain `postgresql://` is psycopg 3 (not installed).
DAGSTER_YAML = textwrap.dedent("""\
    storage:
      postgres:
        postgres_db:
          scheme: postgresql+psycopg2
          hostname: {env: DAGSTER_PG_HOST}
          port: {env: DAGSTER_PG_PORT}
          username: {env: DAGSTER_PG_USER}
          password: {env: DAGSTER_PG_PASSWORD}
          db_name: {env: DAGSTER_PG_DB}
    telemetry:
      enabled: false
""")


def test_ingest_asset_with_dagster_storage_in_postgres(tmp_path, monkeypatch, pg_dsn, pg_s3_lake):
    db = "dagster_" + uuid.uuid4().hex[:8]
    dagster_dsn = create_database(pg_dsn, db)
    params = dict(p.split("=", 1) for p in dagster_dsn.split())
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    for key, value in {"DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": params["host"], "DAGSTER_PG_PORT": params["port"],
                       "DAGSTER_PG_USER": params["user"], "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": db,
                       **pg_s3_lake.s3.credentials.env(pg_s3_lake.s3.endpoint)}.items():
        monkeypatch.setenv(key, value)  # the S3 settings reach LakeResource's Settings through HIT_S3_*
    settings = pg_s3_lake.settings
    small_dump(settings, faults={"missing_values": 2, "key_duplicates": 2, "empty_file": 1},
               countries=3, history_days=2, increments=1)
    resource = LakeResource(warehouse=str(settings.warehouse), lake_catalog=settings.lake.catalog,
                            lake_data_path=settings.lake.data_path)
    instance = dg.DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    result = dg.materialize([ingest_chart_files], instance=instance, resources={"lake": resource})
    assert result.success
    run_id = result.run_id
    instance.dispose()

    # a fresh instance (another process would do the same) finds the run and its materializations in PG
    again = dg.DagsterInstance.from_config(str(home))
    run = again.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    raw = again.get_latest_materialization_event(RAW_CHART_ROWS).asset_materialization
    quarantined = again.get_latest_materialization_event(QUARANTINED_CHART_ROWS).asset_materialization
    again.dispose()
    import psycopg2

    with psycopg2.connect(dagster_dsn) as pg, pg.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", [run_id])
        assert cur.fetchone() == ("SUCCESS",)
        cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
                    [run_id])
        assert cur.fetchone()[0] == 2

    lake = pg_s3_lake.lake
    with lake.connection(read_only=True) as con:
        n_raw, n_q = con.execute("SELECT (SELECT count(*) FROM raw.chart_rows), "
                                 "(SELECT count(*) FROM quarantine.chart_rows)").fetchall()[0]
        snapshot = lake.snapshot_id(con)
    assert raw.metadata["dagster/row_count"].value == n_raw > 0
    assert quarantined.metadata["dagster/row_count"].value == n_q == 4
    assert raw.metadata["lake_snapshot_id"].value == snapshot
    assert any("/raw/chart_rows/" in k for k in pg_s3_lake.data_keys())
    assert not (settings.warehouse / "lake").exists()
