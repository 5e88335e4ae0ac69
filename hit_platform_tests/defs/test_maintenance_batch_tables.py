"""The batch tables' retention on a real lake, MLflow registry and Dagster instance: the rows of an old model
version past the bound fail the check until the retention runs, then go from both tables in one
transaction, recorded so `audit` says the prediction expired and when; the champion's and the challenger's
rows stay whatever their age, and a rerun deletes nothing more."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import BATCH_DDL, BATCH_EXPLANATIONS_DDL, PERFORMANCE_ESTIMATES_DDL
from hit_platform.adapters.reports.audit import audit
from hit_platform.adapters.tracking import Tracker
from hit_platform.defs.maintenance.batch_tables import BATCH_TABLES, batch_tables, batch_tables_bounded
from hit_platform.defs.resources import LakeResource, MaintenanceResource, TrackingResource
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.settings import MonitorThresholds, Settings
from hit_platform.steps import batch_explanations, batch_retention, monitors
from hit_platform.steps import performance_estimates as estimates
from hit_platform_tests.support.serving import promote_champion, register_version

BOUNDS = {"batch_keep_versions": 1, "batch_keep_days": 10.0, "expired_ids_keep_days": 1000.0}  # records of 401 days kept
# version -> (days since its batch, runs, a day apart); 1 the champion (its middle batch superseded), 2 the
# challenger, 5 the latest, 7 within the days
WORLD = {"1": (400, 3), "2": (200, 1), "3": (100, 2), "4": (50, 1), "5": (0.1, 1), "7": (5, 1)}
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
        "batch_predictions_rows_past_retention": 3 * SONGS, "batch_explanations_rows_past_retention": 3 * SONGS,
        "batch_predictions_superseded_rows_past_retention": SONGS}  # the champion's run-1-1

    done, passed = _retention(resources, instance)
    assert passed and done["versions"] == "3, 4" and done["predictions_expired"] == 3 * SONGS
    assert done["explanations_expired"] == 3 * SONGS and done["protected"] == "1 (champion), 2 (challenger)"
    # the champion's latest batch (400 days old) and its songs' first predictions (402) stay, its superseded
    # batch goes (its explanations, one per song, all stay); the challenger's stay; 5 is the latest, 7 recent
    assert done["superseded_expired"] == SONGS
    after = {**{v: before[v] for v in ("2", "5", "7")}, "1": (2 * SONGS, 3 * SONGS)}
    assert _rows(settings) == after
    with Lake(settings).connection(read_only=True) as con:
        recorded = con.execute(f"""SELECT table_name, model_version, dagster_run_id, rows FROM {batch_retention.EXPIRED}
                                   ORDER BY ALL""").fetchall()
    assert recorded == sorted([("ml.batch_predictions", "1", "run-1-1", SONGS),
                               ("ml.batch_predictions", "3", "run-3-0", SONGS),
                               ("ml.batch_predictions", "3", "run-3-1", SONGS),
                               ("ml.batch_predictions", "4", "run-4-0", SONGS),
                               ("ml.batch_explanations", "3", "x-run-3-0", SONGS),
                               ("ml.batch_explanations", "3", "x-run-3-1", SONGS),
                               ("ml.batch_explanations", "4", "x-run-4-0", SONGS)])

    again, passed = _retention(resources, instance)  # a rerun deletes nothing more
    assert passed and again["versions"] == "none" and again["predictions_expired"] == 0
    assert again["explanations_expired"] == 0 and again["superseded_expired"] == 0 and _rows(settings) == after

    found = audit(settings, "run-3-1:s2")  # an expired batch prediction: expired, when, and its lineage
    assert found["kind"] == "batch prediction (expired)" and found["model_version"] == "3"
    assert found["registered_model"].endswith("version 3") and found["spotify_id"] == "s2"
    assert found["expired"].startswith(f"its batch ({SONGS} rows of model version 3) left ml.batch_predictions at ")
    assert "\n" not in found["expired"]
    assert audit(settings, "run-1-0:s0")["kind"] == "batch prediction"  # the champion's, still there
    superseded = audit(settings, "run-1-1:s0")  # the champion's superseded batch: expired, when and why
    assert superseded["kind"] == "batch prediction (expired)" and "(superseded: " in superseded["expired"]
    assert superseded["expired"].startswith(f"its batch ({SONGS} rows of model version 1) left ")
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


# the champion's batches over two months, one more song each time (so songs' first predictions are spread):
# (days ago, songs); 10 days kept, the 45-day-old batch is one a label-free estimate is still realized on
CHAMPION_BATCHES = [(60, 4), (50, 5), (45, 6), (30, 7), (20, 8), (5, 9), (0.5, 10)]


def _scored(con, days_ago: float, songs: int, now: datetime, snapshot: int) -> None:
    """A champion batch with every probability set (distinct per batch), as ml/batch_predictions appends it."""
    con.execute(BATCH_DDL)
    run = f"run-{days_ago:g}"
    probs = ", ".join(f"(hash(s || '{run}{c}') % 1000) / 1000.0" for c in COUNTRIES)
    con.execute(f"""INSERT INTO ml.batch_predictions SELECT ? || ':' || s, s, '1', ?, ?, ?, 'US', 0.5, {probs}
                    FROM (SELECT 's' || range AS s FROM range(?))""",
                [run, run, snapshot, now - timedelta(days=days_ago), songs])


def test_the_champions_superseded_batches_go_but_what_every_reader_reads_stays(tmp_path):
    settings = Settings(warehouse=tmp_path / "warehouse")
    lake, now = Lake(settings), datetime.now(timezone.utc)

    def songs(con):  # ten songs' labels and features
        con.execute("CREATE TABLE core.song_labels AS SELECT 's' || range AS spotify_id, c AS country, "
                    "(range + len(c)) % 3 = 0 AS label FROM range(10), unnest(?) AS t(c)", [list(COUNTRIES)])
        con.execute("CREATE TABLE ml.features AS SELECT 's' || range AS spotify_id, "
                    + ", ".join(f"range / 10 AS {f}" for f in FEATURE_COLUMNS) + " FROM range(10)")
    lake.write(songs)
    with lake.connection(read_only=True) as con:
        snapshot = lake.snapshot_id(con)
    for days, songs in CHAMPION_BATCHES:
        lake.write(lambda c, d=days, n=songs: _scored(c, d, n, now, snapshot))

    def estimate(con):  # the estimate made on the 45-day-old batch, 44 days ago, is realized again
        con.execute(PERFORMANCE_ESTIMATES_DDL)
        con.execute("INSERT INTO ops.performance_estimates (estimated_at, model_version, source, window_start, "
                    "window_end) SELECT ?, '1', 'batch', predicted_at, predicted_at FROM ml.batch_predictions "
                    "WHERE dagster_run_id = 'run-45' LIMIT 1", [now - timedelta(days=44)])
    lake.write(estimate)

    def readers() -> tuple:
        """What the delayed-label monitor, the label-free estimate (latest batch, and the one realized again)
        and the batch explanations (the latest run) read of the champion's batches."""
        with lake.connection(read_only=True) as con:
            delayed = monitors.delayed_label_evaluation(con, MonitorThresholds(min_rows=2), "1", 0.6)
            latest = estimates.batch_population(con, "1")
            at = con.execute("SELECT predicted_at FROM ml.batch_predictions WHERE dagster_run_id = 'run-45' "
                             "LIMIT 1").fetchall()[0][0]
            realized = estimates.batch_population(con, "1", at)
            explained = batch_explanations.pending(con, "1", 100).songs["prediction_id"].tolist()
        return (delayed.metrics, latest.spotify_ids.tolist(), latest.P.tolist(), realized.P.tolist(), explained)

    def past(at: datetime = now) -> dict:
        with lake.connection(read_only=True) as con:
            return batch_retention.rows_past_bound(con, {"1"}, 0, at - timedelta(days=10), at - timedelta(days=365),
                                                   now=at)

    before, rows = readers(), sum(n for _, n in CHAMPION_BATCHES)
    assert before[0]["songs"] == 10 and len(before[4]) == 10
    assert all(i.startswith("run-0.5:") for i in before[4])
    # kept: run-0.5 (latest, 10) and run-5 (within 10 days, 9), run-45 (realized again, 6) and each song's
    # first prediction elsewhere (s0-s3 in run-60, s4 in run-50, s6 in run-30, s7 in run-20): 4 + 1 + 1 + 1
    superseded = rows - (10 + 9 + 6 + 7)
    assert past() == {"batch_predictions": 0, "batch_predictions_superseded": superseded}
    done = lake.write(lambda c: batch_retention.expire_batches(c, [], now, 0, 10.0, now - timedelta(days=365),
                                                               superseded_before=now - timedelta(days=10)))
    assert done["superseded_expired"] == superseded and done["versions_expired"] == 0
    assert past() == {"batch_predictions": 0, "batch_predictions_superseded": 0, "batch_expired": 0}
    assert readers() == before  # every reader reads what it read
    with lake.connection(read_only=True) as con:
        kept = con.execute("SELECT dagster_run_id, list(spotify_id ORDER BY spotify_id) FROM ml.batch_predictions "
                           "GROUP BY 1 ORDER BY 1").fetchall()
        recorded = con.execute(f"SELECT dagster_run_id, rows, reason FROM {batch_retention.EXPIRED} "
                               "ORDER BY 1").fetchall()
        gone = batch_retention.expired_prediction(con, "run-30:s2")  # what audit tells (with the registry)
        assert batch_retention.expired_prediction(con, "run-0.5:s2") is None
    assert dict(kept) == {"run-0.5": [f"s{i}" for i in range(10)], "run-5": [f"s{i}" for i in range(9)],
                          "run-45": [f"s{i}" for i in range(6)], "run-60": ["s0", "s1", "s2", "s3"],
                          "run-50": ["s4"], "run-30": ["s6"], "run-20": ["s7"]}
    assert recorded == [("run-20", 7, "superseded"), ("run-30", 6, "superseded"), ("run-50", 4, "superseded")]
    assert gone["reason"] == "superseded" and gone["batch_rows"] == 6 and gone["expired_at"] == now

    again = lake.write(lambda c: batch_retention.expire_batches(c, [], now, 0, 10.0, now - timedelta(days=365),
                                                                superseded_before=now - timedelta(days=10)))
    assert again["superseded_expired"] == 0  # a rerun deletes nothing
    # bounded over time: 30 days on, the once-realized batch is no longer realized and goes, so does run-5
    later = now + timedelta(days=30)
    assert past(later)["batch_predictions_superseded"] == 5 + 8  # run-45 but s5, run-5 but s8: firsts
