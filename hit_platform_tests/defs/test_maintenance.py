"""The maintenance job on a real lake, MLflow store and Dagster instance: every bound it keeps has a check
that fails once its thing grew past it, and passes after one run of the job; the serving logs' old rows
become daily aggregates, and `audit` of an expired request says it expired and when."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import dagster as dg
import mlflow
import pytest

from hit_platform.adapters.lake import maintenance as upkeep
from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import INFERENCE_LOG, ensure_inference_log, ensure_shadow_log
from hit_platform.adapters.reports.audit import audit
from hit_platform.adapters.tracking import Tracker
from hit_platform.definitions import build_definitions
from hit_platform.defs.maintenance import GROUP
from hit_platform.defs.resources import LakeResource
from hit_platform.settings import Settings
from hit_platform.steps import log_retention

TINY = 1e-9  # days: everything is "older than the retention"
BOUNDS = {"keep_snapshots_days": TINY, "cleanup_grace_s": 0, "runs_keep_days": TINY, "mlflow_keep_days": TINY,
          "files_keep_days": 1.0, "log_keep_days": 2.0, "max_files_per_table": 2, "log_inline_rows": 10}


def _definitions(settings: Settings):
    return build_definitions(LakeResource(warehouse=str(settings.warehouse)), settings=settings)


def _checks_only(defs, instance) -> dict[str, bool]:
    """The maintenance group's checks, without running their assets: {check: passed}."""
    checks = {k for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key.path[0] == GROUP}
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_check_selection=checks, asset_selection=set())
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _run_asset_and_checks(defs, instance, key, with_asset: bool) -> dict[str, bool]:
    """One maintenance asset's checks, with the asset run first or not: {check: passed}."""
    checks = {k for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key == key}
    job = defs.resolve_implicit_global_asset_job_def()
    sub = job.get_subset(asset_selection={key} if with_asset else set(), asset_check_selection=checks)
    result = sub.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _log_rows(con, days_ago: float, n: int, prefix: str) -> None:
    con.execute(f"""INSERT INTO {INFERENCE_LOG} (request_id, item, received_at, endpoint, status, latency_ms, n_songs,
                        model_version, spotify_id, danceability, probabilities)
                    SELECT '{prefix}' || range, 0, now() - to_microseconds(?::BIGINT), '/predict', 200, 2.5, 1, '1',
                           's' || (range % 7), 0.5, {{'AE': 0.25, 'US': 0.75}} FROM range(?)""",
                [int(days_ago * 86_400e6), n])
    con.execute("""INSERT INTO ops.shadow_log (request_id, item, received_at, champion_model_version,
                        shadow_model_version, probabilities)
                   SELECT request_id, item, received_at, '1', '2', probabilities FROM ops.inference_log
                   WHERE request_id LIKE ? || '%'""", [prefix])


@dg.asset
def scratch() -> None:
    """Any asset of another job."""


@pytest.fixture
def grown(tmp_path):
    """A warehouse grown past every bound: old log rows, many small files, old snapshots, MLflow runs of
    losing candidates, old runs in the Dagster instance, an old file in reports/ and in unreadable/."""
    settings = Settings(warehouse=tmp_path / "warehouse", maintenance=BOUNDS)
    lake = Lake(settings)
    with lake.connection() as con:
        lake.write(lambda c: (ensure_inference_log(c), ensure_shadow_log(c)), con=con)
        for i in range(4):  # four commits of 50 rows: four Parquet files (50 > the inlining limit of 10)
            lake.write(lambda c, i=i: _log_rows(c, 5 - i, 50, f"old{i}-"), con=con)
        lake.write(lambda c: _log_rows(c, 0, 5, "new-"), con=con)
    tracker = Tracker(settings)
    mlflow.set_tracking_uri(tracker.uri)
    for _ in range(2):
        with mlflow.start_run(experiment_id=tracker.experiment_id()):
            mlflow.log_text("a losing candidate's artifact", "tables/search.csv")
    for folder in (settings.warehouse / "reports", settings.serving.journal(settings) / "unreadable"):
        folder.mkdir(parents=True, exist_ok=True)
        old = folder / "old.bin"
        old.write_bytes(b"x")
        os.utime(old, (time.time() - 3 * 86_400,) * 2)
    defs = _definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):  # a finished run no latest event needs: the first of two
        assert dg.materialize([scratch], instance=instance).success
    return settings, defs, instance


