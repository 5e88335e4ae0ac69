"""The batch tables' retention on a real lake, MLflow registry and Dagster instance: the rows of an old model
version past the bound fail the check until the retention runs, then go from both tables in one
transaction, recorded so `audit` says the prediction expired and when; the champion's and the challenger's
rows stay whatever their age, and a rerun deletes nothing more."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import BATCH_DDL, BATCH_EXPLANATIONS_DDL
from hit_platform.adapters.reports.audit import audit
from hit_platform.adapters.tracking import Tracker
from hit_platform.defs.maintenance.batch_tables import BATCH_TABLES, batch_tables, batch_tables_bounded
from hit_platform.defs.resources import LakeResource, MaintenanceResource, TrackingResource
from hit_platform.settings import Settings
from hit_platform.steps import batch_retention
from hit_platform_tests.support.serving import promote_champion, register_version

BOUNDS = {"batch_keep_versions": 1, "batch_keep_days": 10.0}
# version -> (days since its batch, runs); 1 the champion, 2 the challenger, 5 the latest, 7 within the days
WORLD = {"1": (400, 1), "2": (200, 1), "3": (100, 2), "4": (50, 1), "5": (0.1, 1), "7": (5, 1)}
SONGS = 4


def _batch(con, version: str, days_ago: float, run: str) -> None:
    con.execute(BATCH_DDL)
    con.execute(BATCH_EXPLANATIONS_DDL)
    at = datetime.now(timezone.utc) - timedelta(days=days_ago)
    con.execute("""INSERT INTO ml.batch_predictions (prediction_id, spotify_id, model_version, dagster_run_id,
                       lake_snapshot_id, predicted_at, top_country, top_probability)
                   SELECT $run || ':s' || range, 's' || range, $v, $run, 1, $at, 'US', 0.5 FROM range($n)""",
                {"run": run, "v": version, "at": at, "n": SONGS})
    con.execute("""INSERT INTO ml.batch_explanations (prediction_id, spotify_id, model_version, country, feature,
                       attribution, dagster_run_id, explained_at)
                   SELECT prediction_id, spotify_id, model_version, 'US', 'energy', 0.1, 'x-' || $run, $at
                   FROM ml.batch_predictions WHERE dagster_run_id = $run""", {"run": run, "at": at})


def _rows(settings: Settings) -> dict[str, tuple[int, int]]:
    """{version: (batch prediction rows, batch explanation rows)}"""
    with Lake(settings).connection(read_only=True) as con:
        p = dict(con.execute("SELECT model_version, count(*) FROM ml.batch_predictions GROUP BY 1").fetchall())
        e = dict(con.execute("SELECT model_version, count(*) FROM ml.batch_explanations GROUP BY 1").fetchall())
    return {v: (p.get(v, 0), e.get(v, 0)) for v in sorted(set(p) | set(e))}


@pytest.fixture
def world(tmp_path):
    """Registered versions 1 (champion), 2 (challenger), 3; batches of every WORLD version, aged."""
    settings = Settings(warehouse=tmp_path / "warehouse", maintenance=BOUNDS)
    assert promote_champion(settings, seed=1) == "1"
    assert register_version(settings, seed=2) == "2" and register_version(settings, seed=3) == "3"
    Tracker(settings).set_challenger("2")
    lake = Lake(settings)
    for version, (days, runs) in WORLD.items():
        for r in range(runs):
            lake.write(lambda c, v=version, d=days, r=r: _batch(c, v, d + r, f"run-{v}-{r}"))
    resources = {"lake": LakeResource(warehouse=str(settings.warehouse)),
                 "tracking": TrackingResource(warehouse=str(settings.warehouse)),
                 "maintenance": MaintenanceResource(values_json=settings.maintenance.model_dump_json())}
    return settings, resources, dg.DagsterInstance.ephemeral()


def _check_alone(resources, instance) -> dg.AssetCheckEvaluation:
    defs = dg.Definitions(assets=[batch_tables], asset_checks=[batch_tables_bounded], resources=resources)
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_check_selection={dg.AssetCheckKey(BATCH_TABLES, "batch_tables_bounded")}, asset_selection=set())
    [evaluation] = job.execute_in_process(instance=instance, raise_on_error=False).get_asset_check_evaluations()
    return evaluation


def _retention(resources, instance) -> tuple[dict, bool]:
    """maintenance/batch_tables with its check: (the asset's metadata, whether the check passed)."""
    result = dg.materialize([batch_tables, batch_tables_bounded], instance=instance, resources=resources)
    assert result.success
    meta = result.asset_materializations_for_node(batch_tables.op.name)[0].metadata
    [evaluation] = result.get_asset_check_evaluations()
    return {k: v.value for k, v in meta.items()}, evaluation.passed


@pytest.mark.slow  # ~25 s on a loaded 2-core machine, 14 of them the MLflow store's creation
def test_an_old_version_fails_the_check_then_goes_recorded_and_the_champion_stays(world):
    settings, resources, instance = world
    before = _rows(settings)
    assert before == {v: (SONGS * runs, SONGS * runs) for v, (_, runs) in WORLD.items()}

    failed = _check_alone(resources, instance)  # rows of 3 and 4 past the bound, the retention not yet run
    assert not failed.passed
    assert {k: v.value for k, v in failed.metadata.items()} == {
        "batch_predictions_rows_past_retention": 3 * SONGS, "batch_explanations_rows_past_retention": 3 * SONGS}

    done, passed = _retention(resources, instance)
    assert passed and done["versions"] == "3, 4" and done["predictions_expired"] == 3 * SONGS
    assert done["explanations_expired"] == 3 * SONGS and done["protected"] == "1 (champion), 2 (challenger)"
    # the champion's rows (400 days old) and the challenger's stay; 5 is the latest, 7 within 10 days
    assert _rows(settings) == {v: before[v] for v in ("1", "2", "5", "7")}
    with Lake(settings).connection(read_only=True) as con:
        recorded = con.execute(f"""SELECT table_name, model_version, dagster_run_id, rows FROM {batch_retention.EXPIRED}
                                   ORDER BY ALL""").fetchall()
    assert recorded == sorted([("ml.batch_predictions", "3", "run-3-0", SONGS),
                               ("ml.batch_predictions", "3", "run-3-1", SONGS),
                               ("ml.batch_predictions", "4", "run-4-0", SONGS),
                               ("ml.batch_explanations", "3", "x-run-3-0", SONGS),
                               ("ml.batch_explanations", "3", "x-run-3-1", SONGS),
                               ("ml.batch_explanations", "4", "x-run-4-0", SONGS)])

    again, passed = _retention(resources, instance)  # a rerun deletes nothing more
    assert passed and again["versions"] == "none" and again["predictions_expired"] == 0
    assert again["explanations_expired"] == 0 and _rows(settings) == {v: before[v] for v in ("1", "2", "5", "7")}

    found = audit(settings, "run-3-1:s2")  # an expired batch prediction: expired, when, and its lineage
    assert found["kind"] == "batch prediction (expired)" and found["model_version"] == "3"
    assert found["registered_model"].endswith("version 3") and found["spotify_id"] == "s2"
    assert found["expired"].startswith(f"its batch ({SONGS} rows of model version 3) left ml.batch_predictions at ")
    assert "\n" not in found["expired"]
    assert audit(settings, "run-1-0:s0")["kind"] == "batch prediction"  # the champion's, still there
    with pytest.raises(LookupError, match="no prediction has the id 'never-predicted'"):
        audit(settings, "never-predicted")


def test_the_champions_rows_are_never_deleted_whatever_their_age(tmp_path):
    settings = Settings(warehouse=tmp_path / "warehouse")
    lake = Lake(settings)
    for version, days in (("1", 3650), ("2", 20), ("3", 10)):
        lake.write(lambda c, v=version, d=days: _batch(c, v, d, f"run-{v}"))
    now = datetime.now(timezone.utc)
    with lake.connection(read_only=True) as con:  # no version kept by count, every batch past the days
        assert batch_retention.versions_past_bound(con, {"1"}, 0, now) == ["2", "3"]
        assert batch_retention.versions_past_bound(con, set(), 0, now) == ["1", "2", "3"]
        assert batch_retention.versions_past_bound(con, {"1"}, 1, now) == ["2"]  # 3 predicted last
    done = lake.write(lambda c: batch_retention.expire_batches(c, ["2", "3"], now, 0, 1.0, now - timedelta(days=365)))
    assert done["predictions_expired"] == 2 * SONGS and _rows(settings) == {"1": (SONGS, SONGS)}
    with lake.connection(read_only=True) as con:
        assert batch_retention.versions_past_bound(con, {"1"}, 0, now) == []
        assert batch_retention.rows_past_bound(con, {"1"}, 0, now, now - timedelta(days=365)) == {
            "batch_predictions": 0, "batch_explanations": 0, "batch_expired": 0}
        # the records of expired batches have a bound of their own: past it the check fails, the retention forgets
        assert batch_retention.rows_past_bound(con, {"1"}, 0, now, now)["batch_expired"] == 4
    forgot = lake.write(lambda c: batch_retention.expire_batches(c, [], now, 0, 1.0, now))
    assert forgot["expired_records_forgotten"] == 4 and forgot["versions_expired"] == 0
    assert _rows(settings) == {"1": (SONGS, SONGS)}
