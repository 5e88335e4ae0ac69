"""A promotion decides on what a run computed, never on what anyone can report.

Dagster records a materialization that anyone reports by hand (the UI's "Report materialization", GraphQL's
reportRunlessAssetEvents, `instance.report_runless_asset_event`) with whatever metadata is typed. Here that
is done as an intruder would: a forged `ml/model_evaluation` saying "promote version N", then the
`promotion_gate` check alone, then `ml/champion_model` alone; and the same with `ml/shadow_evaluation`,
`shadow_gate` and `ml/shadow_promotion`. On a real Dagster instance, DuckLake and MLflow store, no alias moves.
"""

from __future__ import annotations

import dagster as dg
import pytest

from hit_platform.adapters import model_events
from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.tracking import ABANDONED, Tracker
from hit_platform.definitions import build_definitions
from hit_platform.defs.ml.evaluation import CHAMPION, EVALUATION
from hit_platform.defs.ml.shadow import GATE as SHADOW_GATE
from hit_platform.defs.ml.shadow import SHADOW_EVALUATION, SHADOW_PROMOTION
from hit_platform.defs.resources import LakeResource, PromotionResource, TrackingResource
from hit_platform_tests.support.serving import register_version, serving_env

pytestmark = pytest.mark.slow

PROMOTION_GATE = dg.AssetCheckKey(EVALUATION, "promotion_gate")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A champion (v1, promoted by a run), a version never evaluated and one a dead run abandoned, and a job of
    the platform's own Definitions on a real instance."""
    tmp = tmp_path_factory.mktemp("forged")
    settings, _ = serving_env(tmp)
    lake, tracker = Lake(settings), Tracker(settings)
    lake.connect().close()
    v1 = register_version(settings, 1)
    model_events.promote(lake, tracker, v1, None, "promote: passed every rule", "run-of-the-first-build")
    never = register_version(settings, 2)
    abandoned = register_version(settings, 3)
    tracker.set_version_tag(abandoned, ABANDONED, "registered by Dagster run r, which died before recording it")
    warehouse = str(settings.warehouse)
    defs = build_definitions(LakeResource(warehouse=warehouse), tracking=TrackingResource(warehouse=warehouse),
                             promotion=PromotionResource())
    (tmp / "dagster_home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp / "dagster_home")) as instance:
        yield settings, lake, tracker, instance, defs.resolve_implicit_global_asset_job_def(), v1, never, abandoned


def check_alone(job, instance, check: dg.AssetCheckKey):
    run = job.get_subset(asset_selection=set(), asset_check_selection={check}).execute_in_process(
        instance=instance, raise_on_error=False)
    [evaluation] = run.get_asset_check_evaluations()
    return evaluation


def failure(run) -> str:
    [failed] = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failed.step_failure_data
    return str(data.user_failure_data.description if data.user_failure_data else data.error.message)


@pytest.mark.parametrize("which", ["never evaluated", "abandoned"])
def test_a_hand_reported_evaluation_promotes_nothing(world, which):
    settings, lake, tracker, instance, job, v1, never, abandoned = world
    version = never if which == "never evaluated" else abandoned
    instance.report_runless_asset_event(dg.AssetMaterialization(EVALUATION, metadata={
        "candidate_version": version, "candidate_family": "linear", "promote": True,
        "decision": "promote: beats the baseline by +0.30 mean AUC", "test_mean_roc_auc": 0.95,
        "test_mean_log_loss": 0.1, "lake_snapshot_id": 1, "champion_version": v1}))
    gate = check_alone(job, instance, PROMOTION_GATE)
    champion = job.execute_in_process(instance=instance, asset_selection=[CHAMPION], raise_on_error=False)
    assert tracker.champion_info().version == v1, f"a runless report promoted version {version}"
    assert not gate.passed and "reported by hand" in gate.description, gate.description
    assert not champion.success and "promotion_gate" in failure(champion)
    assert [e.kind for e in model_events.history(lake)] == ["promote"]


def test_a_hand_reported_shadow_judgement_promotes_no_challenger(world):
    settings, lake, tracker, instance, job, v1, never, _ = world
    model_events.set_challenger(lake, tracker, never, v1, "shadows the champion", "run-of-a-build")
    instance.report_runless_asset_event(dg.AssetMaterialization(SHADOW_EVALUATION, metadata={
        "champion_version": v1, "challenger_version": never, "promote": True, "shadowed_songs": 5000,
        "decision": f"challenger {never} agrees with champion {v1} on 5000 shadowed songs: promote"}))
    gate = check_alone(job, instance, SHADOW_GATE)
    promotion = job.execute_in_process(instance=instance, asset_selection=[SHADOW_PROMOTION], raise_on_error=False)
    assert tracker.champion_info().version == v1, "a runless report promoted the challenger"
    assert tracker.challenger_info().version == never
    assert not gate.passed and "reported by hand" in gate.description, gate.description
    assert not promotion.success and "shadow_gate" in failure(promotion)
