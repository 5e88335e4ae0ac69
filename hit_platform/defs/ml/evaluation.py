"""Evaluation of the best candidate on the test split, the promotion gate, and the champion."""

import json
from datetime import datetime, timezone

import dagster as dg

from hit_platform.defs.gate_policy import gated
from hit_platform.adapters import model_events
from hit_platform.adapters.lake.tables import Evaluation, append_evaluation
from hit_platform.adapters.tracking import Tracker, flat_metrics
from hit_platform.defs.automation import WITH_ITS_ASSET
from hit_platform.steps.datasets import load_split
from hit_platform.defs import gate_policy
from hit_platform.defs.gate_checks import alert_on_failure
from hit_platform.defs.resources import GatesResource, LakeResource, PromotionResource, TrackingResource
from hit_platform.defs.ml.training import CANDIDATES
from hit_platform.domain.promotion import judge
from hit_platform.steps.oracle import oracle_matrix

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
    snapshot, version = cand["lake_snapshot_id"], cand["best_model_version"]
    tracker, the_lake = tracking.tracker(), lake.lake()
    with the_lake.connection(read_only=True) as con:
        test = load_split(con, "test", snapshot)
    current = tracker.champion_info()
    champion = current if current is not None and current.version != version else None  # not against itself
    P_test = tracker.load_version(version).predict_proba(test.X)
    j = judge(test.Y, P_test,
              tracker.load_uri(cand["baseline_model_uri"]).predict_proba(test.X),
              tracker.load_version(champion.version).predict_proba(test.X) if champion else None,
              oracle_matrix(lake.settings().oracle, test.spotify_ids), gates_config.thresholds())
    record = Evaluation(
        datetime.now(timezone.utc), context.run.run_id, snapshot, version, cand["best_run_id"], cand["best_family"],
        len(test), j.candidate["mean_roc_auc"], j.candidate["mean_pr_auc"], j.candidate["mean_log_loss"],
        j.candidate["mean_brier"], j.baseline["mean_roc_auc"], j.baseline["mean_log_loss"],
        champion.version if champion else None, *(_means(j.champion) + _means(j.oracle)),
        j.auc_ratio_to_oracle, j.log_loss_ratio_to_oracle, j.decision.promote, j.decision.summary,
        json.dumps(j.candidate["roc_auc"]))
    _log_test_calibration(tracker, cand["best_run_id"], cand["best_family"], test.Y, P_test, j.candidate)
    with the_lake.connection() as con:
        the_lake.write(lambda c: append_evaluation(c, record), con=con, what="ml.evaluations")
        written = the_lake.snapshot_id(con)
    tracker.set_version_tag(version, "evaluation", j.decision.summary[:500])
    return dg.MaterializeResult(metadata=_metadata(record, written, current) | {
        "test_mean_ece": j.candidate["mean_ece"], "test_mean_ece_excess": j.candidate["mean_ece_excess"]})


def _log_test_calibration(tracker: Tracker, run_id: str, family: str, Y, P, metrics: dict) -> None:
    """The candidate's calibration on the test split, into its own MLflow run: ECE per country and its
    means (test_ece_US, test_mean_ece, test_mean_ece_excess) and the per-country reliability curves."""
    from hit_platform.adapters.reports import plots  # matplotlib: only when an evaluation runs

    fig = plots.reliability_by_country(Y, P, f"{family}: reliability by country (test)")
    try:
        ece = {k: metrics[k] for k in ("ece", "mean_ece", "mean_ece_excess")}
        tracker.log_to_run(run_id, flat_metrics("test", ece), {"reliability_by_country_test": fig})
    finally:
        plots.close(fig)


def _means(metrics: dict | None) -> tuple:
    return (metrics["mean_roc_auc"], metrics["mean_log_loss"]) if metrics else (None, None)


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
    if not ev.get("promote"):
        verdict = f"its evaluation decided: {ev.get('decision', 'no decision recorded')}"
    else:
        gate = gate_policy.verdict(instance, dg.AssetCheckKey(EVALUATION, "promotion_gate"))
        if gate is None:
            return
        verdict = f"ml/model_evaluation:promotion_gate {gate}"
    keeps = f"the champion stays version {champion_version}" if champion_version else "there is no champion yet"
    raise dg.Failure(
        description=(f"refused to promote model version {ev.get('candidate_version')} "
                     f"({ev.get('candidate_family')}): {verdict}. {keeps.capitalize()}. To proceed: train a better "
                     f"candidate or change the thresholds (HIT_GATE_*), then `hit-platform build`, which evaluates "
                     f"it again with its gate."),
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
    kept = None
    if before is None or str(before.version) != candidate:
        back = model_events.rolled_back_from(the_lake, candidate)
        if back is not None:
            kept = (f"version {candidate} was rolled back from on {back.event_at:%Y-%m-%d %H:%M:%S} UTC by "
                    f"{back.who} ({back.reason}): not promoted again; `hit-platform rollback --to {candidate}` "
                    "brings it back")
            context.log.warning(kept)
        elif before is not None and promotion.promotion_mode() == "shadow":
            shadowing = tracker.challenger_info()
            if shadowing is None or str(shadowing.version) != candidate:
                tracker.set_challenger(candidate)
                model_events.record(the_lake, model_events.new_event(
                    "challenger", tracker.model_name, before.version, candidate, f"Dagster run {context.run.run_id}",
                    f"shadows the champion on live traffic until shadow_gate decides: "
                    f"{ev.get('decision', 'the promotion gate passed')}"[:500], context.run.run_id))
            kept = (f"HIT_PROMOTION_MODE=shadow: version {candidate} passed the gates and is the challenger; "
                    f"ml/shadow_promotion makes it champion once ml/shadow_evaluation:shadow_gate passes")
            context.log.info(kept)
        else:
            tracker.promote(candidate)
            tracker.set_version_tag(candidate, "promoted_by_dagster_run", context.run.run_id)
            model_events.record(the_lake, model_events.new_event(
                "promote", tracker.model_name, before.version if before else None, candidate,
                f"Dagster run {context.run.run_id}", str(ev.get("decision", "the promotion gate passed"))[:500],
                context.run.run_id))
    info = tracker.champion_info()
    if kept:  # the champion stays: its metadata, not the candidate's
        shadowing = tracker.challenger_info()
        return dg.MaterializeResult(metadata={
            "model_uri": f"models:/{info.name}@champion", "model_version": info.version,
            "mlflow_run_id": info.run_id, "previous_version": info.version, "not_promoted": kept,
            "challenger_version": shadowing.version if shadowing else "none"})
    meta = {"model_uri": f"models:/{info.name}@champion", "model_version": info.version,
            "mlflow_run_id": info.run_id, "previous_version": before.version if before else "none",
            "family": ev["candidate_family"], "test_mean_roc_auc": ev["test_mean_roc_auc"],
            "test_mean_log_loss": ev["test_mean_log_loss"], "lake_snapshot_id": ev["lake_snapshot_id"],
            **{k: info.tags[k] for k in ("git_commit", "git_dirty", "dagster_run_id") if k in info.tags}}
    for k in ("auc_ratio_to_oracle", "log_loss_ratio_to_oracle", "oracle_mean_roc_auc"):
        if k in ev:
            meta[k] = ev[k]
    return dg.MaterializeResult(metadata=meta)
