"""Quality gates as Dagster asset checks, grouped by the asset they guard.

Blocking checks (`blocking=True`) stop everything downstream in the same run
when they fail. Freshness and drift warn instead: stale or drifting data is a
reason to look (and, with automation, to retrain), not to stop.
"""

from collections.abc import Callable

import dagster as dg

from hit_platform.defs.automation import WITH_ITS_ASSET
from hit_platform.steps import gates
from hit_platform.adapters.alerts import raise_alert
from hit_platform.defs.ml.features import FEATURES, SPLITS_KEY
from hit_platform.defs.raw import RAW_CHART_ROWS
from hit_platform.defs.resources import GatesResource, LakeResource
from hit_platform.defs.core import SONG_LABELS, SONGS

Ctx = dg.AssetCheckExecutionContext


def _plain(metadata) -> dict:
    """The numbers and short strings of a check's metadata (tables stay in the UI)."""
    out = {}
    for k, v in (metadata or {}).items():
        v = v.value if isinstance(v, dg.MetadataValue) else v
        if isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) < 300):
            out[k] = v
    return out


def alert_on_failure(context: Ctx, lake: LakeResource, result: dg.AssetCheckResult,
                     kind: str = "gate_failure") -> dg.AssetCheckResult:
    """A failing check lands in ops.alerts (what, which check, which run), then is returned as is."""
    if not result.passed:
        key = context.check_specs[0].key if context.check_specs else None
        where = key.to_user_string() if key else context.op_def.name
        warn = result.severity == dg.AssetCheckSeverity.WARN
        raise_alert(lake.lake(), kind=kind, severity="warning" if warn else "error", where=where,
                    what=result.description or "check failed", run_id=context.run.run_id,
                    alert_id=f"{kind}:{where}:{context.run.run_id}",
                    details=_plain(result.metadata))
    return result


def _run(context: Ctx, lake: LakeResource, gate: Callable, *args, warn: bool = False,
         kind: str = "gate_failure") -> dg.AssetCheckResult:
    the_lake = lake.lake()
    with the_lake.connection(read_only=True) as con:
        result = gate(con, *args)
        snapshot = the_lake.snapshot_id(con)
    severity = dg.AssetCheckSeverity.WARN if warn else dg.AssetCheckSeverity.ERROR
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=result.passed, description=result.description, severity=severity,
        metadata={**result.metadata, "lake_snapshot_id": snapshot}), kind)


# -- raw/chart_rows ---------------------------------------------------------------

@dg.asset_check(asset=RAW_CHART_ROWS, blocking=True, automation_condition=WITH_ITS_ASSET)
def raw_schema(context: Ctx, lake: LakeResource) -> dg.AssetCheckResult:
    """Columns and types of raw.chart_rows as the schema says; the pandera model on a sample."""
    return _run(context, lake, gates.schema_gate)


@dg.asset_check(asset=RAW_CHART_ROWS, blocking=True, automation_condition=WITH_ITS_ASSET)
def raw_keys(context: Ctx, lake: LakeResource) -> dg.AssetCheckResult:
    """(snapshot_date, country, daily_rank) and (snapshot_date, country, spotify_id) unique; no duplicates."""
    return _run(context, lake, gates.keys_gate)


@dg.asset_check(asset=RAW_CHART_ROWS, blocking=True, automation_condition=WITH_ITS_ASSET)
def raw_ranges(context: Ctx, lake: LakeResource) -> dg.AssetCheckResult:
    """Every numeric value within the schema's range."""
    return _run(context, lake, gates.ranges_gate)


@dg.asset_check(asset=RAW_CHART_ROWS, blocking=True, automation_condition=WITH_ITS_ASSET)
def raw_missing_values(context: Ctx, lake: LakeResource, gates_config: GatesResource) -> dg.AssetCheckResult:
    """Missing-value rate of every column within its threshold."""
    return _run(context, lake, gates.missing_values_gate, gates_config.thresholds())


@dg.asset_check(asset=RAW_CHART_ROWS, blocking=True, automation_condition=WITH_ITS_ASSET)
def raw_countries(context: Ctx, lake: LakeResource) -> dg.AssetCheckResult:
    """Only the 72 country codes and the global chart."""
    return _run(context, lake, gates.unknown_countries_gate)


@dg.asset_check(asset=RAW_CHART_ROWS, blocking=True, automation_condition=WITH_ITS_ASSET)
def raw_chart_days(context: Ctx, lake: LakeResource, gates_config: GatesResource) -> dg.AssetCheckResult:
    """Chart days holding ranks 1..50 exactly once, but for a tolerated share."""
    return _run(context, lake, gates.chart_days_gate, gates_config.thresholds())


@dg.asset_check(asset=RAW_CHART_ROWS, blocking=False, automation_condition=WITH_ITS_ASSET)
def raw_freshness(context: Ctx, lake: LakeResource, gates_config: GatesResource) -> dg.AssetCheckResult:
    """The newest chart day is recent (warns)."""
    return _run(context, lake, gates.freshness_gate, gates_config.thresholds(), warn=True)


# -- core -------------------------------------------------------------------------

@dg.asset_check(asset=SONGS, blocking=True, automation_condition=WITH_ITS_ASSET)
def songs_audio_features(context: Ctx, lake: LakeResource, gates_config: GatesResource) -> dg.AssetCheckResult:
    """Share of songs without audio features (new tracks) within its threshold."""
    return _run(context, lake, gates.missing_audio_features_gate, gates_config.thresholds())


@dg.asset_check(asset=SONG_LABELS, blocking=True, automation_condition=WITH_ITS_ASSET)
def labels_balance(context: Ctx, lake: LakeResource, gates_config: GatesResource) -> dg.AssetCheckResult:
    """Every country has positives and negatives, its positive rate within range."""
    return _run(context, lake, gates.label_balance_gate, gates_config.thresholds())


@dg.asset_check(asset=SONG_LABELS, blocking=True, automation_condition=WITH_ITS_ASSET)
def labels_bias(context: Ctx, lake: LakeResource, gates_config: GatesResource) -> dg.AssetCheckResult:
    """Positive-rate disparity between explicit and clean songs, per country, within threshold."""
    return _run(context, lake, gates.bias_gate, gates_config.thresholds())


# -- ml -----------------------------------------------------------------------------

@dg.asset_check(asset=SPLITS_KEY, blocking=True, automation_condition=WITH_ITS_ASSET)
def splits_sound(context: Ctx, lake: LakeResource, gates_config: GatesResource) -> dg.AssetCheckResult:
    """No leakage between splits, shares near 70/15/15, positives of every country in every split."""
    return _run(context, lake, gates.splits_gate, gates_config.thresholds())


@dg.asset_check(asset=FEATURES, blocking=False, automation_condition=WITH_ITS_ASSET, additional_deps=[])
def features_drift(context: Ctx, lake: LakeResource,
                   gates_config: GatesResource) -> dg.AssetCheckResult:
    """PSI of every feature against the previous data version, read by DuckLake time travel (warns)."""
    records = context.instance.fetch_materializations(FEATURES, limit=2).records
    previous = None
    if len(records) == 2:
        meta = records[1].asset_materialization.metadata
        previous = meta["lake_snapshot_id"].value if "lake_snapshot_id" in meta else None
    return _run(context, lake, gates.drift_gate, gates_config.thresholds(), previous, warn=True, kind="drift")
