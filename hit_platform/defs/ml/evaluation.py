"""Evaluation of the best candidate on the test split, the promotion gate, and the champion."""

import dagster as dg

from hit_platform.defs.gate_policy import gated
from hit_platform.adapters import model_events
from hit_platform.adapters.lake.tables import Evaluation
from hit_platform.adapters.model_evaluation import evaluate_candidate
from hit_platform.defs.automation import WITH_ITS_ASSET
from hit_platform.defs import gate_policy
from hit_platform.defs.gate_checks import alert_on_failure
from hit_platform.defs.resources import GatesResource, LakeResource, PromotionResource, TrackingResource
from hit_platform.defs.ml.training import CANDIDATES
from hit_platform.domain.promotion import RolledBack, champion_move, promotion_refusal

EVALUATION = dg.AssetKey(["ml", "model_evaluation"])
CHAMPION = dg.AssetKey(["ml", "champion_model"])


def upstream_metadata(context, key: dg.AssetKey) -> dict:
    event = context.instance.get_latest_materialization_event(key)
    if event is None:
        raise dg.Failure(f"{key.to_user_string()} has never been materialized")
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@dg.asset(key=EVALUATION, deps=[CANDIDATES], group_name="ml", code_version="1", kinds={"duckdb", "mlflow"})
@gated
def model_evaluation(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                     gates_config: GatesResource) -> dg.MaterializeResult:
    """The best candidate scored on the test split (at the lake snapshot it was trained on) against
    (a) the per-country prior baseline, (b) the current champion on the same test rows and (c) the
    generator's oracle probabilities when present (the best any model can do), with the promotion
    decision. Appended to `ml.evaluations`, so the history can be queried. The candidate's calibration
    on the test split goes into its MLflow run: test_ece_<country>, test_mean_ece, test_mean_ece_excess
    and plots/reliability_by_country_test.png."""
    cand = upstream_metadata(context, CANDIDATES)
    with gate_policy.unjudged_refused():  # the test split only as the blocking gates passed it at that snapshot
        e = evaluate_candidate(lake.lake(), tracking.tracker(), cand, gates_config.thresholds().promotion(),
                               lake.settings().oracle, context.run.run_id, gates=gate_policy.split_gates())
    return dg.MaterializeResult(metadata=_metadata(e.record, e.written, e.champion) | {
        "test_mean_ece": e.judgement.candidate["mean_ece"],
        "test_mean_ece_excess": e.judgement.candidate["mean_ece_excess"]})


def _metadata(e: Evaluation, written: int, champion) -> dict:
    """What the UI shows of an evaluation, and what the promotion gate and the champion read."""
    meta = {"candidate_version": e.candidate_version, "candidate_family": e.candidate_family,
            "lake_snapshot_id": e.lake_snapshot_id, "lake_snapshot_written": written, "test_songs": e.test_songs,
            "promote": e.promote, "decision": e.decision, "test_mean_roc_auc": e.candidate_mean_roc_auc,
            "test_mean_log_loss": e.candidate_mean_log_loss, "test_mean_pr_auc": e.candidate_mean_pr_auc,
            "baseline_mean_roc_auc": e.baseline_mean_roc_auc, "baseline_mean_log_loss": e.baseline_mean_log_loss,
            "champion_version": champion.version if champion else "none"}
    if e.champion_version is not None:
        meta |= {"champion_mean_roc_auc": e.champion_mean_roc_auc, "champion_mean_log_loss": e.champion_mean_log_loss}
    if e.oracle_mean_roc_auc is not None:
        meta |= {"oracle_mean_roc_auc": e.oracle_mean_roc_auc, "oracle_mean_log_loss": e.oracle_mean_log_loss,
                 "auc_ratio_to_oracle": e.auc_ratio_to_oracle, "log_loss_ratio_to_oracle": e.log_loss_ratio_to_oracle}
    return meta


@dg.asset_check(asset=EVALUATION, blocking=True, automation_condition=WITH_ITS_ASSET)
def promotion_gate(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """The candidate beats the baseline clearly and is not worse than the champion beyond the
    tolerances, overall and in every country; only then does the champion alias move."""
    meta = upstream_metadata(context, EVALUATION)
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=bool(meta["promote"]), description=meta["decision"],
        metadata={k: meta[k] for k in meta if k.endswith(("roc_auc", "log_loss", "version", "ece", "ece_excess"))}))


