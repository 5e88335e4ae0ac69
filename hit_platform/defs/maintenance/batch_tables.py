"""The batch tables bounded: ml.batch_predictions and ml.batch_explanations keep the rows of the model versions
that still matter (the champion's, the challenger's, the most recent ones), and lose the others' in one lake
transaction, recorded in ml.batch_expired for `audit`."""

from datetime import datetime, timedelta, timezone

import dagster as dg

from hit_platform.adapters.tracking import CHALLENGER, CHAMPION
from hit_platform.defs.gate_checks import alert_on_failure
from hit_platform.defs.maintenance import GROUP
from hit_platform.defs.resources import LakeResource, MaintenanceResource, TrackingResource
from hit_platform.steps import batch_retention

BATCH_TABLES = dg.AssetKey(["maintenance", "batch_tables"])


def kept_versions(tracking: TrackingResource) -> dict[str, str]:
    """{model version: alias}: the champion's and the challenger's, whose rows are kept whatever their age."""
    tracker = tracking.tracker()
    return {info.version: alias for alias in (CHAMPION, CHALLENGER) if (info := tracker.alias_info(alias))}


def _bounds(maintenance: MaintenanceResource, now: datetime) -> tuple[int, datetime, datetime]:
    """(versions kept, rows of a version active before this may go, expired records before this are forgotten)."""
    policy = maintenance.policy()
    return (policy.batch_keep_versions, now - timedelta(days=policy.batch_keep_days),
            now - timedelta(days=policy.expired_ids_keep_days))


@dg.asset(key=BATCH_TABLES, group_name=GROUP, code_version="1", kinds={"duckdb", "mlflow"})
def batch_tables(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                 maintenance: MaintenanceResource) -> dg.MaterializeResult:
    """The rows of ml.batch_predictions and ml.batch_explanations of every model version past the bound
    deleted, both tables in one transaction: never the champion's or the challenger's, nor those of the
    HIT_MAINTENANCE_BATCH_KEEP_VERSIONS versions that predicted most recently, nor of a version that
    predicted within HIT_MAINTENANCE_BATCH_KEEP_DAYS. Each deleted batch (table, version, Dagster run, rows,
    when) is recorded in ml.batch_expired, so `hit-platform audit` of one of its ids says it expired and
    when; records older than HIT_MAINTENANCE_EXPIRED_IDS_KEEP_DAYS are forgotten. A kept version's own batches
    predicted before HIT_MAINTENANCE_BATCH_KEEP_DAYS go too (recorded the same way), except its latest batch,
    each song's first prediction by it and the batches a label-free estimate still realized again was made on."""
    now = datetime.now(timezone.utc)
    keep, before, forget = _bounds(maintenance, now)
    protected = kept_versions(tracking)
    policy = maintenance.policy()

    def expire(con):
        versions = batch_retention.versions_past_bound(con, set(protected), keep, before)
        return versions, batch_retention.expire_batches(con, versions, now, keep, policy.batch_keep_days, forget,
                                                        superseded_before=before)

    versions, done = lake.lake().write(expire, what="batch tables retention")
    context.log.info(f"batch tables: versions {versions or 'none'} expired ({done}); kept whatever their age: "
                     + (", ".join(f"{v} ({a})" for v, a in protected.items()) or "no champion or challenger"))
    return dg.MaterializeResult(metadata={
        **done, "versions": ", ".join(versions) or "none", "retention_applied_at": now.isoformat(),
        "protected": ", ".join(f"{v} ({a})" for v, a in protected.items()) or "none",
        "keep_versions": keep, "keep_days": policy.batch_keep_days})


def _applied_at(context: dg.AssetCheckExecutionContext) -> datetime:
    """The instant this run's maintenance/batch_tables applied the bound (a version whose last batch ages
    past it in the seconds before this check is not judged as kept); now when the check runs alone."""
    event = context.instance.get_latest_materialization_event(BATCH_TABLES)
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    if event is not None and event.run_id == context.run.run_id and "retention_applied_at" in meta:
        return datetime.fromisoformat(meta["retention_applied_at"].value)
    return datetime.now(timezone.utc)


@dg.asset_check(asset=BATCH_TABLES, description="Neither ml.batch_predictions nor ml.batch_explanations holds rows "
                                                "of a model version past HIT_MAINTENANCE_BATCH_KEEP_VERSIONS and "
                                                "HIT_MAINTENANCE_BATCH_KEEP_DAYS (other than the champion's or the "
                                                "challenger's), no kept version's batch older than the days that no "
                                                "reader needs, and no expired-batch record is older than its own.")
def batch_tables_bounded(context: dg.AssetCheckExecutionContext, lake: LakeResource, tracking: TrackingResource,
                         maintenance: MaintenanceResource) -> dg.AssetCheckResult:
    applied = _applied_at(context)
    keep, before, forget = _bounds(maintenance, applied)
    with lake.lake().connection(read_only=True) as con:
        over = batch_retention.rows_past_bound(con, set(kept_versions(tracking)), keep, before, forget,
                                               now=applied)
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=not any(over.values()), metadata={f"{k}_rows_past_retention": v for k, v in over.items()}),
        kind="maintenance")
