"""Sensors: new landing files start ingestion; drift alerts retrain; a challenger that shadowed enough
songs is judged; failed runs become alerts."""

import json
from datetime import datetime, timedelta, timezone

import dagster as dg

from hit_platform.adapters.alerts import list_alerts, raise_alert
from hit_platform.defs.ml.evaluation import CHAMPION, EVALUATION
from hit_platform.defs.lake_asset import unrecorded_version
from hit_platform.defs.ml.features import FEATURES
from hit_platform.defs.ml.shadow import BY_SENSOR, shadow_sensor
from hit_platform.defs.raw import QUARANTINED_CHART_ROWS, RAW_CHART_ROWS
from hit_platform.defs.ml.predictions import BATCH_PREDICTIONS
from hit_platform.defs.serving import DEPLOYMENT
from hit_platform.defs.ml.training import CANDIDATES
from hit_platform.defs.resources import LakeResource
from hit_platform.steps.ingest import file_sha256, landed, landing_files
from hit_platform.steps.ingest.transaction import already_landed
from hit_platform.settings import SensorSettings


ingest_job = dg.define_asset_job("ingest_job", selection=[RAW_CHART_ROWS, QUARANTINED_CHART_ROWS],
                                 description="Ingest the landing files named in the run config.")


def _in_the_lake(lake: LakeResource, shas: set[str]) -> set[str]:
    """The contents the lake already holds (ingest would skip them), so no run is started for them: a run
    that lands nothing leaves raw's checks planned and skipped, which holds its children's automation."""
    if not shas:
        return set()
    try:
        with lake.lake().connection(read_only=True) as con:
            return {sha for sha in shas if already_landed(con, sha)}
    except FileNotFoundError:  # no lake yet: nothing has landed
        return set()


def landing_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """One ingest run per new landing file content (run key = the file's sha256, so a file is never
    ingested twice, even if it lands again under another name, or was ingested by `hit-platform build`).
    The cursor remembers each file's (size, mtime, sha256) so unchanged files are not hashed again. With
    no new file, one ingest run when the lake holds raw rows no run recorded (tag RECONCILE_TAG)."""
    seen: dict = json.loads(context.cursor) if context.cursor else {}
    requests, known = [], {v[2] for v in seen.values()}
    for path in landing_files(lake.landing_dir):
        st = path.stat()
        entry = seen.get(path.name)
        if entry and entry[:2] == [st.st_size, st.st_mtime_ns]:
            continue
        sha = file_sha256(path)
        seen[path.name] = [st.st_size, st.st_mtime_ns, sha]
        if sha in known:
            continue
        known.add(sha)
        requests.append(dg.RunRequest(
            run_key=sha, tags={"landing_file": path.name, "file_sha256": sha},
            run_config={"ops": {"ingest_chart_files": {"config": {"files": [path.name]}}}}))
    context.update_cursor(json.dumps(seen))
    landed = _in_the_lake(lake, {r.tags["file_sha256"] for r in requests})
    requests = [r for r in requests if r.tags["file_sha256"] not in landed]
    if not requests and (version := _unrecorded_ingest(context.instance, lake)) is not None:
        # the lake holds raw rows no run recorded (an ingest killed between its commit and its report): ingest
        # again, which finds no new file, materializes raw as the lake holds it, and so its gates judge it
        return [dg.RunRequest(run_key=f"reconcile:{version}", tags={RECONCILE_TAG: str(version)},
                              run_config={"ops": {"ingest_chart_files": {"config": {"files": []}}}})]
    if not requests:
        return dg.SkipReason(f"no new files in {lake.landing_dir}")
    return requests


RECONCILE_TAG = "hit/reconcile"  # a landing sensor's run for rows the lake holds and Dagster never recorded


INGEST_UNDER_WAY_S = 600  # an ingest run started this recently may still report what it committed


def _unrecorded_ingest(instance: dg.DagsterInstance, lake: LakeResource) -> int | None:
    """The lake snapshot that wrote raw rows no materialization of raw/chart_rows recorded, or None (also
    while an ingest run that may yet record them is under way; one killed long ago is no longer waited for)."""
    since = datetime.now(timezone.utc) - timedelta(seconds=INGEST_UNDER_WAY_S)
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=ACTIVE, created_after=since), limit=50):
        selection = record.dagster_run.asset_selection
        if selection is None or RAW_CHART_ROWS in selection:
            return None
    try:
        with lake.lake().connection(read_only=True) as con:
            if not landed(con).file_sha256s:  # tables made, no file stored yet: nothing to judge
                return None
            return unrecorded_version(instance, con, RAW_CHART_ROWS, lake.lake().snapshot_id(con))
    except FileNotFoundError:  # no lake yet: nothing has landed
        return None


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING, monitor_all_code_locations=False)
def run_failure_alerts(context: dg.RunFailureSensorContext, lake: LakeResource):
    """Every failed run becomes an alert in ops.alerts (what failed, in which run, when)."""
    run = context.dagster_run
    error = context.failure_event.message if context.failure_event else "run failed"
    raise_alert(lake.lake(), kind="run_failure", severity="error", what=f"run of {run.job_name} failed: {error}",
                where=run.job_name, run_id=run.run_id, alert_id=f"run_failure:{run.run_id}",
                details={"tags": dict(run.tags)})


