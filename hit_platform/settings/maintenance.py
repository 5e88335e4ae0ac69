"""What the maintenance job keeps, and for how long (`HIT_MAINTENANCE_*`; the lake's snapshot retention is
`HIT_LAKE_KEEP_SNAPSHOTS_DAYS`). Each bound here has an asset check in the `maintenance` group that fails
when its thing grows past it (docs/maintenance.md)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MaintenanceSettings(BaseSettings):
    """Retention and compaction of the lake, the serving logs, Dagster's history, MLflow and the warehouse's
    folders (`HIT_MAINTENANCE_*`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_MAINTENANCE_", extra="ignore", populate_by_name=True)

    cron: str = Field("17 * * * *", description="when the maintenance job runs (cron, UTC; hourly: the rows "
                                                "small commits inline wait at most an hour to be flushed); the job is "
                                                "`maintenance_job` in the Dagster UI")
    keep_snapshots_days: float = Field(
        7.0, gt=0, validation_alias=AliasChoices("HIT_LAKE_KEEP_SNAPSHOTS_DAYS", "keep_snapshots_days"),
        description="lake snapshots older than this are expired, except those a registered model version, the "
                    "champion, the challenger, a pinned training snapshot (HIT_TRAIN_SNAPSHOT) or an asset's "
                    "latest materialization still needs")
    cleanup_grace_s: float = Field(
        3600.0, ge=0, description="a data file no kept snapshot needs any more (expired, merged, flushed) is "
                                  "deleted once it has waited this long: a query still reading it has finished")
    max_files_per_table: int = Field(
        200, ge=1, description="bound on the Parquet data files of one lake table after compaction (check "
                               "`lake_files_bounded`)")
    max_inlined_rows: int = Field(
        200_000, ge=0, description="bound on the rows a table keeps inlined in the catalog after the job has "
                                   "flushed them (check `lake_files_bounded`)")
    log_inline_rows: int = Field(
        500, ge=0, description="a commit of at most this many rows to ops.inference_log or ops.shadow_log is "
                                 "inlined in the lake's catalog (DuckLake data inlining) instead of making a "
                                 "Parquet file; the maintenance job flushes them into one file (0: never inline)")
    log_keep_days: float = Field(
        30.0, gt=0, description="raw rows of ops.inference_log and ops.shadow_log are kept this long (at least "
                                "the monitors' window, HIT_MONITOR_WINDOW_HOURS); older ones are folded into "
                                "the daily aggregates and deleted")
    expired_ids_keep_days: float = Field(
        365.0, gt=0, description="the ids of expired requests (ops.inference_log_expired: when each was served, "
                                 "by which model, when it expired) are kept this long, so `audit` can say so")
    batch_keep_versions: int = Field(
        5, ge=0, description="the rows of ml.batch_predictions and ml.batch_explanations of the model versions that "
                             "predicted most recently, this many of them, are kept whatever their age (the champion's "
                             "and the challenger's always are)")
    batch_keep_days: float = Field(
        30.0, gt=0, description="a model version's batch predictions and explanations are kept while it predicted "
                                "within this many days; past both bounds (and neither champion nor challenger) its "
                                "rows are deleted and ml.batch_expired records them, so `audit` says they expired")
    runs_keep_days: float = Field(
        30.0, gt=0, description="finished Dagster runs (and sensor and schedule ticks) older than this are "
                                "deleted, except a run holding an asset's latest materialization or check")
    mlflow_keep_days: float = Field(
        30.0, gt=0, description="MLflow runs older than this that no registered model version came from (the "
                                "candidates that lost) are deleted with their artifacts (`mlflow gc`)")
    landing_keep_days: float = Field(
        30.0, ge=0, description="a landing file whose content (sha256) was ingested more than this many days ago is "
                                "deleted from the landing folder: the lake holds every row of it (raw, or quarantine "
                                "with the row's text) and raw.landed_files its name, size and hash; never ingested or "
                                "rejected files stay (0: keep them all)")
    files_keep_days: float = Field(
        30.0, gt=0, description="files in the serving journal's unreadable/ folder and under warehouse/reports/ "
                                "older than this are deleted (the dashboard page is rewritten by each build)")
