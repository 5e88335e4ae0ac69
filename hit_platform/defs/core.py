"""Validated chart entries, songs and per-country labels (`core`), and the gates on them."""

import dagster as dg

from hit_platform.defs.gate_policy import gated
from hit_platform.steps import transforms
from hit_platform.defs.automation import WITH_ITS_ASSET
from hit_platform.defs.gate_checks import LAKE_GATE, Ctx, run_gate
from hit_platform.defs.raw import RAW_CHART_ROWS
from hit_platform.defs.lake_asset import build_lake_tables
from hit_platform.defs.resources import GatesResource, LakeResource
from hit_platform.steps import gates

CHART_ENTRIES = dg.AssetKey(["core", "chart_entries"])
SONGS = dg.AssetKey(["core", "songs"])
SONG_LABELS = dg.AssetKey(["core", "song_labels"])


@dg.asset(key=CHART_ENTRIES, deps=[RAW_CHART_ROWS], group_name="core", kinds={"duckdb"}, code_version="1")
@gated
def chart_entries(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Validated chart facts: which song was at which rank of which country's chart on which day
    (the 72 countries and the global chart, country ''), from rows that passed ingest and its gates."""
    [result] = build_lake_tables(context, lake, lambda con: {"core.chart_entries": {
        "chart_entries": transforms.build_chart_entries(con)}}, {CHART_ENTRIES: "core.chart_entries"})
    return result


@dg.asset(key=SONGS, deps=[RAW_CHART_ROWS], group_name="core", kinds={"duckdb"}, code_version="1")
@gated
def songs(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per song: its latest name, artists, album, explicit flag, duration and audio features,
    its first and last chart day, and whether its audio features are present (Spotify stopped serving
    them for new tracks in late 2024, so songs without them cannot be scored)."""
    def write_table(con):
        transforms.build_songs(con)
        return {"core.songs": {"songs_missing_audio_features": transforms.songs_missing_audio_features(con)}}

    [result] = build_lake_tables(context, lake, write_table, {SONGS: "core.songs"})
    return result


@dg.asset(key=SONG_LABELS, deps=[SONGS, CHART_ENTRIES], group_name="core", kinds={"duckdb"}, code_version="1")
@gated
def song_labels(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Per-country labels: one row per song and each of the 72 countries; `label` is true when the
    song reached that country's daily Top 50 at least once in the data's window (the global chart is
    not one of the 72). Also the days it charted there and its best rank."""
    def write_table(con):
        transforms.build_song_labels(con)
        low, mean, high = transforms.label_positive_rates(con)
        return {"core.song_labels": {"positive_rate_min": low, "positive_rate_mean": mean,
                                     "positive_rate_max": high}}

    [result] = build_lake_tables(context, lake, write_table, {SONG_LABELS: "core.song_labels"})
    return result


# -- gates --------------------------------------------------------------------------

@dg.asset_check(asset=SONGS, blocking=True, automation_condition=WITH_ITS_ASSET, metadata=LAKE_GATE)
def songs_audio_features(context: Ctx, lake: LakeResource, gates_config: GatesResource) -> dg.AssetCheckResult:
    """Share of songs without audio features (new tracks) within its threshold."""
    return run_gate(context, lake, gates.missing_audio_features_gate, gates_config.thresholds())


@dg.asset_check(asset=SONG_LABELS, blocking=True, automation_condition=WITH_ITS_ASSET, metadata=LAKE_GATE)
def labels_balance(context: Ctx, lake: LakeResource, gates_config: GatesResource) -> dg.AssetCheckResult:
    """Every country has positives and negatives, its positive rate within range."""
    return run_gate(context, lake, gates.label_balance_gate, gates_config.thresholds())


@dg.asset_check(asset=SONG_LABELS, blocking=True, automation_condition=WITH_ITS_ASSET, metadata=LAKE_GATE)
def labels_bias(context: Ctx, lake: LakeResource, gates_config: GatesResource) -> dg.AssetCheckResult:
    """Positive-rate disparity between explicit and clean songs, per country, within threshold."""
    return run_gate(context, lake, gates.bias_gate, gates_config.thresholds())