@pytest.mark.slow
def test_each_check_fails_past_its_bound_and_passes_after_one_maintenance_run(grown):
    settings, defs, instance = grown
    before = _checks_only(defs, instance)
    assert before == {"serving_logs_bounded": False, "lake_files_bounded": False, "lake_snapshots_bounded": False,
                      "unreferenced_files_bounded": True, "run_history_bounded": False,
                      "mlflow_runs_bounded": False, "warehouse_files_bounded": False,
                      "batch_tables_bounded": True}, before
    lake = Lake(settings)
    with lake.connection(read_only=True) as con:
        grown_to = upkeep.footprint(lake, con)
        old_rows = con.execute(f"SELECT count(*) FROM {INFERENCE_LOG} WHERE received_at < now() - INTERVAL 2 DAY"
                               ).fetchall()[0][0]
    assert grown_to.most_files >= 4 and old_rows > 0

    run = defs.resolve_job_def("maintenance_job").execute_in_process(instance=instance)
    assert run.success
    assert {e.check_name: e.passed for e in run.get_asset_check_evaluations()} == dict.fromkeys(before, True)
    with lake.connection(read_only=True) as con:
        now = upkeep.footprint(lake, con)
        daily = con.execute(f"SELECT sum(requests), sum(songs) FROM {log_retention.DAILY}").fetchall()[0]
        kept = con.execute(f"SELECT count(*) FROM {INFERENCE_LOG}").fetchall()[0][0]
        shadow = con.execute(f"SELECT sum(songs) FROM {log_retention.SHADOW_DAILY}").fetchall()[0][0]
    assert now.most_files <= 2 and now.snapshots < grown_to.snapshots and now.files_waiting_deletion == 0
    assert daily == (205 - kept, 205 - kept) and shadow == 205 - kept and kept >= 5  # the new rows stay
    assert Tracker(settings).client.search_runs([Tracker(settings).experiment_id()]) == []
    assert not any((settings.warehouse / "reports").iterdir())
    # the unreferenced-files check fails too, once a file has waited past its grace
    with lake.connection() as con:
        lake.write(lambda c: _log_rows(c, 0, 50, "more-"), con=con)  # a Parquet file, then none of it
        lake.write(lambda c: c.execute(f"DELETE FROM {INFERENCE_LOG} WHERE request_id LIKE 'more-%'"), con=con)
        upkeep.expire(lake, con, upkeep.expirable(lake, con, TINY, set()))
        assert upkeep.footprint(lake, con).files_waiting_deletion > 0
    assert _checks_only(defs, instance)["unreferenced_files_bounded"] is False


def test_an_expired_request_is_audited_as_expired_with_its_model_and_when(tmp_path):
    settings = Settings(warehouse=tmp_path / "warehouse")
    lake = Lake(settings)
    with lake.connection() as con:
        lake.write(lambda c: (ensure_inference_log(c), ensure_shadow_log(c), _log_rows(c, 40, 3, "gone-")), con=con)
        now = datetime.now(timezone.utc)
        lake.write(lambda c: log_retention.expire_logs(c, log_retention.cutoff(now, 30), 30, now, 365), con=con)
    with pytest.raises(LookupError) as err:  # version 1 is in no registry here: the audit says so, as for any
        audit(settings, "gone-1")
    assert "names model version 1" in str(err.value)
    with lake.connection(read_only=True) as con:
        found = log_retention.expired_request(con, "gone-1")
    assert found["model_version"] == "1" and found["kept_days"] == 30
    assert now - timedelta(days=41) < found["at"] < now - timedelta(days=39)
    with pytest.raises(LookupError, match="no prediction has the id 'never-served'"):
        audit(settings, "never-served")


