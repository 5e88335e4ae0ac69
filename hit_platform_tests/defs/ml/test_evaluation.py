"""The promotion rules through Dagster: ml/model_evaluation and its `promotion_gate` refusing a second
candidate by each rule in turn, with thresholds that make only that rule refuse.

The second candidate is the champion's linear model trained again with another seed (another code
version of the candidates, so they are stale). The linear fit does not use the seed: the candidate
scores exactly like the champion, so a tolerance just below zero makes exactly one rule refuse.
"""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pytest
from matplotlib.image import imread

from hit_platform.cli import build as builder
from hit_platform.definitions import build_definitions
from hit_platform.defs.ml.evaluation import CHAMPION, EVALUATION
from hit_platform.defs.resources import GatesResource, TrainingResource
from hit_platform.defs.ml.training import CANDIDATES
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.models.calibration import expected_calibration_error
from hit_platform.steps.datasets import load_split
from hit_platform_tests.support.dumps import generate_full
from hit_platform_tests.support.linear import TrainedLinear, latest_metadata

pytestmark = pytest.mark.slow

MARGIN, AUC_DROP, LOSS_UP, COUNTRY_DROP = RULES = (
    "min_auc_gain_over_baseline", "max_auc_drop_vs_champion", "max_log_loss_increase_vs_champion",
    "max_country_auc_drop_vs_champion")
# the shipped defaults, given explicitly so that HIT_GATE_* in the environment cannot move the cases
DEFAULTS = {MARGIN: 0.05, AUC_DROP: 0.005, LOSS_UP: 0.01, COUNTRY_DROP: 0.05, "max_calibration_error": 0.01,
            "max_pooled_calibration_error": 0.01}


Trained = TrainedLinear


meta = latest_metadata


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    t = Trained(tmp_path_factory.mktemp("promotion"))
    generate_full(t.settings, songs=3000)
    first = builder.build(t.defs, t.instance, upto=[CHAMPION])
    assert first.success, [c.description for c in first.checks if not c.passed]
    t.champion = t.tracker.champion_info().version
    # the second candidate: the seed is part of the candidates' code version, so they are stale
    t.training = TrainingResource(families=["linear"], seed=1, workers=1)
    again = builder.build(build_definitions(t.resource, tracking=t.tracking, training=t.training), t.instance,
                          upto=[CANDIDATES])
    assert again.success and CANDIDATES in again.materialized
    t.candidate = meta(t.instance, CANDIDATES)["best_model_version"]
    assert t.candidate != t.champion
    return t


def evaluate_with(trained: Trained, **thresholds) -> tuple[dg.AssetCheckEvaluation, dict]:
    """ml/model_evaluation alone (with its checks) under these promotion thresholds: the promotion
    gate's evaluation and the evaluation's metadata."""
    gates = GatesResource(values_json=json.dumps({**DEFAULTS, **thresholds}))
    defs = build_definitions(trained.resource, gates, tracking=trained.tracking, training=trained.training)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=trained.instance, asset_selection=[EVALUATION], raise_on_error=False)
    [gate] = [e for e in result.get_asset_check_evaluations() if e.check_name == "promotion_gate"]
    return gate, meta(trained.instance, EVALUATION)


def test_with_the_default_thresholds_a_candidate_as_good_as_the_champion_passes(trained):
    gate, ev = evaluate_with(trained)
    assert gate.passed, gate.description
    # it was judged against the champion, and scored exactly like it
    assert ev["candidate_version"] == trained.candidate and ev["champion_version"] == trained.champion
    assert ev["test_mean_roc_auc"] == ev["champion_mean_roc_auc"]
    assert ev["test_mean_log_loss"] == ev["champion_mean_log_loss"]
    assert not any(rule in gate.description for rule in RULES)


@pytest.mark.parametrize("rule, value, says", [
    (MARGIN, 0.9, "beats the baseline's"),  # more than any model gains over the prior
    (AUC_DROP, -0.001, "below the champion's"),  # must be better than the champion: an equal one is not
    (LOSS_UP, -0.001, "above the champion's"),
    (COUNTRY_DROP, -0.001, "below the champion's"),
])
def test_each_rule_alone_refuses_through_the_gate(trained, rule, value, says):
    gate, ev = evaluate_with(trained, **{rule: value})
    assert not gate.passed and gate.description.startswith("refuse: ")
    # only this rule refused: the other rules' reasons do not name their thresholds
    assert [r for r in RULES if r in gate.description] == [rule], gate.description
    assert says in gate.description
    assert ev["promote"] is False and ev["candidate_version"] == trained.candidate
    with trained.lake.connection(read_only=True) as con:
        row = con.execute("SELECT promote, decision FROM ml.evaluations ORDER BY evaluated_at DESC LIMIT 1"
                          ).fetchall()[0]
    assert row == (False, gate.description)


def test_the_champions_run_holds_its_calibration_on_validation_and_test(trained, tmp_path):
    """The fixture's first build (candidates, then their evaluation) in the champion's MLflow run: the
    per-country reliability figures of both splits, and the test ECE the evaluation measured."""
    client = trained.tracker.client
    run_id = client.get_model_version(trained.tracker.model_name, trained.champion).run_id
    figures = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"plots/reliability_by_country.png", "plots/reliability_by_country_test.png"} <= figures
    for name in ("reliability_by_country", "reliability_by_country_test"):
        image = imread(client.download_artifacts(run_id, f"plots/{name}.png", str(tmp_path)))
        assert min(image.shape[:2]) > 1000  # 72 readable panels, not an empty canvas

    # the first evaluation, the one that judged the champion
    [first] = trained.instance.fetch_materializations(EVALUATION, limit=1, ascending=True).records
    ev = {k: v.value for k, v in first.asset_materialization.metadata.items()}
    assert ev["candidate_version"] == trained.champion
    metrics = client.get_run(run_id).data.metrics
    assert metrics["test_mean_ece"] == pytest.approx(ev["test_mean_ece"])
    assert metrics["test_mean_ece_excess"] == pytest.approx(ev["test_mean_ece_excess"])
    # per country, the test split's ECE (not the validation's, also in the run) of the registered model
    with trained.lake.connection(read_only=True) as con:
        test = load_split(con, "test", ev["lake_snapshot_id"])
    ece = expected_calibration_error(test.Y, trained.tracker.load_version(trained.champion).predict_proba(test.X))
    assert [metrics[f"test_ece_{c}"] for c in COUNTRIES] == pytest.approx(list(ece))
    assert [metrics[f"val_ece_{c}"] for c in COUNTRIES] != pytest.approx(list(ece))
    both = test.Y.any(axis=0) & ~test.Y.all(axis=0)  # the countries the means are over
    assert ev["test_mean_ece"] == pytest.approx(np.mean(ece[both]))
