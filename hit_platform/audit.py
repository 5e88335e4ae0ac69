"""Trace any prediction back to what made it: model version, MLflow run, Dagster run, lake snapshot,
code version and training rows."""

from __future__ import annotations

from datetime import datetime, timezone

from mlflow.exceptions import MlflowException

from hit_platform.lake import Lake
from hit_platform.settings import Settings
from hit_platform.tracking import Tracker


class AuditNotFound(LookupError):
    """No served request nor batch prediction carries this id."""


def _find_prediction(lake: Lake, identifier: str) -> dict:
    with lake.connection(read_only=True) as con:
        if lake.table_exists(con, "ops", "inference_log"):
            rows = con.execute("SELECT model_version, min(received_at), any_value(endpoint), count(*) "
                               "FROM ops.inference_log WHERE request_id = ? GROUP BY model_version",
                               [identifier]).fetchall()
            if rows:
                version, at, endpoint, n = rows[0]
                return {"kind": "served request", "id": identifier, "model_version": str(version),
                        "at": str(at), "endpoint": endpoint, "log_rows": n}
        if lake.table_exists(con, "ml", "batch_predictions"):
            rows = con.execute("SELECT model_version, predicted_at, dagster_run_id, lake_snapshot_id, spotify_id "
                               "FROM ml.batch_predictions WHERE prediction_id = ? LIMIT 1", [identifier]).fetchall()
            if rows:
                version, at, run_id, snap, song = rows[0]
                return {"kind": "batch prediction", "id": identifier, "model_version": str(version), "at": str(at),
                        "spotify_id": song, "predicted_by_dagster_run": run_id, "predicted_from_lake_snapshot": snap}
    raise AuditNotFound(f"no served request (ops.inference_log.request_id) nor batch prediction "
                        f"(ml.batch_predictions.prediction_id) has the id {identifier!r}")


def audit(settings: Settings, identifier: str) -> dict:
    """Everything known about how the prediction `identifier` was made."""
    found = _find_prediction(Lake(settings), identifier)
    tracker = Tracker(settings)
    try:
        mv = tracker.client.get_model_version(tracker.model_name, found["model_version"])
    except MlflowException as exc:
        raise AuditNotFound(f"{found['kind']} {identifier!r} names model version {found['model_version']}, "
                            f"which the registry at {tracker.uri} does not hold: {exc}") from exc
    run = tracker.client.get_run(mv.run_id)
    t = mv.tags
    return {**found,
            "registered_model": f"{tracker.model_name} version {mv.version}",
            "mlflow_run_id": mv.run_id, "mlflow_tracking_uri": tracker.uri,
            "family": t.get("family"), "trained_by_dagster_run": t.get("dagster_run_id"),
            "trained_at": datetime.fromtimestamp(run.info.start_time / 1000, timezone.utc).isoformat(),
            "lake_snapshot_id": t.get("lake_snapshot_id"), "splits_data_version": t.get("splits_data_version"),
            "code_version": f"{t.get('git_commit')}{' (dirty)' if t.get('git_dirty') == 'true' else ''}",
            "training_rows": t.get("train_rows"), "validation_rows": t.get("validation_rows"),
            "evaluation": t.get("evaluation")}
