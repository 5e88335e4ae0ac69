"""Versions and caching by the automation conditions the daemon evaluates, and blocking gates stopping a run."""

from __future__ import annotations

import io
import re

import dagster as dg
import pytest

from hit_platform.cli.build import report
from hit_platform.cli.progress import Progress
from hit_platform.definitions import build_definitions
from hit_platform.defs.ml.features import FEATURES, SPLITS_KEY
from hit_platform.defs.resources import GatesResource
from hit_platform.defs.core import CHART_ENTRIES, SONG_LABELS, SONGS
from hit_platform.steps.transforms import build_splits, table_fingerprint
from hit_platform_tests.support.built import Built, build, pending
from hit_platform_tests.support.dumps import generate_full


def keys(ks) -> set[str]:
    return {k.to_user_string() for k in ks}


def test_no_change_rerun_rebuilds_nothing(built):
    assert pending(built.defs, built.instance) == []
    again = build(built.defs, built.instance)
    assert again.selected == [] and again.run_ids == []


def test_every_materialization_records_the_snapshot_to_reread_it(built):
    with built.lake.connection(read_only=True) as con:
        for key, table in ((SPLITS_KEY, "ml.splits"), (FEATURES, "ml.features"), (SONG_LABELS, "core.song_labels")):
            meta = built.instance.get_latest_materialization_event(key).asset_materialization.metadata
            snap = meta["lake_snapshot_id"].value
            assert meta["reread_sql"].value == f"SELECT * FROM {table} AT (VERSION => {snap})"
            n = con.execute(meta["reread_sql"].value.replace("SELECT *", "SELECT count(*)")).fetchall()[0][0]
            assert n == meta["dagster/row_count"].value > 0


def test_splits_are_identical_when_rebuilt_from_the_same_snapshot(built):
    meta = built.instance.get_latest_materialization_event(SPLITS_KEY).asset_materialization.metadata
    with built.lake.connection() as con:
        con.execute("BEGIN TRANSACTION")
        try:
            build_splits(con)  # rebuild in a transaction on the same snapshot
            rebuilt = table_fingerprint(con, "ml.splits")
        finally:
            con.execute("ROLLBACK")
        snap = meta["lake_snapshot_id"].value
        at_snapshot = con.execute(
            f"SELECT count(*), count(DISTINCT spotify_id) FROM ml.splits AT (VERSION => {snap})").fetchall()[0]
    assert rebuilt == meta["splits_fingerprint"].value
    assert at_snapshot[0] == at_snapshot[1]  # no song in two splits


@pytest.mark.slow  # ~30 s: two builds of the data half
def test_code_version_bump_rebuilds_exactly_that_asset_and_what_is_downstream(tmp_path):
    b = Built(tmp_path)
    generate_full(b.settings, songs=3000)
    assert build(b.defs, b.instance).success
    bumped = [a.map_asset_specs(lambda s: s.replace_attributes(code_version="2"))
              if isinstance(a, dg.AssetsDefinition) and SONGS in a.keys else a
              for a in b.defs.assets]
    defs = dg.Definitions(assets=bumped, asset_checks=b.defs.asset_checks, resources=b.defs.resources)
    # the automation conditions ask for the bumped asset and, in the same run, everything it feeds
    assert keys(pending(defs, b.instance)) == {"core/songs", "core/song_labels", "ml/features", "ml/splits"}
    result = build(defs, b.instance)
    assert result.success
    assert keys(result.materialized) == {"core/songs", "core/song_labels", "ml/features", "ml/splits"}
    assert pending(defs, b.instance) == []


