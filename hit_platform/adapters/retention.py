"""Retention outside the lake: which lake snapshots the registry still needs, the MLflow runs of candidates
that lost (deleted with their logged models, then purged with their artifacts by MLflow's own `mlflow gc`),
the old files of the warehouse's folders (the journal's unreadable/, reports/), and landing files the lake
has held for long enough."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from hit_platform.adapters.tracking import CHALLENGER, CHAMPION, Tracker


def _versions(tracker: Tracker) -> list:
    try:
        return list(tracker.client.search_model_versions(f"name = '{tracker.model_name}'"))
    except MlflowException as exc:
        if str(exc.error_code) == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise


def needed_snapshots(tracker: Tracker, pinned: int | None) -> dict[int, str]:
    """{lake snapshot: why it is kept}: the snapshot every registered version was trained on (the champion
    and the challenger among them, named so), and the pinned training snapshot (HIT_TRAIN_SNAPSHOT)."""
    aliases = {}
    for alias in (CHAMPION, CHALLENGER):
        info = tracker.alias_info(alias)
        if info is not None:
            aliases[info.version] = alias
    needed: dict[int, str] = {}
    for mv in sorted(_versions(tracker), key=lambda v: int(v.version)):
        snap = mv.tags.get("lake_snapshot_id")
        if snap not in (None, ""):
            role = f" ({aliases[str(mv.version)]})" if str(mv.version) in aliases else ""
            needed.setdefault(int(snap), f"model version {mv.version}{role}")
    if pinned is not None:
        needed.setdefault(int(pinned), "HIT_TRAIN_SNAPSHOT (a pinned training snapshot)")
    return needed


@dataclass(frozen=True)
class MlflowSweep:
    runs_deleted: int
    logged_models_deleted: int
    purged: bool


def abandoned_runs(tracker: Tracker, keep_days: float, now: datetime) -> list[str]:
    """Ids of the finished runs older than `keep_days` that no registered model version came from: the
    candidates that lost. A run still running, or one a version names, is never among them."""
    exp = tracker.client.get_experiment_by_name(tracker.settings.mlflow.experiment)
    if exp is None:
        return []
    kept = {mv.run_id for mv in _versions(tracker)}
    before = int((now - timedelta(days=keep_days)).timestamp() * 1000)
    out, token = [], None
    while True:
        page = tracker.client.search_runs([exp.experiment_id], f"attributes.start_time < {before}",
                                          run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        out += [r.info.run_id for r in page if r.info.run_id not in kept and r.info.status != "RUNNING"]
        token = page.token
        if not token:
            return out


def deleted_runs(tracker: Tracker) -> list[str]:
    """Runs in MLflow's `deleted` stage not yet purged (their artifacts still on disk)."""
    exp = tracker.client.get_experiment_by_name(tracker.settings.mlflow.experiment)
    if exp is None:
        return []
    return [r.info.run_id for r in tracker.client.search_runs([exp.experiment_id], run_view_type=ViewType.DELETED_ONLY,
                                                             max_results=1000)]


def sweep_mlflow(tracker: Tracker, run_ids: list[str], timeout_s: float = 600.0) -> MlflowSweep:
    """Delete these runs and the models they logged, then purge them with their artifacts (`mlflow gc`)."""
    exp = tracker.client.get_experiment_by_name(tracker.settings.mlflow.experiment)
    models = []
    for run_id in run_ids:
        models += [m.model_id for m in tracker.client.search_logged_models(
            experiment_ids=[exp.experiment_id], filter_string=f"source_run_id = '{run_id}'")]
        tracker.client.delete_run(run_id)
    for model_id in models:
        tracker.client.delete_logged_model(model_id)
    purge = deleted_runs(tracker)
    if purge or models:
        server = tracker.uri.startswith(("http:", "https:"))
        store = ["--tracking-uri" if server else "--backend-store-uri", tracker.uri]
        cmd = [sys.executable, "-m", "mlflow", "gc", *store]
        if purge:
            cmd += ["--run-ids", ",".join(purge)]
        if models:
            cmd += ["--logged-model-ids", ",".join(models)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"mlflow gc on {tracker.uri} failed (exit {done.returncode}): "
                               f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return MlflowSweep(len(run_ids), len(models), bool(purge or models))


def old_files(folder: Path, keep_days: float, now: float | None = None) -> list[Path]:
    """The files under `folder` last modified more than `keep_days` ago (none when it does not exist)."""
    if not folder.is_dir():
        return []
    edge = (now or time.time()) - keep_days * 86_400
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.stat().st_mtime < edge)


def delete_old_files(folder: Path, keep_days: float, now: float | None = None) -> list[Path]:
    """Delete `old_files`; returns them."""
    gone = old_files(folder, keep_days, now)
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def ingested_landing_files(con, landing: Path, keep_days: float, now: datetime) -> list[Path]:
    """Files in the landing folder whose very content (sha256) `raw.landed_files` records as ingested more than
    `keep_days` ago: the lake holds each of their rows (raw, or quarantine with the row's text), so the file
    adds nothing. A file never ingested, rejected (someone has to look at it) or ingested lately stays; none
    go with `keep_days` 0. Only files of an ingested file's size are hashed."""
    from hit_platform.adapters.lake.tables import table_exists
    from hit_platform.steps.ingest.landing import file_sha256, landing_files

    if keep_days <= 0 or not table_exists(con, "raw", "landed_files"):
        return []
    held = dict(con.execute("""SELECT file_sha256, any_value(size_bytes) FROM raw.landed_files
                               WHERE status = 'ingested' GROUP BY file_sha256 HAVING min(ingested_at) < ?""",
                            [now - timedelta(days=keep_days)]).fetchall())
    sizes = set(held.values())
    return [p for p in landing_files(landing) if p.stat().st_size in sizes and file_sha256(p) in held]
