"""Trace any prediction back to what made it: model version, MLflow run, Dagster run, lake snapshot,
code version and training rows.

An id is looked up in the inference log (`ops.inference_log.request_id`: requests the HTTP API
answered or refused) and in the batch predictions (`ml.batch_predictions.prediction_id`). What the
log shows is reported as it is: a refused request made no prediction, so it names no model that
made one; an id found nowhere, or lineage the registry no longer holds, is an error, never a blank.
An answered request also gets the top attributions of its top countries, recomputed from the logged
song and model version (`explained.py`), marked as recomputed.
"""

from __future__ import annotations

from datetime import datetime, timezone

from mlflow.exceptions import MlflowException

from hit_platform.adapters import model_events
from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import SHADOW_LOG, inference_log_columns
from hit_platform.adapters.reports.explained import explanation
from hit_platform.settings import Settings
from hit_platform.adapters.tracking import UNKNOWN, Tracker
from hit_platform.steps.batch_retention import EXPIRED as BATCH_EXPIRED, expired_prediction
from hit_platform.steps.log_retention import EXPIRED, expired_request

INFERENCE_LOG = "ops.inference_log"
BATCH_PREDICTIONS = "ml.batch_predictions"


class AuditError(LookupError):
    """The audit cannot give a truthful answer (see the message)."""


class AuditNotFound(AuditError):
    """No served request nor batch prediction carries this id (or the model it names is gone)."""


def _code_version(tags: dict) -> str:
    commit = tags.get("git_commit") or f"{UNKNOWN} (the model version has no git_commit tag)"
    dirty = tags.get("git_dirty")
    if dirty == "true":
        return f"{commit} (dirty)"
    if dirty == "false":
        return commit
    return f"{commit} (unknown whether dirty)"


def _served(identifier: str, rows: list[tuple]) -> dict:
    """One request of the inference log: answered (one row per song) or refused (one row)."""
    if len(rows) > 1:
        seen = "; ".join(f"status {r[0]} model version {r[1]} on {r[2]} ({r[4]} rows)" for r in rows)
        raise AuditError(f"{INFERENCE_LOG} holds inconsistent rows for request {identifier!r}: {seen}")
    status, version, endpoint, at, n, detail, recovered = rows[0]
    if status == 200:
        if version is None:
            raise AuditError(f"{INFERENCE_LOG}: request {identifier!r} was answered (HTTP 200) but its rows "
                             "name no model version")
        found = {"kind": "served request", "id": identifier, "status": status, "endpoint": endpoint,
                 "at": str(at), "songs": n, "model_version": str(version)}
        if recovered:
            found["logged"] = f"recovered from journal segment {recovered}: its replica died before sealing it"
        return found
    refused = 400 <= status < 500
    return {"kind": f"{'refused' if refused else 'failed'} request (HTTP {status})", "id": identifier,
            "status": status, "endpoint": endpoint, "at": str(at),
            "prediction": (f"none: the request was refused (HTTP {status}) before any model ran" if refused else
                           f"none returned: the request failed (HTTP {status})"),
            "error": detail if detail is None or len(detail) <= 1000 else detail[:1000] + "...",
            # the log records the serving version for answered requests only
            "model_serving_then": str(version) if version is not None else
            f"not recorded ({INFERENCE_LOG} keeps a model version only for answered requests)",
            "model_version": None}


def _expired(identifier: str, e: dict) -> dict:
    """A request whose log rows expired (docs/maintenance.md): what the log kept of it, and when it went."""
    answered = e["status"] == 200
    return {"kind": "served request (expired)" if answered else f"refused request (HTTP {e['status']}, expired)",
            "id": identifier, "status": e["status"], "endpoint": e["endpoint"], "at": str(e["at"]),
            "songs": e["songs"], "model_version": str(e["model_version"]) if answered and e["model_version"] else None,
            "expired": f"its rows left {INFERENCE_LOG} at {e['expired_at']} (raw rows are kept {e['kept_days']:g} "
                       f"days, HIT_MAINTENANCE_LOG_KEEP_DAYS); {EXPIRED} keeps its id, ops.inference_log_daily "
                       "counts it"}


def _expired_batch(identifier: str, e: dict) -> dict:
    """A batch prediction whose rows expired with its model version's (docs/maintenance.md)."""
    return {"kind": "batch prediction (expired)", "id": identifier, "model_version": e["model_version"],
            "at": str(e["at"]), "spotify_id": e["spotify_id"], "predicted_by_dagster_run": e["dagster_run_id"],
            "expired": f"its batch ({e['batch_rows']} rows of model version {e['model_version']}) left "
                       f"{BATCH_PREDICTIONS} at {e['expired_at']} "
                       + (f"(superseded: a kept version's batches older than {e['keep_days']:g} days go, but for its "
                          "latest, each song's first prediction by it and those an estimate is still realized on)"
                          if e.get("reason") == "superseded" else
                          f"(a version's rows are kept while it is champion or challenger, one of the "
                          f"{e['keep_versions']} that predicted last, or predicted within {e['keep_days']:g} days)")
                       + f"; {BATCH_EXPIRED} records it"}


