"""Sensors: new landing files start ingestion; failed runs become alerts."""

import json

import dagster as dg

from hit_platform.alerts import raise_alert
from hit_platform.defs.ingest import QUARANTINED_CHART_ROWS, RAW_CHART_ROWS
from hit_platform.defs.resources import LakeResource
from hit_platform.ingestion import file_sha256, landing_files

LANDING_SENSOR_INTERVAL_S = 15

ingest_job = dg.define_asset_job("ingest_job", selection=[RAW_CHART_ROWS, QUARANTINED_CHART_ROWS],
                                 description="Ingest the landing files named in the run config.")


@dg.sensor(job=ingest_job, minimum_interval_seconds=LANDING_SENSOR_INTERVAL_S,
           default_status=dg.DefaultSensorStatus.RUNNING)
def landing_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """One ingest run per new landing file content (run key = the file's sha256, so a file is never
    ingested twice, even if it lands again under another name). The cursor remembers each file's
    (size, mtime, sha256) so unchanged files are not hashed again."""
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
    if not requests:
        return dg.SkipReason(f"no new files in {lake.landing_dir}")
    return requests


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING, monitor_all_code_locations=False)
def run_failure_alerts(context: dg.RunFailureSensorContext, lake: LakeResource):
    """Every failed run becomes an alert in ops.alerts (what failed, in which run, when)."""
    run = context.dagster_run
    error = context.failure_event.message if context.failure_event else "run failed"
    raise_alert(lake.lake(), kind="run_failure", severity="error", what=f"run of {run.job_name} failed: {error}",
                where=run.job_name, run_id=run.run_id, alert_id=f"run_failure:{run.run_id}",
                details={"tags": dict(run.tags)})
