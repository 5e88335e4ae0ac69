"""The history kept outside the lake, bounded: Dagster's runs and ticks (through the instance's public API),
MLflow's runs of candidates that lost (with their artifacts, by `mlflow gc`), the serving journal's
unreadable/ folder and the reports."""

from datetime import datetime, timedelta, timezone

import dagster as dg

from hit_platform.adapters import retention
from hit_platform.defs.gate_checks import alert_on_failure
from hit_platform.defs.maintenance import GROUP
from hit_platform.defs.resources import LakeResource, MaintenanceResource, ServingResource, TrackingResource
from hit_platform.private_apis import event_log_files_of_deleted_runs
from hit_platform.serving.inference_log.committer import UNREADABLE

RUN_HISTORY = dg.AssetKey(["maintenance", "run_history"])
MLFLOW_RUNS = dg.AssetKey(["maintenance", "mlflow_runs"])
WAREHOUSE_FILES = dg.AssetKey(["maintenance", "warehouse_files"])
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
PAGE = 500


def _cutoff(days: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(days=days)


def kept_runs(instance: dg.DagsterInstance) -> set[str]:
    """Runs that hold an asset's latest materialization or observation: deleting one would delete the event
    the automation, the gates and the promotions read (a check's latest evaluation: `deletable_runs`)."""
    keys = list(instance.get_asset_keys())
    kept = {e.run_id for e in instance.get_latest_materialization_events(keys).values() if e is not None}
    for key in keys:
        for record in instance.fetch_observations(key, limit=1).records:
            kept.add(record.run_id)
    return kept


def deletable_runs(instance: dg.DagsterInstance, before: datetime, check_keys=(),
                   but_maintenance: bool = False) -> list[str]:
    """Finished runs created before `before` that no latest event needs (`but_maintenance`: other than the
    maintenance group's own runs, whose latest events a maintenance run itself supersedes: the next one
    deletes them)."""
    kept = kept_runs(instance)
    for check_key in check_keys:
        latest = instance.get_latest_asset_check_evaluation_record(check_key)
        if latest is not None:
            kept.add(latest.run_id)
    out, cursor = [], None
    while True:
        records = instance.get_run_records(dg.RunsFilter(statuses=FINISHED, created_before=before), limit=PAGE,
                                           cursor=cursor)
        out += [r.dagster_run.run_id for r in records if r.dagster_run.run_id not in kept
                and not (but_maintenance and _maintenance_only(r.dagster_run))]
        if len(records) < PAGE:
            return out
        cursor = records[-1].dagster_run.run_id


def _maintenance_only(run: dg.DagsterRun) -> bool:
    keys = [*(run.asset_selection or ()), *(c.asset_key for c in run.asset_check_selection or ())]
    return run.job_name == "maintenance_job" or (bool(keys) and all(k.path[0] == GROUP for k in keys))


def instigators(instance: dg.DagsterInstance) -> list:
    """The sensors and schedules this instance keeps ticks of (none without schedule storage: an ephemeral one)."""
    return list(instance.all_instigator_state()) if instance.schedule_storage is not None else []


def old_ticks(instance: dg.DagsterInstance, before: datetime) -> int:
    """Sensors and schedules with a tick before `before` (0 once purged)."""
    edge = before.timestamp()
    return sum(1 for s in instigators(instance)
               if instance.get_ticks(s.instigator_origin_id, s.selector_id, before=edge, limit=1))


def _check_keys() -> list[dg.AssetCheckKey]:
    """Every check of the platform (those a run of any of its jobs may have evaluated)."""
    from hit_platform.defs import asset_modules  # at run time: the modules import this one

    return [key for checks in dg.load_asset_checks_from_modules(asset_modules()) for key in checks.check_keys]


@dg.asset(key=RUN_HISTORY, group_name=GROUP, code_version="1", kinds={"dagster"})
def run_history(context: dg.AssetExecutionContext, maintenance: MaintenanceResource) -> dg.MaterializeResult:
    """Dagster runs finished more than HIT_MAINTENANCE_RUNS_KEEP_DAYS ago deleted with their event logs
    (`DagsterInstance.delete_run`, then the SQLite storage's file it leaves per run), except a run holding an asset's latest materialization or observation or
    a check's latest evaluation; sensor and schedule ticks older than that purged."""
    instance, before = context.instance, _cutoff(maintenance.policy().runs_keep_days)
    runs = deletable_runs(instance, before, _check_keys())
    for run_id in runs:
        instance.delete_run(run_id)
    leftovers = event_log_files_of_deleted_runs(instance)  # delete_run leaves a SQLite storage's file
    for path in leftovers:
        path.unlink(missing_ok=True)
    states = instigators(instance)
    for s in states:
        instance.purge_ticks(s.instigator_origin_id, s.selector_id, before=before.timestamp())
    context.log.info(f"run history: {len(runs)} runs deleted, ticks of {len(states)} sensors and schedules "
                     f"purged before {before:%Y-%m-%d %H:%M} UTC")
    return dg.MaterializeResult(metadata={"runs_deleted": len(runs), "event_log_files_deleted": len(leftovers),
                                          "ticks_purged_before": before.isoformat(),
                                          "instigators": len(states)})


@dg.asset_check(asset=RUN_HISTORY, description="No finished Dagster run (that no latest event needs, other than the "
                                               "maintenance job's own) nor tick is older than "
                                               "HIT_MAINTENANCE_RUNS_KEEP_DAYS, and no event log file of a "
                                               "deleted run is left.")
def run_history_bounded(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                        maintenance: MaintenanceResource) -> dg.AssetCheckResult:
    before = _cutoff(maintenance.policy().runs_keep_days)
    runs = deletable_runs(context.instance, before, _check_keys(), but_maintenance=True)
    ticks = old_ticks(context.instance, before)
    leftovers = event_log_files_of_deleted_runs(context.instance)
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=not runs and not ticks and not leftovers,
        metadata={"runs_past_retention": len(runs), "instigators_with_ticks_past_retention": ticks,
                  "event_log_files_of_deleted_runs": len(leftovers)}), kind="maintenance")


