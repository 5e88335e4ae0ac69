"""Candidates -> evaluation -> promotion gate -> champion, with a real Dagster instance, lake and MLflow store."""

from __future__ import annotations

import numpy as np
import pytest

from hit_platform.cli import build as builder
from hit_platform.definitions import build_definitions
from hit_platform.defs.ml.evaluation import CHAMPION, EVALUATION
from hit_platform.defs.resources import GatesResource, TrackingResource, TrainingResource
from hit_platform.defs.ml.training import CANDIDATES
from hit_platform.adapters.tracking import Tracker
from hit_platform_tests.support.built import Built
from hit_platform_tests.support.dumps import generate_full

pytestmark = pytest.mark.slow


def build(defs, instance, **kw):
    """Up to the champion (the serving deployment has its own tests)."""
    return builder.build(defs, instance, upto=[CHAMPION], **kw)


class Trained(Built):
    def __init__(self, root):
        super().__init__(root)
        self.tracking = TrackingResource(warehouse=str(self.settings.warehouse))
        # mlp is left out to keep the suite short; bench/bench_models.py covers every family
        self.training = TrainingResource(families=["linear", "trees"])
        self.defs = build_definitions(self.resource, tracking=self.tracking, training=self.training)
        self.tracker = Tracker(self.settings)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    t = Trained(tmp_path_factory.mktemp("trained"))
    generate_full(t.settings, songs=3000)
    t.first = build(t.defs, t.instance)
    assert t.first.success, [c.description for c in t.first.checks if not c.passed]
    return t


def meta(instance, key) -> dict:
    return {k: v.value for k, v in instance.get_latest_materialization_event(key).asset_materialization.metadata.items()}


def test_runs_and_registry_versions_carry_their_lineage(trained):
    cand = meta(trained.instance, CANDIDATES)
    runs = trained.tracker.client.search_runs([trained.tracker.experiment_id()])
    assert {r.data.tags["family"] for r in runs} == {"prior", "linear", "trees"}
    val_auc = {r.data.tags["family"]: r.data.metrics["val_mean_roc_auc"] for r in runs}
    assert val_auc["trees"] > val_auc["linear"] > val_auc["prior"]
    for r in runs:
        for tag in ("lake_snapshot_id", "splits_data_version", "git_commit", "git_dirty", "dagster_run_id"):
            assert r.data.tags.get(tag), (r.data.tags["family"], tag)
        assert "val_mean_roc_auc" in r.data.metrics and "val_roc_auc_US" in r.data.metrics
        artifacts = {a.path for a in trained.tracker.client.list_artifacts(r.info.run_id, "plots")}
        validation = {"plots/auc_by_country.png", "plots/calibration.png", "plots/roc.png",
                      "plots/reliability_by_country.png", "plots/importance_by_country.png"}
        assert validation <= artifacts <= validation | {"plots/reliability_by_country_test.png"}  # test: the evaluated one
    version = trained.tracker.client.get_model_version("hit_model", cand["best_model_version"])
    assert version.tags["lake_snapshot_id"] == str(cand["lake_snapshot_id"])
    info = trained.tracker.champion_info()
    assert info is not None and info.version == cand["best_model_version"]


def test_every_candidate_run_declares_its_background_and_the_version_loads_it(trained):
    """The background attributions are taken against (issue 31): an artifact of each candidate's run, its
    seed and size in the run's and the registered version's tags, read back by load_background."""
    from hit_platform.adapters.model_explanations import BACKGROUND_ARTIFACT, load_background
    from hit_platform.domain.explain import FAMILY_BACKGROUND, explain

    for r in trained.tracker.client.search_runs([trained.tracker.experiment_id()]):
        assert BACKGROUND_ARTIFACT in {a.path for a in trained.tracker.client.list_artifacts(r.info.run_id, "explain")}
        family = r.data.tags["family"]
        assert r.data.tags["explain_background_size"] == str(FAMILY_BACKGROUND[family])
        assert r.data.tags["explain_background_seed"] == r.data.tags["seed"]
    version = meta(trained.instance, CANDIDATES)["best_model_version"]
    background = load_background(trained.tracker, version)
    tags = trained.tracker.version_tags(version)
    assert (tags["explain_background_size"], tags["explain_background_seed"]) == (str(background.size), tags["seed"])
    assert background.size <= background.drawn_from <= int(tags["train_rows"])  # songs with every feature
    a = explain(trained.tracker.load_version(version), background.songs[:2], background)
    assert a.max_gap <= 1e-9


