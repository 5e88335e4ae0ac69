"""The lake's upkeep as assets: the serving logs' retention, then compaction, snapshot expiry and the deletion
of what no kept snapshot references, in that order (each deletion leaves less to merge and to keep)."""

from datetime import datetime, timezone

import dagster as dg

from hit_platform.adapters.lake import maintenance as upkeep
from hit_platform.adapters.retention import needed_snapshots
from hit_platform.defs.gate_checks import alert_on_failure
from hit_platform.defs.maintenance import GROUP
from hit_platform.defs.maintenance.batch_tables import BATCH_TABLES
from hit_platform.defs.resources import (LakeResource, MaintenanceResource, MonitorsResource, TrackingResource,
                                         TrainingResource)
from hit_platform.steps import log_retention

SERVING_LOGS = dg.AssetKey(["maintenance", "serving_logs"])
LAKE_FILES = dg.AssetKey(["maintenance", "lake_files"])
LAKE_SNAPSHOTS = dg.AssetKey(["maintenance", "lake_snapshots"])
UNREFERENCED_FILES = dg.AssetKey(["maintenance", "unreferenced_files"])
SNAPSHOT_METADATA = ("lake_snapshot_id", "lake_snapshot_read")  # what an asset records of the snapshots it used


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _log_keep_days(maintenance: MaintenanceResource, monitors: MonitorsResource) -> float:
    """The log's raw retention, never shorter than the window the monitors read raw rows from."""
    return max(maintenance.policy().log_keep_days, monitors.thresholds().window_hours / 24)


@dg.asset(key=SERVING_LOGS, group_name=GROUP, code_version="1", kinds={"duckdb"})
def serving_logs(context: dg.AssetExecutionContext, lake: LakeResource, maintenance: MaintenanceResource,
                 monitors: MonitorsResource) -> dg.MaterializeResult:
    """Raw rows of ops.inference_log and ops.shadow_log older than HIT_MAINTENANCE_LOG_KEEP_DAYS (whole UTC
    days) folded into the daily aggregates the dashboard and the monitors read (ops.inference_log_daily,
    ops.shadow_log_daily, ops.inference_log_first_served), their request ids kept in
    ops.inference_log_expired for `audit`, and deleted."""
    policy, now = maintenance.policy(), _now()
    keep = _log_keep_days(maintenance, monitors)
    before = log_retention.cutoff(now, keep)
    the_lake = lake.lake()
    done = the_lake.write(lambda c: log_retention.expire_logs(c, before, keep, now, policy.expired_ids_keep_days),
                          what="serving log retention")
    context.log.info(f"serving logs: rows received before {before:%Y-%m-%d} folded and deleted: {done}")
    return dg.MaterializeResult(metadata={**done, "expired_before": before.isoformat(), "keep_days": keep})


@dg.asset_check(asset=SERVING_LOGS, description="No raw serving-log row is older than the retention, and no "
                                                "expired request id older than its own.")
def serving_logs_bounded(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                         maintenance: MaintenanceResource, monitors: MonitorsResource) -> dg.AssetCheckResult:
    now = _now()
    with lake.lake().connection(read_only=True) as con:
        over = log_retention.raw_rows_older_than(con, log_retention.cutoff(now, _log_keep_days(maintenance, monitors)),
                                                 log_retention.cutoff(now, maintenance.policy().expired_ids_keep_days))
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=not any(over.values()), metadata={f"{k}_rows_past_retention": v for k, v in over.items()}),
        kind="maintenance")