@dg.asset(key=MLFLOW_RUNS, group_name=GROUP, code_version="1", kinds={"mlflow"})
def mlflow_runs(context: dg.AssetExecutionContext, tracking: TrackingResource,
                maintenance: MaintenanceResource) -> dg.MaterializeResult:
    """MLflow runs older than HIT_MAINTENANCE_MLFLOW_KEEP_DAYS that no registered model version came from (the
    candidates that lost a training) deleted with the models they logged, then purged with their artifacts
    (`mlflow gc`). A registered version's run, and so its lineage and `rebuild`, are never touched."""
    tracker = tracking.tracker()
    runs = retention.abandoned_runs(tracker, maintenance.policy().mlflow_keep_days, datetime.now(timezone.utc))
    done = retention.sweep_mlflow(tracker, runs)
    context.log.info(f"MLflow: {done.runs_deleted} runs and {done.logged_models_deleted} logged models deleted "
                     f"and purged")
    return dg.MaterializeResult(metadata={"runs_deleted": done.runs_deleted,
                                          "logged_models_deleted": done.logged_models_deleted, "purged": done.purged})


@dg.asset_check(asset=MLFLOW_RUNS, description="No MLflow run of a losing candidate is older than "
                                               "HIT_MAINTENANCE_MLFLOW_KEEP_DAYS, and no deleted run waits for gc.")
def mlflow_runs_bounded(context: dg.AssetCheckExecutionContext, lake: LakeResource, tracking: TrackingResource,
                        maintenance: MaintenanceResource) -> dg.AssetCheckResult:
    tracker = tracking.tracker()
    old = retention.abandoned_runs(tracker, maintenance.policy().mlflow_keep_days, datetime.now(timezone.utc))
    waiting = retention.deleted_runs(tracker)
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=not old and not waiting, metadata={"runs_past_retention": len(old), "deleted_not_purged": len(waiting)}),
        kind="maintenance")


def _folders(lake: LakeResource, serving: ServingResource):
    settings = lake.settings()
    return [serving.config().journal(settings) / UNREADABLE, settings.warehouse / "reports"]


@dg.asset(key=WAREHOUSE_FILES, group_name=GROUP, code_version="1")
def warehouse_files(context: dg.AssetExecutionContext, lake: LakeResource, serving: ServingResource,
                    maintenance: MaintenanceResource) -> dg.MaterializeResult:
    """Files older than HIT_MAINTENANCE_FILES_KEEP_DAYS deleted from the serving journal's unreadable/ folder
    (damaged journal files kept for someone to look at; each has its ops.alerts row) and from
    warehouse/reports/ (the dashboard page is written again by each build); landing files whose content was
    ingested more than HIT_MAINTENANCE_LANDING_KEEP_DAYS ago deleted from the landing folder."""
    keep = maintenance.policy().files_keep_days
    gone = {str(folder): len(retention.delete_old_files(folder, keep)) for folder in _folders(lake, serving)}
    landed = _landed(lake, maintenance)
    for path in landed:
        path.unlink(missing_ok=True)
    gone[str(lake.landing_dir)] = len(landed)
    context.log.info(f"warehouse files deleted: {gone}")
    return dg.MaterializeResult(metadata={"files_deleted": sum(gone.values()), **gone})


def _landed(lake: LakeResource, maintenance: MaintenanceResource) -> list:
    """Landing files the lake has held past HIT_MAINTENANCE_LANDING_KEEP_DAYS (none before the first ingest)."""
    with lake.lake().reading() as con:
        if con is None:
            return []
        return retention.ingested_landing_files(con, lake.landing_dir, maintenance.policy().landing_keep_days,
                                                datetime.now(timezone.utc))


@dg.asset_check(asset=WAREHOUSE_FILES, description="No file in the journal's unreadable/ folder or in reports/ "
                                                   "is older than HIT_MAINTENANCE_FILES_KEEP_DAYS, and no landing "
                                                   "file was ingested before HIT_MAINTENANCE_LANDING_KEEP_DAYS.")
def warehouse_files_bounded(context: dg.AssetCheckExecutionContext, lake: LakeResource, serving: ServingResource,
                            maintenance: MaintenanceResource) -> dg.AssetCheckResult:
    keep = maintenance.policy().files_keep_days
    old = {str(folder): len(retention.old_files(folder, keep)) for folder in _folders(lake, serving)}
    old[str(lake.landing_dir)] = len(_landed(lake, maintenance))
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=not any(old.values()), metadata={f"past_retention: {k}": v for k, v in old.items()}),
        kind="maintenance")