def test_every_candidate_run_logs_its_global_importance_as_recomputed_from_its_model_and_songs(trained):
    """issue 31: each candidate's explain/importance.json is the mean |attribution| of its logged model, against
    its declared background, over the validation songs it names (the lake's split at the run's snapshot)."""
    from hit_platform.adapters.model_explanations import load_run_background
    from hit_platform.adapters.model_importance import TOP_TAG, load_importance, load_run_importance
    from hit_platform.adapters.reports import dashboard
    from hit_platform.domain.explain import explain
    from hit_platform.settings import TrainingSettings
    from hit_platform.steps.datasets import load_split

    runs = trained.tracker.client.search_runs([trained.tracker.experiment_id()])
    assert {r.data.tags["family"] for r in runs} == {"prior", "linear", "trees"}
    for r in runs:
        imp = load_run_importance(trained.tracker, r.info.run_id)
        with trained.lake.connection(read_only=True) as con:
            val = load_split(con, "validation", int(r.data.tags["lake_snapshot_id"]))
        rows = [list(val.spotify_ids).index(i) for i in imp.song_ids]
        assert imp.songs == TrainingSettings().importance_songs == len(set(rows))
        model = trained.tracker.load_uri(f"runs:/{r.info.run_id}/model")
        a = explain(model, val.X.iloc[rows], load_run_background(trained.tracker, r.info.run_id))
        # the same up to the sums' rounding (training computes it on one BLAS thread)
        np.testing.assert_allclose(imp.matrix, np.abs(a.phi).mean(axis=0), rtol=1e-12, atol=1e-15)
        assert imp.scales == a.scales
        assert r.data.tags[TOP_TAG] == (imp.top_feature() or "none (the model uses no feature)")
    version = meta(trained.instance, CANDIDATES)["best_model_version"]
    page = dashboard.render(trained.lake, importance_of=lambda v: load_importance(trained.tracker, v)).html
    shown = page.split("<h2>Global importance</h2>")[1].split("</section>")[0]
    assert f"Version {version} (" in shown and "data:image/png;base64" in shown


def test_trees_beat_linear_and_the_first_champion_is_promoted(trained):
    checks = {c.check_name: c for c in trained.first.checks}
    assert checks["promotion_gate"].passed and checks["candidates_reproducible"].passed
    ev = meta(trained.instance, EVALUATION)
    assert ev["promote"] and ev["test_mean_roc_auc"] > ev["baseline_mean_roc_auc"] + 0.05
    assert "auc_ratio_to_oracle" in ev
    with trained.lake.connection(read_only=True) as con:
        rows = con.execute("SELECT candidate_version, promote FROM ml.evaluations").fetchall()
    assert rows == [(ev["candidate_version"], True)]
    assert meta(trained.instance, CHAMPION)["model_version"] == ev["candidate_version"]


def test_a_worse_candidate_is_refused_and_the_alias_does_not_move(trained):
    before = trained.tracker.champion_info().version
    # the same data, but a gate that asks more than any model can give: the candidate is refused
    strict = build_definitions(trained.resource, GatesResource(values_json='{"min_auc_gain_over_baseline": 0.9}'),
                               tracking=trained.tracking, training=trained.training)
    result = build(strict, trained.instance, everything=True)
    assert not result.success
    gate = next(c for c in result.checks if c.check_name == "promotion_gate")
    assert not gate.passed and "beats the baseline" in gate.description
    assert CHAMPION in result.skipped
    assert trained.tracker.champion_info().version == before
    with trained.lake.connection(read_only=True) as con:
        assert con.execute("SELECT count(*) FILTER (WHERE NOT promote) FROM ml.evaluations").fetchall()[0][0] == 1