@dg.asset(key=LAKE_FILES, deps=[SERVING_LOGS, BATCH_TABLES], group_name=GROUP, code_version="1", kinds={"duckdb"})
def lake_files(context: dg.AssetExecutionContext, lake: LakeResource,
               maintenance: MaintenanceResource) -> dg.MaterializeResult:
    """Small files compacted: the rows small commits left inlined in the catalog flushed into Parquet, files
    mostly deleted rewritten, small adjacent files merged (DuckLake's own functions; time travel unchanged).
    Also records in the catalog that small commits to `ops` are inlined (HIT_MAINTENANCE_LOG_INLINE_ROWS)."""
    the_lake = lake.lake()
    with the_lake.connection() as con:
        before = upkeep.footprint(the_lake, con)
        upkeep.inline_small_commits(the_lake, con, maintenance.policy().log_inline_rows)
        done = upkeep.compact(the_lake, con)
        after = upkeep.footprint(the_lake, con)
    context.log.info(f"lake files: {before.data_files} -> {after.data_files} data files, {before.inlined_rows} "
                     f"inlined rows flushed to {after.inlined_rows}: {done}")
    return dg.MaterializeResult(metadata={**done, **{f"before_{k}": v for k, v in before.metadata().items()},
                                          **after.metadata()})


@dg.asset_check(asset=LAKE_FILES, description="No lake table has more data files than "
                                              "HIT_MAINTENANCE_MAX_FILES_PER_TABLE, nor more rows inlined in the "
                                              "catalog than HIT_MAINTENANCE_MAX_INLINED_ROWS.")
def lake_files_bounded(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                       maintenance: MaintenanceResource) -> dg.AssetCheckResult:
    policy, the_lake = maintenance.policy(), lake.lake()
    with the_lake.connection(read_only=True) as con:
        now = upkeep.footprint(the_lake, con)
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=now.most_files <= policy.max_files_per_table and now.inlined_rows <= policy.max_inlined_rows,
        metadata={**now.metadata(), "max_files_per_table": policy.max_files_per_table,
                  "max_inlined_rows": policy.max_inlined_rows}), kind="maintenance")


def protected_snapshots(instance: dg.DagsterInstance, tracking: TrackingResource,
                        training: TrainingResource) -> dict[int, str]:
    """{snapshot: why kept}: every registered model version's training snapshot (the champion's and the
    challenger's among them), the pinned training snapshot, and the snapshots each asset's latest
    materialization read or wrote (what the next gate, drift check or shadow comparison reads again)."""
    needed = needed_snapshots(tracking.tracker(), training.snapshot)
    keys = list(instance.get_asset_keys())
    for key, event in instance.get_latest_materialization_events(keys).items():
        meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
        for name in SNAPSHOT_METADATA:
            if name in meta and isinstance(meta[name].value, int):
                needed.setdefault(int(meta[name].value), f"latest materialization of {key.to_user_string()}")
    return needed


def _expirable(instance: dg.DagsterInstance, lake: LakeResource, tracking: TrackingResource,
               training: TrainingResource, maintenance: MaintenanceResource, con,
               now: datetime) -> tuple[list[int], dict[int, str]]:
    protected = protected_snapshots(instance, tracking, training)
    return (upkeep.expirable(lake.lake(), con, maintenance.policy().keep_snapshots_days, set(protected), now=now),
            protected)


def _expired_at(context: dg.AssetCheckExecutionContext) -> datetime:
    """The instant the retention was applied by this run's ml/lake_snapshots (its cutoff = that - the
    retention), so a snapshot that ages past the retention in the seconds between the expiry and this check
    (the previous run's own, created a retention ago at the same minute) is not judged as kept; now when the
    check runs without its asset."""
    event = context.instance.get_latest_materialization_event(LAKE_SNAPSHOTS)
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    if event is not None and event.run_id == context.run.run_id and "retention_applied_at" in meta:
        return datetime.fromisoformat(meta["retention_applied_at"].value)
    return datetime.now(timezone.utc)


