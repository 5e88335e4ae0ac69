"""Drill: the calibration rule refusing a retrained candidate on the real graph path.

A champion is served; the operators tighten `HIT_GATE_MAX_CALIBRATION_ERROR` below what any model
shows; a retrain then goes ml/candidates -> ml/model_evaluation (with its blocking promotion_gate)
-> ml/champion_model in one run. The evaluation must refuse by the calibration rule alone, the gate
must fail, the champion must not be built on it, the champion asset must refuse the candidate by
itself, and the registry's `champion` alias must stay where it was.
"""

from __future__ import annotations

import dagster as dg
import pytest

from hit_platform.cli import build as builder
from hit_platform.definitions import build_definitions
from hit_platform.defs.ml import evaluation
from hit_platform.defs.ml.evaluation import CHAMPION, EVALUATION
from hit_platform.defs.ml.training import CANDIDATES
from hit_platform.defs.resources import PromotionResource, TrainingResource
from hit_platform.settings import get_settings
from hit_platform_tests.support.dumps import generate_full
from hit_platform_tests.support.linear import TrainedLinear, latest_metadata

pytestmark = pytest.mark.slow

CALIBRATION = "max_calibration_error"
# the other promotion rules at their shipped defaults, so that HIT_GATE_* of the shell cannot move the drill
OTHER_RULES = {"min_auc_gain_over_baseline": 0.05, "max_auc_drop_vs_champion": 0.005,
               "max_log_loss_increase_vs_champion": 0.01, "max_country_auc_drop_vs_champion": 0.05,
               "max_pooled_calibration_error": 1.0}
# The excess is ECE (>= 0) minus a noise floor of a few hundredths at most on 10 bins: no model is
# below -1, so every candidate is refused; a tiny positive threshold would let a model whose ECE is
# under its noise floor (a negative excess) through.
STRICT = -1.0


def gate_env(monkeypatch, max_calibration_error: float) -> None:
    """The thresholds a new process would read from its environment."""
    for rule, value in {**OTHER_RULES, CALIBRATION: max_calibration_error}.items():
        monkeypatch.setenv(f"HIT_GATE_{rule.upper()}", str(value))
    get_settings.cache_clear()  # a process reads its settings once: this is the next process


def test_the_calibration_gate_refuses_a_retrain_and_the_champion_stays(tmp_path, monkeypatch):
    gate_env(monkeypatch, 1.0)  # the first champion is promoted whatever its calibration
    t = TrainedLinear(tmp_path)
    generate_full(t.settings, songs=1000, increments=1)
    first = builder.build(t.defs, t.instance, upto=[CHAMPION])
    assert first.success, [c.description for c in first.checks if not c.passed]
    champion = t.tracker.champion_info().version

    # the retrain (another seed: a new code version of the candidates) under the tightened rule
    gate_env(monkeypatch, STRICT)
    defs = build_definitions(t.resource, tracking=t.tracking,
                             training=TrainingResource(families=["linear"], seed=1, workers=1))
    run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=t.instance, asset_selection=[CANDIDATES, EVALUATION, CHAMPION], raise_on_error=False)
    assert not run.success
    assert {e.asset_key for e in run.get_asset_materialization_events()} == {CANDIDATES, EVALUATION}

    # the evaluation refused by the calibration rule, and by it alone
    ev = latest_metadata(t.instance, EVALUATION)
    candidate = ev["candidate_version"]
    assert candidate == latest_metadata(t.instance, CANDIDATES)["best_model_version"] != champion
    assert ev["champion_version"] == champion and ev["promote"] is False
    assert ev["decision"].startswith("refuse: mean excess calibration error"), ev["decision"]
    assert f"is above {CALIBRATION} {STRICT}" in ev["decision"]
    assert not any(rule in ev["decision"] for rule in OTHER_RULES), ev["decision"]
    assert ev["test_mean_ece_excess"] > STRICT and ev["test_mean_ece"] > 0

    # its blocking gate failed with that decision, and showed the numbers it refused on
    [gate] = [e for e in run.get_asset_check_evaluations() if e.check_name == "promotion_gate"]
    assert not gate.passed and gate.description == ev["decision"]
    assert gate.metadata["test_mean_ece_excess"].value == ev["test_mean_ece_excess"]
    with t.lake.connection(read_only=True) as con:
        assert con.execute("SELECT candidate_version, promote, decision FROM ml.evaluations "
                           "ORDER BY evaluated_at DESC LIMIT 1").fetchall() == [(candidate, False, ev["decision"])]

    # the champion asset alone refuses: its gate policy (promotion_gate failed) and its own check of the decision
    with pytest.raises(dg.Failure, match="promotion_gate"):
        dg.materialize([evaluation.champion_model], instance=t.instance,
                       resources={"tracking": t.tracking, "lake": t.resource, "promotion": PromotionResource()})
    with pytest.raises(dg.Failure, match=rf"refused to promote model version {candidate} \(linear\): its "
                                         rf"evaluation decided: refuse: .*{CALIBRATION}"):
        evaluation.refuse_unless_promoted(t.instance, ev, champion)

    # the alias did not move; the refused version says why; its run holds the test calibration it failed on
    assert t.tracker.champion_info().version == champion
    refused = t.tracker.client.get_model_version(t.tracker.model_name, candidate)
    assert refused.tags["evaluation"].startswith("refuse: ") and CALIBRATION in refused.tags["evaluation"]
    metrics = t.tracker.client.get_run(refused.run_id).data.metrics
    assert metrics["test_mean_ece_excess"] == pytest.approx(ev["test_mean_ece_excess"])


def test_changing_the_calibration_threshold_makes_the_evaluation_stale():
    """Loosening HIT_GATE_MAX_CALIBRATION_ERROR after a refusal must let the next build decide again."""
    from hit_platform.defs.resources import GatesResource

    versions = {GatesResource(values_json=f'{{"{CALIBRATION}": {t}}}').promotion_code_version("1")
                for t in (STRICT, 0.01, 0.02)}
    assert len(versions) == 3
