"""The lake ahead of Dagster: ingest commits a file, then is killed before Dagster records anything. The rows
are in the lake, the file counts as landed, and no gate has judged them. Nothing may read them until raw is
materialized again and judged: not a child materialized alone (the UI, a code bump), and the next `build`
(the daemon's landing sensor alike) asks for that ingest although no file is new. A real lake and a real
Dagster instance; the kill's state is made by the lake adapter's own commit of the file (what the ingest
asset does before it reports), with no Dagster event after it."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.ingest import ingest_landing
from hit_platform.cli import build as builder
from hit_platform.definitions import build_definitions
from hit_platform.defs import sensors
from hit_platform.defs.core import CHART_ENTRIES, SONGS
from hit_platform.defs.raw import RAW_CHART_ROWS
from hit_platform.defs.resources import LakeResource
from hit_platform.settings import Settings
from hit_platform_tests.support.dumps import small_dump

pytestmark = pytest.mark.slow


def without_rank_50(src, dst) -> None:
    """`src` with every chart missing its rank 50: a chart day the blocking raw_chart_days gate refuses."""
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * FROM read_csv('{src}', all_varchar=true) WHERE daily_rank <> '50') "
                f"TO '{dst}' (HEADER, COMPRESSION gzip)")
    con.close()


def sensor_asks(instance: dg.DagsterInstance, lake: LakeResource):
    found = sensors.landing_sensor(dg.build_sensor_context(instance=instance, resources={"lake": lake}), lake=lake)
    return found if isinstance(found, list) else []


def test_rows_committed_with_no_dagster_record_are_judged_before_anything_reads_them(tmp_path):
    settings = Settings(warehouse=tmp_path / "warehouse")
    manifest = small_dump(settings, countries=4, history_days=3, increments=1, songs=300)
    daily = settings.landing_dir / manifest["files"][-1]["name"]
    held_back = tmp_path / daily.name
    daily.rename(held_back)
    resource, lake = LakeResource(warehouse=str(settings.warehouse)), Lake(settings)
    defs, instance = build_definitions(resource), dg.DagsterInstance.ephemeral()
    first = builder.build(defs, instance, upto=[SONGS])
    assert first.success and SONGS in first.materialized, [c.description for c in first.checks if not c.passed]
    songs_before = instance.fetch_materializations(SONGS, limit=1).records[0].storage_id

    # the next daily file arrives broken; ingest commits it and dies before Dagster hears of it
    broken = settings.landing_dir / "daily_broken.csv.gz"
    without_rank_50(held_back, broken)
    [committed] = ingest_landing(lake, [broken])
    assert committed.status == "ingested" and committed.rows_raw > 0
    with lake.connection(read_only=True) as con:
        written = lake.snapshot_id(con)

    # 1. a child materialized alone (the UI's Materialize, `dagster asset materialize`) does not read them
    job = defs.resolve_implicit_global_asset_job_def()
    alone = job.execute_in_process(instance=instance, asset_selection=[CHART_ENTRIES, SONGS], raise_on_error=False)
    assert not alone.success and alone.get_asset_materialization_events() == []
    failures = [str(e.step_failure_data.user_failure_data.description) for e in alone.all_events
                if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 2, failures
    for message in failures:
        assert f"is held by raw/chart_rows:raw_chart_days (never judged raw.chart_rows as written at lake snapshot " \
               in message, message
    assert instance.fetch_materializations(SONGS, limit=1).records[0].storage_id == songs_before

    # 2. the daemon's landing sensor asks for an ingest run although the file is landed
    [request] = sensor_asks(instance, resource)
    assert sensors.RECONCILE_TAG in request.tags and int(request.tags[sensors.RECONCILE_TAG]) <= written

    # 3. so does the next build: raw is materialized as the lake holds it, its gates judge the rows, and the
    # one that refuses them holds what is below
    second = builder.build(defs, instance, upto=[SONGS])
    assert RAW_CHART_ROWS in second.materialized and SONGS not in second.materialized
    [gate] = [c for c in second.checks if c.check_name == "raw_chart_days"]
    assert not gate.passed
    assert {h.check.name for h in second.held} == {"raw_chart_days"} and not second.success
    print("held:", *[str(h) for h in second.held], sep="\n  ")
    assert instance.fetch_materializations(SONGS, limit=1).records[0].storage_id == songs_before
    assert sensor_asks(instance, resource) == []  # reconciled: nothing more to ask for