@pytest.mark.slow  # ~40 s: two builds of the data half
def test_new_landed_data_makes_ingest_and_everything_downstream_stale(tmp_path):
    b = Built(tmp_path)
    generate_full(b.settings, songs=3000, increments=1)
    assert build(b.defs, b.instance).success
    assert pending(b.defs, b.instance) == []
    generate_full(b.settings, songs=3000, increments=2)  # one more daily file lands
    result = build(b.defs, b.instance)
    assert result.success
    assert keys(result.selected) == {"raw/chart_rows", "quarantine/chart_rows", "core/chart_entries",
                                     "core/songs", "core/song_labels", "ml/features", "ml/splits"}
    drift = next(c for c in result.checks if c.check_name == "features_drift")
    assert drift.metadata["previous_snapshot_id"].value > 0  # compared against the previous data version


@pytest.mark.slow  # ~25 s: two builds of the data half
def test_a_failing_blocking_gate_stops_downstream_in_the_same_run(tmp_path):
    b = Built(tmp_path)
    generate_full(b.settings, songs=3000)
    strict = build_definitions(b.resource, GatesResource(values_json='{"min_positive_rate": 0.9}'))
    told = io.StringIO()
    result = build(strict, b.instance, progress=Progress("plain", stream=told))
    assert not result.success
    # while it works, a person sees each asset start and end with its seconds, and the gate that failed
    lines = told.getvalue().splitlines()
    assert lines[0] == "[1/1] raw/chart_rows, quarantine/chart_rows …", lines
    ended = [line for line in lines if re.match(r"\[\d+/\d+\] \S+.* \d+\.\d s$", line)]
    assert {line.split()[1].rstrip(",") for line in ended} >= {"raw/chart_rows", "core/songs", "core/song_labels"}, lines
    assert any(line.strip().startswith("gate FAIL core/song_labels:labels_balance: positive rate") for line in lines), lines
    said = []
    report(result, out=said.append)
    assert any("stopped by a failing gate or step upstream" in s or "held by a failed gate" in s for s in said), said
    assert "[-/6] ml/splits not run: a gate or step it needs failed" in lines, lines
    failed = [c for c in result.checks if not c.passed]
    assert [c.check_name for c in failed] == ["labels_balance"]
    assert "positive rate outside [0.9, 0.6]" in failed[0].description
    # downstream of the failed gate: skipped in that run, or held out of it by the gate policy
    assert keys(result.skipped) | {h.asset.to_user_string() for h in result.held} == {"ml/splits"}
    assert all(h.check.name == "labels_balance" and h.verdict.failed for h in result.held)
    assert {SONGS, CHART_ENTRIES, SONG_LABELS, FEATURES} <= set(result.materialized)
    # the gate passes with the default thresholds, and then splits are built
    result = build(b.defs, b.instance)
    assert result.success and keys(result.materialized) == {"ml/splits"}


def test_bad_gate_config_is_a_clear_error():
    with pytest.raises(ValueError, match="not valid JSON"):
        GatesResource(values_json="{max_psi: 0.3").thresholds()


@pytest.mark.slow  # ~40 s: three builds of the data half
def test_an_ingest_only_build_leaves_the_retrain_ask_to_the_next_wider_build(tmp_path):
    """`build(upto=INGEST)` evaluates only the ingest assets' conditions. The next build of more must still
    see the new raw version as new: its cursor is one shared file, on an instance that keeps it."""
    from hit_platform.cli.build import INGEST
    from hit_platform.cli import build as builder
    b = Built(tmp_path)
    (tmp_path / "dagster_home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster_home")) as instance:
        generate_full(b.settings, songs=1500, increments=1)
        assert build(b.defs, instance).success and pending(b.defs, instance) == []
        generate_full(b.settings, songs=1500, increments=2)  # one more daily file lands
        ingested = builder.build(b.defs, instance, upto=INGEST)
        assert ingested.success and "raw/chart_rows" in keys(ingested.materialized)
        asked = keys(pending(b.defs, instance))
        assert asked == {"core/chart_entries", "core/songs", "core/song_labels", "ml/features", "ml/splits"}, asked
        result = build(b.defs, instance)
        assert result.success and keys(result.materialized) == asked