def test_a_rebuild_from_the_same_snapshot_gives_the_same_model_and_moves_the_alias(trained):
    first = meta(trained.instance, CANDIDATES)
    result = build(trained.defs, trained.instance, everything=True)
    assert result.success
    again = meta(trained.instance, CANDIDATES)
    # everything was rebuilt (new lake snapshots) from the same landed files: same splits, same model
    assert again["splits_fingerprint"] == first["splits_fingerprint"]
    assert again["probe_prediction_sha256"] == first["probe_prediction_sha256"]
    assert again["best_model_version"] != first["best_model_version"]
    assert trained.tracker.champion_info().version == again["best_model_version"]  # as good: promoted


# --- the reproducibility check's refits, started while the training went on (adapters/early_rebuild.py)

def _check_metadata(instance) -> dict:
    import dagster as dg
    record = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(CANDIDATES, "candidates_reproducible"))
    return {k: v.value for k, v in record.event.asset_check_evaluation.metadata.items()}


def test_the_check_took_the_trees_refit_started_while_training_and_cleared_it(trained):
    assert _check_metadata(trained.instance)["refitted_while_training"] == "trees"
    rebuilds = trained.settings.warehouse / "rebuilds"
    assert not rebuilds.exists() or not any(rebuilds.iterdir()), list(rebuilds.iterdir())


def test_an_early_refit_is_the_refit_byte_for_byte_and_only_for_its_exact_recipe(trained, tmp_path):
    from hit_platform.adapters.early_rebuild import EarlyRebuilds
    from hit_platform.adapters.model_training import prediction_hash
    from hit_platform.adapters.tracking import code_version
    from hit_platform.domain.models import refit
    from hit_platform.steps.datasets import load_split

    cand = meta(trained.instance, CANDIDATES)
    snapshot, fp, seed = cand["lake_snapshot_id"], cand["splits_fingerprint"], cand["seed"]
    trees = {k.split(".", 1)[1]: v for k, v in cand["best_params"].items() if k.startswith("trees.")} \
        or cand["best_params"]
    code = code_version()
    early = EarlyRebuilds(trained.settings, "test-run")
    try:
        early.start(snapshot, fp, "trees", trees, seed, code)
        # another seed, other parameters, another snapshot's splits: not the refit asked for
        assert early.take(snapshot, fp, "trees", trees, seed + 1, code) is None
        assert early.take(snapshot, fp, "trees", {**trees, "min_samples_leaf": 1}, seed, code) is None
        assert early.take(snapshot, "another fingerprint", "trees", trees, seed, code) is None
        taken = early.take(snapshot, fp, "trees", trees, seed, code)
        assert taken is not None
        with trained.lake.connection(read_only=True) as con:
            train, val = (load_split(con, s, snapshot) for s in ("train", "validation"))
        here = refit("trees", trees, train.X, train.Y, seed, val.X, val.Y)
        # the grid point fitted, calibrated by the check's refit as its own fit would be
        assert prediction_hash(refit("trees", trees, train.X, train.Y, seed, val.X, val.Y, ready={"trees": taken}),
                               val.X) == prediction_hash(here, val.X)
        # what the fit and the calibration chose after it are no part of what the early refit fits
        again = early.take(snapshot, fp, "trees", {**trees, "n_iter": 1, "calibration": "isotonic"}, seed, code)
        assert again is not None and prediction_hash(again, val.X) == prediction_hash(taken, val.X)
        # asked for splits the lake does not hold at that snapshot: its process writes nothing, and the
        # taker, seeing it gone, refits by itself
        early.start(snapshot, "not the splits' fingerprint", "trees", trees, seed, code)
        assert early.take(snapshot, "not the splits' fingerprint", "trees", trees, seed, code) is None
        # its process killed (kill -9) mid-fit: the taker sees it gone and refits by itself, never waits forever
        import os
        import signal

        key = early.start(snapshot, fp, "trees", {**trees, "min_samples_leaf": 2}, seed, code)
        os.kill(int((early.folder / f"{key}.pending").read_text().split("/")[1]), signal.SIGKILL)
        assert early.take(snapshot, fp, "trees", {**trees, "min_samples_leaf": 2}, seed, code) is None
        # a light family is not worth a process
        assert early.start(snapshot, fp, "linear", {"C": 1.0}, seed, code) is None
    finally:
        early.discard()
    assert not early.folder.exists()