@pytest.mark.slow
def test_landing_files_the_lake_has_held_past_the_retention_go_and_the_others_stay(tmp_path):
    """A landing file ingested 40 days ago goes (and its copy under another name); one ingested yesterday,
    one rejected, one never ingested and one with an ingested file's name and size but other bytes stay.
    The check fails before the job and passes after; a second run deletes nothing."""
    from hit_platform.adapters.lake.tables import FILES_DDL
    from hit_platform.defs.maintenance.history import WAREHOUSE_FILES
    from hit_platform.steps.ingest.landing import file_sha256

    settings = Settings(warehouse=tmp_path / "warehouse", maintenance={"landing_keep_days": 30.0})
    landing = settings.landing_dir
    landing.mkdir(parents=True)
    files = {name: landing / name for name in ("old.csv", "old_copy.csv", "new.csv", "bad.csv", "waiting.csv")}
    for name, path in files.items():
        path.write_bytes(b"old" if name == "old_copy.csv" else name.encode() * 3)
    recorded = [("old.csv", "ingested", 40), ("new.csv", "ingested", 1), ("bad.csv", "rejected", 40)]

    def record(con):
        con.execute(FILES_DDL)
        for name, status, days in recorded:
            path = files[name]
            con.execute("INSERT INTO raw.landed_files VALUES (?, ?, ?, 'csv', ?, 1, 1, 0, NULL, "
                        "now() - to_days(?))", [name, file_sha256(path), path.stat().st_size, status, days])

    lake = Lake(settings)
    lake.write(record)
    files["old_copy.csv"].write_bytes(files["old.csv"].read_bytes())  # the same bytes under another name
    impostor = landing / "zzz.csv"  # old.csv's size, other bytes: not what the lake holds
    impostor.write_bytes(b"x" * files["old.csv"].stat().st_size)
    defs, instance = _definitions(settings), dg.DagsterInstance.ephemeral()

    def run(with_asset: bool) -> dict[str, bool]:
        return _run_asset_and_checks(defs, instance, WAREHOUSE_FILES, with_asset)

    assert run(False) == {"warehouse_files_bounded": False}
    assert run(True) == {"warehouse_files_bounded": True}
    assert sorted(p.name for p in landing.iterdir()) == ["bad.csv", "new.csv", "waiting.csv", "zzz.csv"]
    assert run(True) == {"warehouse_files_bounded": True}
    assert len(list(landing.iterdir())) == 4


@pytest.mark.slow
def test_the_event_log_file_a_deleted_run_leaves_is_deleted(tmp_path):
    """On a Dagster instance with SQLite storage on disk, `delete_run` leaves the run's own event log file
    (a year of daily runs left 244 of them, 43 MB): the check fails on it, the job deletes it, a live run's
    file stays."""
    from hit_platform.defs.maintenance.history import RUN_HISTORY

    settings = Settings(warehouse=tmp_path / "warehouse")
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    gone, kept = (dg.materialize([scratch], instance=instance).run_id for _ in range(2))
    instance.delete_run(gone)
    files = {p.stem for p in (tmp_path / "dagster").rglob("*.db")}
    assert gone in files and kept in files, files
    defs = _definitions(settings)

    def run(with_asset: bool) -> dict[str, bool]:
        return _run_asset_and_checks(defs, instance, RUN_HISTORY, with_asset)

    assert run(False) == {"run_history_bounded": False}
    assert run(True) == {"run_history_bounded": True}
    files = {p.stem for p in (tmp_path / "dagster").rglob("*.db")}
    assert gone not in files and kept in files, files
