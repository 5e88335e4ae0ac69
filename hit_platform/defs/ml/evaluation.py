"""Evaluation of the best candidate on the test split, the promotion gate, and the champion."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from hit_platform.defs.gate_policy import gated
from hit_platform.adapters import model_events
from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import Evaluation
from hit_platform.adapters.model_evaluation import decision_values, evaluate_candidate, recorded_decision
from hit_platform.adapters.tracking import Tracker
from hit_platform.defs.automation import WITH_ITS_ASSET
from hit_platform.defs import gate_policy
from hit_platform.defs.gate_checks import alert_on_failure
from hit_platform.defs.resources import GatesResource, LakeResource, PromotionResource, TrackingResource
from hit_platform.defs.ml.training import CANDIDATES
from hit_platform.domain.promotion import RolledBack, champion_move, champion_moved_since, promotion_refusal

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
    on the test split goes into its MLflow run: test_ece_<country>, test_mean_ece, test_mean_ece_excess,
    test_pooled_ece, test_pooled_ece_excess and plots/reliability_by_country_test.png."""
    cand = upstream_metadata(context, CANDIDATES)
    with gate_policy.unjudged_refused():  # the test split only as the blocking gates passed it at that snapshot
        e = evaluate_candidate(lake.lake(), tracking.tracker(), cand, gates_config.thresholds().promotion(),
                               lake.settings().oracle, context.run.run_id, gates=gate_policy.split_gates())
    return dg.MaterializeResult(metadata=_metadata(e.record, e.written, e.champion) | {
        "test_mean_ece": e.judgement.candidate["mean_ece"],
        "test_mean_ece_excess": e.judgement.candidate["mean_ece_excess"],
        "test_pooled_ece": e.judgement.candidate["pooled_ece"],
        "test_pooled_ece_excess": e.judgement.candidate["pooled_ece_excess"]})


def _metadata(e: Evaluation, written: int, champion) -> dict:
    """What the UI shows of an evaluation; the promotion gate and the champion re-read the lake row itself."""
    meta = {k: v for k, v in decision_values(e).items() if k != "judged_against"}
    return meta | {"lake_snapshot_written": written, "champion_version": champion.version if champion else "none"}


def deciding_run(context, key: dg.AssetKey) -> tuple[str, bool, dict]:
    """(Dagster run id, whether this instance ran it, metadata) of the latest materialization of `key`. The run id
    is the event's own: "" for a materialization reported by hand (runless), whatever its metadata says."""
    latest = context.instance.fetch_materializations(key, limit=1).records
    if not latest:
        raise dg.Failure(f"{key.to_user_string()} has never been materialized")
    run_id = latest[0].run_id or ""
    meta = {k: v.value for k, v in latest[0].asset_materialization.metadata.items()}
    return run_id, bool(run_id) and context.instance.get_run_by_id(run_id) is not None, meta


def decided_evaluation(context, lake: Lake, tracker: Tracker) -> tuple[dict, dict | None, str | None]:
    """(metadata, decision, why it decides nothing) of the latest ml/model_evaluation: the decision is the
    ml.evaluations row its run wrote (`adapters.model_evaluation.recorded_decision`), never the metadata."""
    run_id, known, meta = deciding_run(context, EVALUATION)
    row, why = recorded_decision(lake, tracker, run_id, known, meta)
    return meta, row, why


@dg.asset_check(asset=EVALUATION, blocking=True, automation_condition=WITH_ITS_ASSET)
def promotion_gate(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                   tracking: TrackingResource) -> dg.AssetCheckResult:
    """The candidate beats the baseline clearly and is not worse than the champion beyond the
    tolerances, overall and in every country; only then does the champion alias move. It judges the
    decision its evaluation's run wrote to ml.evaluations: a materialization reported by hand decides nothing."""
    meta, row, why = decided_evaluation(context, lake.lake(), tracking.tracker())
    shown = (row or {}) if why else meta
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=why is None and row["promote"], description=why or row["decision"],
        metadata={k: shown[k] for k in shown if k.endswith(("roc_auc", "log_loss", "version", "ece", "ece_excess"))
                  and k != "judged_against" and shown[k] is not None}))


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
    run it is in: the decision is the ml.evaluations row its evaluation's run wrote (a materialization
    reported by hand decides nothing); a candidate whose evaluation says refuse, or whose `promotion_gate`
    did not pass that very evaluation, or that is not registered or abandoned, is refused with an error and
    the alias does not move. It stays too when the champion moved since the candidate was judged against
    it, and for a version a person rolled back from (`hit-platform rollback`); `rollback --to` can."""
    tracker, the_lake = tracking.tracker(), lake.lake()
    _, ev, why = decided_evaluation(context, the_lake, tracker)
    if why:
        raise dg.Failure(description=f"refused to promote: {why}", allow_retries=False)
    with moving_aliases(context, the_lake, tracker):  # from reading where the champion is to recording the move
        before = tracker.champion_info()
        refuse_unless_promoted(context.instance, ev, before.version if before else None)
        candidate = str(ev["candidate_version"])
        back = model_events.rolled_back_from(the_lake, candidate)
        move = champion_move(candidate, before.version if before else None, promotion.promotion_mode(),
                             RolledBack(back.event_at, back.who, back.reason) if back else None)
        if move.kind in ("promote", "challenger"):  # not over a move made since the candidate was judged
            move = champion_moved_since(candidate, ev["judged_against"], before.version if before else None) or move
        if move.kind == "keep":
            context.log.warning(move.why)
        elif move.kind == "challenger":
            model_events.set_challenger(the_lake, tracker, candidate, before.version,
                                        f"shadows the champion on live traffic until shadow_gate decides: "
                                        f"{ev['decision']}", context.run.run_id)
            context.log.info(move.why)
        elif move.kind == "promote":
            model_events.promote(the_lake, tracker, candidate, before.version if before else None,
                                 str(ev["decision"]), context.run.run_id)
    return dg.MaterializeResult(metadata=_champion_metadata(tracker, before, ev, move.why))


@contextmanager
def moving_aliases(context, the_lake: Lake, tracker: Tracker) -> Iterator[None]:
    """The alias lock held (`model_events.alias_lock`), after finishing first the moves a killed process left half
    done (reported to Dagster, logged)."""
    with model_events.alias_lock(tracker):
        for found in model_events.reconcile(the_lake, tracker, reporter(context.instance)):
            context.log.warning(f"{found.kind} {found.from_version} -> {found.to_version}: {found.reason}")
        yield


def reporter(instance: dg.DagsterInstance):
    """Tells Dagster of a champion move made outside a run of this asset (a rollback, a shadow promotion, or one
    of them finished by reconciliation): ml/champion_model's new value, so what depends on it follows."""
    return lambda event: instance.report_runless_asset_event(
        dg.AssetMaterialization(CHAMPION, metadata=model_events.champion_metadata(event)))


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
