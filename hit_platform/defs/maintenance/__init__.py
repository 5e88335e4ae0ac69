"""The maintenance group: bounded growth, by policy (docs/maintenance.md). One job, `maintenance_job`, on the
schedule `HIT_MAINTENANCE_CRON` (hourly by default): the serving logs' and the batch tables' retention
(`batch_tables`), then the lake's compaction, snapshot expiry and file cleanup (`lake`), and the history kept
outside the lake: Dagster's runs and ticks, MLflow's losing candidates, the journal's unreadable/ folder and
the reports (`history`). Each asset has a check that fails when its thing has grown past its bound."""

import dagster as dg

from hit_platform.settings import MaintenanceSettings

GROUP = "maintenance"

maintenance_job = dg.define_asset_job(
    "maintenance_job", selection=dg.AssetSelection.groups(GROUP),
    description="Bounded growth: expire and fold the serving logs, expire old versions' batch predictions, "
                "compact the lake, expire its snapshots (never one a model version needs), delete unreferenced "
                "files, prune Dagster runs and ticks, MLflow's losing candidates and old files.")


def maintenance_schedule(policy: MaintenanceSettings) -> dg.ScheduleDefinition:
    """The maintenance job at `HIT_MAINTENANCE_CRON` (UTC), running from the start."""
    return dg.ScheduleDefinition(name="maintenance_schedule", job=maintenance_job, cron_schedule=policy.cron,
                                 execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
                                 description="Runs maintenance_job: bounded growth of the lake, logs and history.")
