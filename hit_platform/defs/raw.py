"""Ingest: landing files -> `raw.chart_rows` + `quarantine.chart_rows`, and the gates on raw rows."""

import dagster as dg

from hit_platform.defs.gate_policy import gated
from hit_platform.adapters.lake.ingest import alert_on, ingest_landing
from hit_platform.defs.automation import WITH_ITS_ASSET
from hit_platform.defs.gate_checks import LAKE_GATE, Ctx, run_gate
from hit_platform.defs.lake_asset import unrecorded_version
from hit_platform.defs.landing import LANDING
from hit_platform.defs.resources import GatesResource, LakeResource
from hit_platform.steps import gates
from hit_platform.steps.ingest import ingest_report, landed, landing_file, landing_files

RAW_CHART_ROWS = dg.AssetKey(["raw", "chart_rows"])
QUARANTINED_CHART_ROWS = dg.AssetKey(["quarantine", "chart_rows"])
INGESTED = (RAW_CHART_ROWS, QUARANTINED_CHART_ROWS)


class IngestConfig(dg.Config):
    """Which landing files to ingest: all waiting ones by default, or these names (plain files directly in
    the landing folder: no path, no '..', no link that leads outside it)."""

    files: list[str] = []
    materialize_unchanged: bool = False  # a forced rebuild (`build --all`) materializes even when nothing is new


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            RAW_CHART_ROWS, deps=[LANDING], group_name="raw", kinds={"duckdb"}, skippable=True,
            description=(
                "Chart rows as landed: one row per (spotify_id, country, snapshot_date) from every "
                "landing file, typed, with the source file, its sha256 and the row number. Each file "
                "is ingested once, in one transaction; `raw.landed_files` records every file."),
        ),
        dg.AssetSpec(
            QUARANTINED_CHART_ROWS, deps=[LANDING], group_name="quarantine", kinds={"duckdb"}, skippable=True,
            description=(
                "Rows refused at ingest, as text, with the reason (missing_value, wrong_type, "
                "out_of_range, unknown_country, exact_duplicate, key_duplicate), the column and "
                "the value. Per file: rows read = raw rows + quarantined rows."),
        ),
    ],
    code_version="1",
)
@gated
def ingest_chart_files(context: dg.AssetExecutionContext, config: IngestConfig, lake: LakeResource):
    """Ingest new files from `warehouse/landing/` (or the configured ones). A table is materialized
    only when rows were added to it (or it does not exist yet, or the lake holds rows of it that no run
    recorded): a run that lands nothing new makes nothing downstream stale and starts no retrain.
    Rejected files and quarantined rows raise alerts."""
    landing = lake.landing_dir
    try:
        paths = [landing_file(landing, name) for name in config.files] if config.files else landing_files(landing)
    except ValueError as exc:  # a name from the run config: it says what and where, in one line
        raise dg.Failure(f"files: {exc}") from None
    the_lake = lake.lake()
    results = ingest_landing(the_lake, paths)
    alert_on(the_lake, results, context.run.run_id)  # first: the snapshot recorded below is the lake as left
    with the_lake.connection(read_only=True) as con:
        snapshot, stored = the_lake.snapshot_id(con), landed(con)
        # rows a killed ingest committed and never reported: materialized now, so its gates judge them
        unrecorded = {k: unrecorded_version(context.instance, con, k, snapshot) for k in INGESTED}
    report = ingest_report(results, stored)
    for key, added, metadata in ((RAW_CHART_ROWS, report.added_raw,
                                  {**report.raw, "files": dg.MetadataValue.md(report.files_markdown)}),
                                 (QUARANTINED_CHART_ROWS, report.added_quarantined, report.quarantined)):
        first = context.instance.get_latest_materialization_event(key) is None
        if not (added or first) and unrecorded[key] is not None:
            context.log.warning(f"{key.to_user_string()}: lake snapshot {unrecorded[key]} wrote rows no run "
                                "recorded (an ingest killed after its commit): materialized, so its gates judge them")
        if stored.file_sha256s and (added or first or config.materialize_unchanged or unrecorded[key] is not None):
            yield dg.MaterializeResult(asset_key=key, data_version=dg.DataVersion(stored.data_version),
                                       metadata={"lake_snapshot_id": snapshot, **report.common, **metadata,
                                                 "rows_added": added})
        else:
            context.log.info(f"no new rows for {key.to_user_string()}: not materialized")


# -- raw/chart_rows ---------------------------------------------------------------

@dg.asset_check(asset=RAW_CHART_ROWS, blocking=True, automation_condition=WITH_ITS_ASSET, metadata=LAKE_GATE)
def raw_schema(context: Ctx, lake: LakeResource) -> dg.AssetCheckResult:
    """Columns and types of raw.chart_rows as the schema says; the pandera model on a sample."""
    return run_gate(context, lake, gates.schema_gate)


@dg.asset_check(asset=RAW_CHART_ROWS, blocking=True, automation_condition=WITH_ITS_ASSET, metadata=LAKE_GATE)
def raw_keys(context: Ctx, lake: LakeResource) -> dg.AssetCheckResult:
    """(snapshot_date, country, daily_rank) and (snapshot_date, country, spotify_id) unique; no duplicates."""
    return run_gate(context, lake, gates.keys_gate)


@dg.asset_check(asset=RAW_CHART_ROWS, blocking=True, automation_condition=WITH_ITS_ASSET, metadata=LAKE_GATE)
def raw_ranges(context: Ctx, lake: LakeResource) -> dg.AssetCheckResult:
    """Every numeric value within the schema's range."""
    return run_gate(context, lake, gates.ranges_gate)


@dg.asset_check(asset=RAW_CHART_ROWS, blocking=True, automation_condition=WITH_ITS_ASSET, metadata=LAKE_GATE)
def raw_missing_values(context: Ctx, lake: LakeResource, gates_config: GatesResource) -> dg.AssetCheckResult:
    """Missing-value rate of every column within its threshold."""
    return run_gate(context, lake, gates.missing_values_gate, gates_config.thresholds())


@dg.asset_check(asset=RAW_CHART_ROWS, blocking=True, automation_condition=WITH_ITS_ASSET, metadata=LAKE_GATE)
def raw_countries(context: Ctx, lake: LakeResource) -> dg.AssetCheckResult:
    """Only the 72 country codes and the global chart."""
    return run_gate(context, lake, gates.unknown_countries_gate)


@dg.asset_check(asset=RAW_CHART_ROWS, blocking=True, automation_condition=WITH_ITS_ASSET, metadata=LAKE_GATE)
def raw_chart_days(context: Ctx, lake: LakeResource, gates_config: GatesResource) -> dg.AssetCheckResult:
    """Chart days holding ranks 1..50 exactly once, but for a tolerated share."""
    return run_gate(context, lake, gates.chart_days_gate, gates_config.thresholds())


@dg.asset_check(asset=RAW_CHART_ROWS, blocking=False, automation_condition=WITH_ITS_ASSET, metadata=LAKE_GATE)
def raw_freshness(context: Ctx, lake: LakeResource, gates_config: GatesResource) -> dg.AssetCheckResult:
    """The newest chart day is recent (warns)."""
    return run_gate(context, lake, gates.freshness_gate, gates_config.thresholds(), warn=True)
