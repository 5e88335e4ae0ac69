"""`candidates_reproducible` seen refusing: a record whose seed, splits or snapshot is not the one the
registered model was built from. `reproduce` alone, then once through Dagster."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from hit_platform.cli import build as builder
from hit_platform.defs.ml.features import SPLITS_KEY
from hit_platform.adapters.model_rebuild import reproduce
from hit_platform.defs.ml.training import CANDIDATES
from hit_platform_tests.support.dumps import generate_full
from hit_platform_tests.support.linear import TrainedLinear, latest_metadata

pytestmark = pytest.mark.slow

CHECK = dg.AssetCheckKey(CANDIDATES, "candidates_reproducible")


Trained = TrainedLinear


def recorded(instance) -> dict:
    """The latest ml/candidate_models record, as the check reads it."""
    return latest_metadata(instance, CANDIDATES)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    t = Trained(tmp_path_factory.mktemp("repro"))
    generate_full(t.settings, songs=3000)
    # the last daily file lands later (test_a_later_snapshot_...)
    t.held_back = t.settings.warehouse / "held_back"
    t.held_back.mkdir()
    last = max(t.settings.landing_dir.glob("charts_2*"))
    shutil.move(last, t.held_back / last.name)
    first = builder.build(t.defs, t.instance, upto=[CANDIDATES])
    assert first.success, [c.description for c in first.checks if not c.passed]
    t.record = recorded(t.instance)
    return t


def test_the_untouched_record_reproduces(trained):
    r = reproduce(trained.lake, trained.tracker, trained.record)
    assert r.passed and r.differences == [], r.description
    assert r.description.startswith(f"rebuilt from snapshot {trained.record['lake_snapshot_id']}: identical")
    assert r.metadata["prediction_sha256_rebuilt"] == r.metadata["prediction_sha256_registered"] \
        == trained.record["probe_prediction_sha256"]


def test_a_changed_seed_refuses(trained):
    r = reproduce(trained.lake, trained.tracker, {**trained.record, "seed": trained.record["seed"] + 1})
    assert not r.passed
    assert f"seed: {trained.record['seed'] + 1} recorded, the registered version " \
           f"{trained.record['best_model_version']} was fitted with {trained.record['seed']}" in r.description


def test_changed_params_refuse_naming_the_params_and_the_prediction_bytes(trained):
    params = {**trained.record["best_params"], "C": trained.record["best_params"]["C"] * 10}
    r = reproduce(trained.lake, trained.tracker, {**trained.record, "best_params": params})
    assert not r.passed
    c = trained.record["best_params"]["C"]
    assert f"params: C {c * 10} recorded, {c} in the registered version's run" in r.description
    assert "prediction bytes on 256 probe rows" in r.description  # refitted with another C: another model


def test_a_changed_splits_fingerprint_refuses(trained):
    r = reproduce(trained.lake, trained.tracker, {**trained.record, "splits_fingerprint": "0:1"})
    assert not r.passed
    assert r.differences == [f"splits fingerprint at snapshot {trained.record['lake_snapshot_id']}: "
                             f"{trained.record['splits_fingerprint']} now, 0:1 at training"]


def test_different_splits_at_the_recorded_snapshot_refuse(trained):
    # a snapshot where a tenth of the training songs moved to validation (features and labels as they were)
    def move(con):
        con.execute("UPDATE ml.splits SET split = 'validation' WHERE split = 'train' AND bucket % 10 = 0")
        return trained.lake.snapshot_id(con)

    with trained.lake.connection() as con:
        trained.lake.write(move, con=con, what="test: tamper with ml.splits")
        moved = trained.lake.snapshot_id(con)
    r = reproduce(trained.lake, trained.tracker, {**trained.record, "lake_snapshot_id": moved})
    assert not r.passed
    assert any(d.startswith(f"splits fingerprint at snapshot {moved}") for d in r.differences), r.description
    assert any(d.startswith("prediction bytes") for d in r.differences), r.description  # fitted on fewer songs


def test_a_later_snapshot_with_more_data_refuses(trained):
    # the held-back daily file lands and the data half is rebuilt: a later snapshot with more chart days
    for f in trained.held_back.iterdir():
        shutil.move(f, trained.settings.landing_dir / f.name)
    assert builder.build(trained.defs, trained.instance, upto=[SPLITS_KEY]).success
    with trained.lake.connection(read_only=True) as con:
        later = trained.lake.snapshot_id(con)
        days = [con.execute(f"SELECT count(DISTINCT snapshot_date) FROM core.chart_entries AT (VERSION => {s})")
                .fetchall()[0][0] for s in (trained.record["lake_snapshot_id"], later)]
    assert days[1] == days[0] + 1
    r = reproduce(trained.lake, trained.tracker, {**trained.record, "lake_snapshot_id": later})
    assert not r.passed
    assert any(d.startswith(f"splits fingerprint at snapshot {later}") for d in r.differences), r.description
    assert any(d.startswith("prediction bytes") for d in r.differences), r.description


def test_the_check_fails_in_dagster_on_a_tampered_materialization(trained):
    instance = trained.instance
    real = instance.get_latest_materialization_event(CANDIDATES).asset_materialization
    # the same record, but claiming another seed than the registered model was fitted with
    tampered = {**real.metadata, "seed": dg.MetadataValue.int(real.metadata["seed"].value + 1)}
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=CANDIDATES, metadata=tampered))
    try:
        # the check alone, in a run of its own (no asset materialized)
        job = trained.defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection=set(), asset_check_selection={CHECK})
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    finally:  # the real record back on top, for whatever reads the latest one next
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=CANDIDATES, metadata=real.metadata))
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == "candidates_reproducible" and not evaluation.passed
    assert "seed: " in evaluation.description and "was fitted with" in evaluation.description
    assert evaluation.metadata["seed_at_training"].value == real.metadata["seed"].value + 1
    # and a failing gate lands in ops.alerts
    with trained.lake.connection(read_only=True) as con:
        alerts = con.execute("SELECT \"where\", what FROM ops.alerts WHERE dagster_run_id = ?",
                             [result.run_id]).fetchall()
    assert [w for w, _ in alerts] == ["ml/candidate_models:candidates_reproducible"], alerts
