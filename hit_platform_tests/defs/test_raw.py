"""The ingest assets in a real Dagster instance, and every generator fault accounted for."""

from __future__ import annotations

import dagster as dg

from hit_platform.defs.raw import QUARANTINED_CHART_ROWS, RAW_CHART_ROWS, ingest_chart_files
from hit_platform.defs.resources import LakeResource
from hit_platform.generator import FAULT_KINDS
from hit_platform.adapters.lake.connection import Lake
from hit_platform_tests.support.dumps import small_dump

ROW_FAULT_REASON = {"missing_values": "missing_value", "out_of_range": "out_of_range",
                    "exact_duplicates": "exact_duplicate", "key_duplicates": "key_duplicate",
                    "unknown_country": "unknown_country", "wrong_types": "wrong_type"}
FILE_FAULTS = ("truncated_gzip", "missing_column", "renamed_column", "empty_file")


def test_definitions_load():
    from hit_platform.definitions import defs

    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert {RAW_CHART_ROWS, QUARANTINED_CHART_ROWS} <= keys


def materialize(settings, instance):
    return dg.materialize([ingest_chart_files], instance=instance,
                          resources={"lake": LakeResource(warehouse=str(settings.warehouse))})


def latest(instance, key):
    return instance.get_latest_materialization_event(key).asset_materialization


def test_every_fault_is_injected_and_accounted_for(settings, lake: Lake):
    faults = {k: 3 for k in FAULT_KINDS}
    manifest = small_dump(settings, faults=faults, countries=6, history_days=4, increments=2)
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(settings, instance)
    assert result.success
    with lake.connection(read_only=True) as con:
        by_reason = dict(con.execute(
            "SELECT reason, count(*) FROM quarantine.chart_rows GROUP BY 1").fetchall())
        rejected = con.execute("SELECT count(*) FROM raw.landed_files WHERE status = 'rejected'").fetchall()[0][0]
        landed_rows = con.execute("SELECT sum(rows_read) FROM raw.landed_files").fetchall()[0][0]
        per_file = con.execute("SELECT bool_and(rows_read = rows_raw + rows_quarantined) FROM raw.landed_files"
                               ).fetchall()[0][0]
        missing_audio_rows = con.execute(
            "SELECT count(*) FROM raw.chart_rows WHERE danceability IS NULL AND tempo IS NULL").fetchall()[0][0]
        n_raw = con.execute("SELECT count(*) FROM raw.chart_rows").fetchall()[0][0]
    for kind, reason in ROW_FAULT_REASON.items():
        assert by_reason.get(reason, 0) == manifest["faults"][kind]["count"] == 3, (kind, by_reason)
    assert sum(by_reason.values()) == 18
    # the empty files are byte-identical (0 bytes): the first is rejected, the others already landed
    assert sum(manifest["faults"][k]["count"] for k in FILE_FAULTS) == 12
    assert rejected == 12 - (manifest["faults"]["empty_file"]["count"] - 1)
    assert per_file
    # songs without audio features are realistic rows: kept in raw, for a gate to judge
    assert missing_audio_rows == manifest["faults"]["missing_audio_features"]["rows"] > 0
    data_rows = sum(f["rows"] for f in manifest["files"] if f["kind"] in ("history", "increment"))
    assert landed_rows == data_rows == n_raw + sum(by_reason.values())

    raw_meta = latest(instance, RAW_CHART_ROWS).metadata
    assert raw_meta["dagster/row_count"].value == n_raw
    assert raw_meta["files_rejected"].value == rejected


def test_rematerializing_with_nothing_new_keeps_the_data_version(settings):
    small_dump(settings)
    instance = dg.DagsterInstance.ephemeral()
    assert materialize(settings, instance).success
    first = latest(instance, RAW_CHART_ROWS).tags["dagster/data_version"]
    events = len(instance.fetch_materializations(RAW_CHART_ROWS, limit=10).records)
    assert materialize(settings, instance).success
    # nothing new landed: no new materialization, so nothing downstream turns stale or retrains
    assert len(instance.fetch_materializations(RAW_CHART_ROWS, limit=10).records) == events
    assert latest(instance, RAW_CHART_ROWS).tags["dagster/data_version"] == first


def test_a_run_names_only_files_directly_in_landing(settings, lake: Lake, tmp_path):
    """Issue 27, hole 10: `files` took absolute and '../' paths, and the run ingested a file from outside
    landing/. Now the run fails at once, saying why in one line, and nothing lands."""
    from hit_platform_tests.steps.test_ingest import row, write_csv

    write_csv(settings.landing_dir / "day.csv", [row()])
    outside = write_csv(tmp_path / "outside" / "other.csv", [row(spotify_id="x2", daily_rank="2")])
    for name in ("../../outside/other.csv", str(outside)):
        result = dg.materialize([ingest_chart_files], instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                                resources={"lake": LakeResource(warehouse=str(settings.warehouse))},
                                run_config={"ops": {"ingest_chart_files": {"config": {"files": [name]}}}})
        assert not result.success, name
        [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        message = failure.step_failure_data.error.message
        assert "files: " in message and "not a file name in the landing folder" in message, message
    assert _landed_names(lake) == []


def _landed_names(lake: Lake) -> list[str]:
    from hit_platform.adapters.lake.tables import table_exists

    try:
        with lake.connection(read_only=True) as con:
            if not table_exists(con, "raw", "landed_files"):
                return []
            return [n for (n,) in con.execute("SELECT file_name FROM raw.landed_files").fetchall()]
    except FileNotFoundError:  # no lake yet: nothing landed
        return []