@dg.asset(key=LAKE_SNAPSHOTS, deps=[LAKE_FILES], group_name=GROUP, code_version="1", kinds={"duckdb", "mlflow"})
def lake_snapshots(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                   training: TrainingResource, maintenance: MaintenanceResource) -> dg.MaterializeResult:
    """Lake snapshots older than HIT_LAKE_KEEP_SNAPSHOTS_DAYS expired, one by one: never one a registered
    model version was trained on (so `hit-platform rebuild --model-version V` keeps working for every version
    in the registry), the champion's, the challenger's, the pinned HIT_TRAIN_SNAPSHOT, nor one an asset's
    latest materialization read or wrote. Those stay readable by time travel."""
    the_lake = lake.lake()
    applied_at = datetime.now(timezone.utc)
    with the_lake.connection() as con:
        versions, protected = _expirable(context.instance, lake, tracking, training, maintenance, con, applied_at)
        expired = upkeep.expire(the_lake, con, versions)
        kept = upkeep.footprint(the_lake, con)
    old = sorted(s for s in protected if s not in versions)
    context.log.info(f"lake snapshots: {expired} expired, {kept.snapshots} kept; protected: "
                     + ", ".join(f"{s} ({protected[s]})" for s in old[:20]))
    return dg.MaterializeResult(metadata={
        "snapshots_expired": expired, "snapshots_kept": kept.snapshots, "retention_applied_at": applied_at.isoformat(),
        "protected": dg.MetadataValue.md("\n".join(f"- {s}: {protected[s]}" for s in old) or "none"),
        "oldest_snapshot_at": kept.metadata().get("oldest_snapshot_at", "")})


@dg.asset_check(asset=LAKE_SNAPSHOTS, description="No snapshot older than HIT_LAKE_KEEP_SNAPSHOTS_DAYS is kept "
                                                  "unless something needs it, and every snapshot a registered "
                                                  "model version needs is still readable.")
def lake_snapshots_bounded(context: dg.AssetCheckExecutionContext, lake: LakeResource, tracking: TrackingResource,
                           training: TrainingResource, maintenance: MaintenanceResource) -> dg.AssetCheckResult:
    the_lake = lake.lake()
    with the_lake.connection(read_only=True) as con:
        over, protected = _expirable(context.instance, lake, tracking, training, maintenance, con,
                                     _expired_at(context))
        lost = {s: why for s, why in needed_snapshots(tracking.tracker(), training.snapshot).items()
                if not upkeep.readable(con, the_lake.alias, s)}
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=not over and not lost,
        metadata={"snapshots_past_retention": len(over), "protected": len(protected),
                  "needed_but_expired": "; ".join(f"{s} ({why})" for s, why in lost.items()) or "none"}),
        kind="maintenance")


@dg.asset(key=UNREFERENCED_FILES, deps=[LAKE_SNAPSHOTS], group_name=GROUP, code_version="1", kinds={"duckdb"})
def unreferenced_files(context: dg.AssetExecutionContext, lake: LakeResource,
                       maintenance: MaintenanceResource) -> dg.MaterializeResult:
    """Data files no kept snapshot references (expired, merged, flushed: ducklake_cleanup_old_files) deleted
    once they waited HIT_MAINTENANCE_CLEANUP_GRACE_S, and orphans a writer killed mid-commit left."""
    the_lake = lake.lake()
    with the_lake.connection() as con:
        done = upkeep.delete_unreferenced(the_lake, con, maintenance.policy().cleanup_grace_s)
        after = upkeep.footprint(the_lake, con)
    context.log.info(f"unreferenced files: {done}; the lake now holds {after.data_files} data files")
    return dg.MaterializeResult(metadata={**done, **after.metadata()})


@dg.asset_check(asset=UNREFERENCED_FILES, description="No file has waited for deletion longer than "
                                                      "HIT_MAINTENANCE_CLEANUP_GRACE_S.")
def unreferenced_files_bounded(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                               maintenance: MaintenanceResource) -> dg.AssetCheckResult:
    the_lake, grace = lake.lake(), maintenance.policy().cleanup_grace_s
    with the_lake.connection(read_only=True) as con:
        waiting = upkeep.waiting_past(the_lake, con, grace)
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=waiting == 0, metadata={"files_waiting_past_grace": waiting, "grace_s": grace}), kind="maintenance")