def _find_prediction(lake: Lake, identifier: str) -> dict:
    try:
        con = lake.connect(read_only=True)
    except FileNotFoundError as exc:
        raise AuditNotFound(f"no prediction has the id {identifier!r}: {exc}") from exc
    found, looked = [], []
    with con:
        if lake.table_exists(con, "ops", "inference_log"):
            looked.append(f"{INFERENCE_LOG}.request_id")
            recovered = ("any_value(recovered_from)" if "recovered_from" in inference_log_columns(con)
                         else "NULL")  # a log written before the column existed
            rows = con.execute(f"""
                SELECT status, model_version, endpoint, min(received_at), count(*), any_value(response_body),
                       {recovered}
                FROM {INFERENCE_LOG} WHERE request_id = ? GROUP BY status, model_version, endpoint
                ORDER BY status, model_version""", [identifier]).fetchall()
            expired = None if rows else expired_request(con, identifier)
            if expired is not None:  # the maintenance job folded its rows into the daily aggregates
                found.append(_expired(identifier, expired))
            if rows:
                found.append(_served(identifier, rows))
                if lake.table_exists(con, "ops", "shadow_log"):
                    shadow = con.execute(f"""SELECT shadow_model_version, count(*) FROM {SHADOW_LOG}
                                             WHERE request_id = ? GROUP BY ALL""", [identifier]).fetchall()
                    if shadow:
                        found[-1]["shadowed_by"] = (f"challenger version {shadow[0][0]} scored its {shadow[0][1]} "
                                                    f"song(s) off the response path ({SHADOW_LOG})")
        else:
            looked.append(f"{INFERENCE_LOG} (no such table yet: nothing served)")
        if lake.table_exists(con, "ml", "batch_predictions"):
            looked.append(f"{BATCH_PREDICTIONS}.prediction_id")
            rows = con.execute(f"""
                SELECT model_version, dagster_run_id, lake_snapshot_id, min(predicted_at), any_value(spotify_id),
                       count(*)
                FROM {BATCH_PREDICTIONS} WHERE prediction_id = ? GROUP BY ALL""", [identifier]).fetchall()
            if len(rows) > 1:
                raise AuditError(f"{BATCH_PREDICTIONS} holds inconsistent rows for prediction {identifier!r}: "
                                 + "; ".join(f"model version {r[0]}, Dagster run {r[1]}" for r in rows))
            if rows:
                version, run_id, snap, at, song, _ = rows[0]
                found.append({"kind": "batch prediction", "id": identifier, "model_version": str(version),
                              "at": str(at), "spotify_id": song, "predicted_by_dagster_run": run_id,
                              "predicted_from_lake_snapshot": snap})
            elif (gone := expired_prediction(con, identifier)) is not None:  # its version's rows expired
                found.append(_expired_batch(identifier, gone))
        else:
            looked.append(f"{BATCH_PREDICTIONS} (no such table yet: no batch predictions)")
    if len(found) > 1:
        raise AuditError(f"the id {identifier!r} is both a served request and a batch prediction")
    if not found:
        raise AuditNotFound(f"no prediction has the id {identifier!r}: looked in {' and '.join(looked)} "
                            f"of the lake {lake.settings.catalog}")
    return found[0]


def audit(settings: Settings, identifier: str) -> dict:
    """Everything known about how the prediction `identifier` was made.

    A refused request is reported as such (`model_version` None, no lineage): it made no prediction.
    """
    found = _find_prediction(Lake(settings), identifier)
    if found["model_version"] is None:
        return found
    tracker = Tracker(settings)
    try:
        mv = tracker.client.get_model_version(tracker.model_name, found["model_version"])
    except MlflowException as exc:
        if str(exc.error_code) != "RESOURCE_DOES_NOT_EXIST":
            raise  # the registry cannot be read: not "not found"
        raise AuditNotFound(f"{found['kind']} {identifier!r} names model version {found['model_version']}, "
                            f"which the registry at {tracker.uri} does not hold: {exc}") from exc
    try:
        run = tracker.client.get_run(mv.run_id)
    except MlflowException as exc:
        if str(exc.error_code) != "RESOURCE_DOES_NOT_EXIST":
            raise
        trained_at = f"{UNKNOWN} (MLflow run {mv.run_id} is gone from {tracker.uri})"
    else:
        trained_at = datetime.fromtimestamp(run.info.start_time / 1000, timezone.utc).isoformat()
    t = mv.tags
    if found["kind"] == "served request":  # its song and answer are in the log: recompute why
        found = {**found, "explanation": explanation(settings, identifier, found["model_version"])}
    return {**found,
            "registered_model": f"{tracker.model_name} version {mv.version}",
            "mlflow_run_id": mv.run_id, "mlflow_tracking_uri": tracker.uri,
            "family": t.get("family"), "trained_by_dagster_run": t.get("dagster_run_id"),
            "trained_at": trained_at,
            "trained_on_lake_snapshot": t.get("lake_snapshot_id"),
            "trained_on_splits_data_version": t.get("splits_data_version"),
            "code_version": _code_version(t),
            "training_rows": t.get("train_rows"), "validation_rows": t.get("validation_rows"),
            "evaluation": t.get("evaluation"),
            # how this version became champion and stopped being it: promotions and rollbacks, oldest first
            "champion_history": " | ".join(e.line() for e in reversed(model_events.history(
                Lake(settings), found["model_version"]))) or "none recorded"}