def refuse_unless_promoted(instance: dg.DagsterInstance, ev: dict, champion_version: str | None) -> None:
    """Raise unless the latest evaluation says promote and its promotion gate passed it."""
    gate = gate_policy.verdict(instance, dg.AssetCheckKey(EVALUATION, "promotion_gate")) if ev.get("promote") else None
    refused = promotion_refusal(ev, str(gate) if gate is not None else None, champion_version)
    if refused:
        raise dg.Failure(
            description=refused,
            metadata={"candidate_version": str(ev.get("candidate_version")), "promote": bool(ev.get("promote")),
                      "decision": str(ev.get("decision")), "champion_version": champion_version or "none"},
            allow_retries=False)


@dg.asset(key=CHAMPION, deps=[EVALUATION], group_name="ml", code_version="1", kinds={"mlflow"})
@gated
def champion_model(context: dg.AssetExecutionContext, tracking: TrackingResource, lake: LakeResource,
                   promotion: PromotionResource) -> dg.MaterializeResult:
    """The model being served: the registry alias `hit_model@champion` moved to the candidate that
    passed the promotion gate, recorded in `ops.model_events`. It checks the decision itself, whatever
    run it is in: a candidate whose evaluation says refuse, or whose `promotion_gate` did not pass that
    very evaluation, is refused with an error and the alias does not move. A version a person rolled
    back from (`hit-platform rollback`) is not promoted again by this asset; `rollback --to` can."""
    ev = upstream_metadata(context, EVALUATION)
    tracker, the_lake = tracking.tracker(), lake.lake()
    for found in model_events.reconcile(the_lake, tracker):  # a move no event recorded (a killed process)
        context.log.warning(found.reason)
    before = tracker.champion_info()
    refuse_unless_promoted(context.instance, ev, before.version if before else None)
    candidate = str(ev["candidate_version"])
    back = model_events.rolled_back_from(the_lake, candidate)
    move = champion_move(candidate, before.version if before else None, promotion.promotion_mode(),
                         RolledBack(back.event_at, back.who, back.reason) if back else None)
    if move.kind == "keep":
        context.log.warning(move.why)
    elif move.kind == "challenger":
        model_events.set_challenger(the_lake, tracker, candidate, before.version,
                                    f"shadows the champion on live traffic until shadow_gate decides: "
                                    f"{ev.get('decision', 'the promotion gate passed')}", context.run.run_id)
        context.log.info(move.why)
    elif move.kind == "promote":
        model_events.promote(the_lake, tracker, candidate, before.version if before else None,
                             str(ev.get("decision", "the promotion gate passed")), context.run.run_id)
    return dg.MaterializeResult(metadata=_champion_metadata(tracker, before, ev, move.why))


def _champion_metadata(tracker, before, ev: dict, kept: str | None) -> dict:
    """The champion as the registry holds it now; when it stayed (`kept`: why), its own metadata, not the
    candidate's."""
    info = tracker.champion_info()
    if kept:
        shadowing = tracker.challenger_info()
        return {"model_uri": f"models:/{info.name}@champion", "model_version": info.version,
                "mlflow_run_id": info.run_id, "previous_version": info.version, "not_promoted": kept,
                "challenger_version": shadowing.version if shadowing else "none"}
    meta = {"model_uri": f"models:/{info.name}@champion", "model_version": info.version,
            "mlflow_run_id": info.run_id, "previous_version": before.version if before else "none",
            "family": ev["candidate_family"], "test_mean_roc_auc": ev["test_mean_roc_auc"],
            "test_mean_log_loss": ev["test_mean_log_loss"], "lake_snapshot_id": ev["lake_snapshot_id"],
            **{k: info.tags[k] for k in ("git_commit", "git_dirty", "dagster_run_id") if k in info.tags}}
    for k in ("auc_ratio_to_oracle", "log_loss_ratio_to_oracle", "oracle_mean_roc_auc"):
        if k in ev:
            meta[k] = ev[k]
    return meta