RETRAIN = [CANDIDATES, EVALUATION, CHAMPION, BATCH_PREDICTIONS, DEPLOYMENT]
ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]


def _training_active(instance: dg.DagsterInstance) -> bool:
    """Is a run that (re)trains the candidates queued or running?"""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE), limit=50):
        if run.asset_selection is None or CANDIDATES in run.asset_selection:
            return True
    return False


RETRAIN_ON = ("drift", "performance_estimate")  # the alert kinds that retrain


def drift_retrain_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """A drift alert (ops.alerts, kind `drift`: the features' drift gate or a drift monitor), or a
    performance estimate alert (kind `performance_estimate`: too many countries estimated well below
    their test AUC), retrains:
    candidates -> evaluation -> promotion -> batch predictions -> serving. At most once per data
    version (run key = `drift:<lake snapshot of ml.features>`): retraining again on the same data
    gives the same model, so a drift that persists does not retrain in a loop. Skipped when the
    candidates were rebuilt after the alert anyway (new data retrains by itself); waits while a
    training run is under way."""
    since = datetime.fromisoformat(context.cursor) if context.cursor else None
    try:
        alerts = [a for a in list_alerts(lake.lake(), limit=100, kind=RETRAIN_ON)
                  if since is None or a["raised_at"] > since]
    except FileNotFoundError:  # a fresh deployment: nothing has landed, so nothing can have drifted
        return dg.SkipReason("no lake yet: nothing has been ingested")
    if not alerts:
        return dg.SkipReason(f"no new {' or '.join(RETRAIN_ON)} alerts")
    if _training_active(context.instance):
        return dg.SkipReason(f"{len(alerts)} drift alert(s) wait: a training run is under way")
    newest = max(alerts, key=lambda a: a["raised_at"])
    context.update_cursor(newest["raised_at"].isoformat())
    latest = context.instance.get_latest_materialization_event(CANDIDATES)
    trained_at = datetime.fromtimestamp(latest.timestamp, timezone.utc) if latest else None
    if trained_at is not None and trained_at > newest["raised_at"]:
        return dg.SkipReason(f"candidates were retrained at {trained_at:%Y-%m-%d %H:%M:%S} UTC, after "
                             f"the drift alert {newest['alert_id']}")
    features = context.instance.get_latest_materialization_event(FEATURES)
    if features is None:
        return dg.SkipReason("no features to retrain on yet")
    meta = features.asset_materialization.metadata
    data_version = meta["lake_snapshot_id"].value if "lake_snapshot_id" in meta else features.run_id
    return dg.RunRequest(run_key=f"drift:{data_version}", asset_selection=RETRAIN,
                         tags={"trigger": f"{newest['kind']}_alert", "alert_id": newest["alert_id"][:200],
                               "features_snapshot": str(data_version)})


def build_sensors(intervals: SensorSettings) -> list[dg.SensorDefinition]:
    """The sensors, at the intervals of the settings' `sensors` section (built when the Definitions are)."""
    running = dg.DefaultSensorStatus.RUNNING
    return [
        dg.sensor(job=ingest_job, minimum_interval_seconds=intervals.landing_sensor_interval_s,
                  default_status=running)(landing_sensor),
        dg.sensor(minimum_interval_seconds=intervals.drift_sensor_interval_s, default_status=running,
                  asset_selection=RETRAIN)(drift_retrain_sensor),
        dg.sensor(minimum_interval_seconds=intervals.shadow_sensor_interval_s, default_status=running,
                  asset_selection=sorted(BY_SENSOR, key=str))(shadow_sensor),
        run_failure_alerts,
        dg.AutomationConditionSensorDefinition(
            "automation", target=dg.AssetSelection.all(), minimum_interval_seconds=intervals.automation_interval_s,
            default_status=running,
            description="Evaluates every asset's automation condition (new data, code changes, monitor schedule)."),
    ]
