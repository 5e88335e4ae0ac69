"""Shadow promotion (HIT_PROMOTION_MODE=shadow): the challenger judged on live traffic, then promoted.

`ml/champion_model` sets a candidate that passed every gate as the registry alias `challenger`;
serving scores every answered song with it too (`ops.shadow_log`). Once it has shadowed
HIT_SHADOW_MIN_REQUESTS songs, `shadow_sensor` runs `ml/shadow_evaluation`, whose blocking
`shadow_gate` judges the agreement of the two on those songs (and their ROC AUC once labels
arrive), and `ml/shadow_promotion`, which moves `champion` to the challenger. The gate policy holds
`ml/shadow_promotion` on every path unless the gate passed the latest evaluation, and the asset checks
it once more itself, like `ml/champion_model` does.

Both assets follow live traffic, not data: they are left out of automation conditions and of
`hit-platform build` (BY_SENSOR), and run by the sensor, the UI or `dagster asset materialize`.
"""

from datetime import datetime, timezone

import dagster as dg

from hit_platform.defs.gate_policy import gated
from hit_platform.adapters import model_events
from hit_platform.adapters.tracking import ABANDONED
from hit_platform.defs import gate_policy
from hit_platform.defs.gate_checks import alert_on_failure
from hit_platform.defs.core import SONG_LABELS
from hit_platform.defs.ml.evaluation import CHAMPION, deciding_run, moving_aliases
from hit_platform.defs.ml.features import FEATURES, SPLITS_KEY
from hit_platform.defs.resources import (LakeResource, PromotionResource, ServingResource, TrackingResource,
                                         serving_settings)
from hit_platform.domain.promotion import (ShadowComparison, ShadowThresholds, shadow_promotion_refusal,
                                           shadow_run_key)
from hit_platform.domain.recorded_decision import unpromotable, unrecorded
from hit_platform.steps import shadow_comparison

SHADOW_EVALUATION = dg.AssetKey(["ml", "shadow_evaluation"])
SHADOW_PROMOTION = dg.AssetKey(["ml", "shadow_promotion"])
BY_SENSOR = frozenset({SHADOW_EVALUATION, SHADOW_PROMOTION})
GATE = dg.AssetCheckKey(SHADOW_EVALUATION, "shadow_gate")
DECIDED_BY = ("champion_version", "challenger_version", "promote", "decision")  # the metadata must agree on these
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


# Every lake table it reads is a parent: the shadowed songs are matched to ml.features, and their labels
# (core.song_labels) outside the train split (ml.splits) decide the AUC rule; their gates hold it.
@dg.asset(key=SHADOW_EVALUATION, deps=[CHAMPION, FEATURES, SONG_LABELS, SPLITS_KEY], group_name="ml", code_version="1",
          kinds={"duckdb", "mlflow"})
@gated
def shadow_evaluation(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                      promotion: PromotionResource) -> dg.MaterializeResult:
    """The challenger against the champion on the distinct songs it shadowed (ops.shadow_log joined to
    ops.inference_log; a song is its features, weighted once however often it was sent): per country mean
    |difference|, prediction PSI and top-5 agreement, the top-5 overlap, and both models' ROC AUC on the
    shadowed songs the lake has labels for (joined on the lake's own song features). Decides whether to promote
    (HIT_SHADOW_* thresholds) and writes the decision to ml.shadow_evaluations; `shadow_gate` carries it."""
    tracker, t = tracking.tracker(), ShadowThresholds.of(promotion.shadow())
    champion, challenger = tracker.champion_info(), tracker.challenger_info()
    the_lake, at, run_id = lake.lake(), datetime.now(timezone.utc), context.run.run_id
    if challenger is None or champion is None or challenger.version == champion.version:
        decision = "no challenger shadows the champion: nothing to judge or promote"
        the_lake.write(lambda con: shadow_comparison.record(
            con, None, champion.version if champion else None, False, decision, run_id, at),
            what="ml.shadow_evaluations")
        return dg.MaterializeResult(metadata={
            "challenger_version": "none", "champion_version": champion.version if champion else "none",
            "promote": False, "decision": decision})
    with the_lake.reading() as con:
        cmp = (shadow_comparison.compare(con, champion.version, challenger.version, min_labelled=t.min_labelled_songs)
               if con else ShadowComparison(str(champion.version), str(challenger.version)))
    passed, _ = cmp.judge(t)
    decision = cmp.summary(t)
    context.log.info(decision)
    # the judgement as this run computed it: what shadow_gate and ml/shadow_promotion re-read
    the_lake.write(lambda con: shadow_comparison.record(con, cmp, champion.version, passed, decision, run_id, at),
                   what="ml.shadow_evaluations")
    return dg.MaterializeResult(metadata={**cmp.metadata(), "promote": passed, "decision": decision,
                                          "min_requests": t.min_requests})


def decided_shadow(context, lake: LakeResource, tracking: TrackingResource) -> tuple[dict, dict | None, str | None]:
    """(metadata, decision, why it decides nothing) of the latest ml/shadow_evaluation: the decision is the
    ml.shadow_evaluations row its run wrote, never the metadata (see `domain.recorded_decision`)."""
    run_id, known, meta = deciding_run(context, SHADOW_EVALUATION)
    with lake.lake().reading() as con:
        row = shadow_comparison.recorded(con, run_id) if con else None
    why = unrecorded("ml/shadow_evaluation", "ml.shadow_evaluations", run_id, known, row, meta, DECIDED_BY)
    if why is None and row["promote"]:
        tracker = tracking.tracker()
        version = str(row["challenger_version"])
        why = unpromotable(version, tracker.model_name, tracker.version_tags(version), ABANDONED)
    return meta, row, why


@dg.asset_check(asset=SHADOW_EVALUATION, blocking=True)
def shadow_gate(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                tracking: TrackingResource) -> dg.AssetCheckResult:
    """The challenger shadowed enough distinct live songs, agrees with the champion within HIT_SHADOW_*, and loses
    no ROC AUC on the labelled ones; with no challenger there is nothing to hold. It judges the decision its
    evaluation's run wrote to ml.shadow_evaluations: a materialization reported by hand decides nothing."""
    meta, row, why = decided_shadow(context, lake, tracking)
    idle = why is None and row["challenger_version"] == "none"
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=idle or (why is None and row["promote"]), description=why or row["decision"],
        metadata={k: meta[k] for k in meta if k.endswith(("version", "songs", "overlap", "diff", "psi", "roc_auc"))
                  and not isinstance(meta[k], dict)} if why is None else {}))


@dg.asset(key=SHADOW_PROMOTION, deps=[SHADOW_EVALUATION], group_name="ml", code_version="1", kinds={"mlflow"})
@gated
def shadow_promotion(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                     serving: ServingResource) -> dg.MaterializeResult:
    """The champion alias moved to the challenger that `shadow_gate` passed, the challenger alias removed,
    the move recorded in ops.model_events and reported as ml/champion_model's new value; a running serving
    process swaps in place. Refused when the evaluation did not decide promote, its gate did not pass it,
    or the aliases moved since it was judged."""
    from hit_platform.serving import process

    tracker, the_lake = tracking.tracker(), lake.lake()
    _, ev, why = decided_shadow(context, lake, tracking)
    if why:
        raise dg.Failure(description=f"refused to promote the challenger: {why}", allow_retries=False)
    with moving_aliases(context, the_lake, tracker):  # from reading where the aliases are to recording the move
        champion, challenger = tracker.champion_info(), tracker.challenger_info()
        if ev["challenger_version"] == "none":
            return dg.MaterializeResult(metadata={"promoted": False, "model_version": champion.version if champion
                                                  else "none", "decision": ev["decision"]})
        verdict = gate_policy.verdict(context.instance, GATE)
        refused = shadow_promotion_refusal(ev, str(verdict) if verdict is not None else None,
                                           (champion.version if champion else None,
                                            challenger.version if challenger else None))
        if refused:
            raise dg.Failure(description=refused, allow_retries=False)
        version, judged = str(ev["challenger_version"]), {"promoted_by": "shadow_gate",
                                                          "shadowed_songs": int(ev["shadowed_songs"] or 0)}
        event = model_events.promote(  # ml/champion_model's new value is reported with the move
            the_lake, tracker, version, champion.version, f"shadow_gate passed: {ev['decision']}",
            context.run.run_id, clear_challenger=True,
            report=lambda e: context.instance.report_runless_asset_event(
                dg.AssetMaterialization(CHAMPION, metadata=model_events.champion_metadata(e) | judged)))
    meta = model_events.champion_metadata(event) | judged
    settings, config = serving_settings(lake, tracking), serving.config()
    if process.status(settings, config).running:
        after = process.update(settings, config)
        meta["serving"] = f"{after.endpoint} answers with version {after.model_version}"
    context.log.info(f"promoted challenger {version} (was champion {champion.version})")
    return dg.MaterializeResult(metadata={**meta, "promoted": True})


def shadow_sensor(context: dg.SensorEvaluationContext, lake: LakeResource, tracking: TrackingResource,
                  promotion: PromotionResource):
    """Once the challenger has shadowed HIT_SHADOW_MIN_REQUESTS distinct songs beside the champion, judge it and
    promote it if its gate passes: one run at a time per (champion, challenger) pair, and a new one only when the
    distinct songs grew by a step (`domain.promotion.shadow_run_key`), so a failed judgement is retried on new songs."""
    tracker = tracking.tracker()
    champion, challenger = tracker.champion_info(), tracker.challenger_info()
    if challenger is None or champion is None:
        return dg.SkipReason("no challenger shadows the champion")
    need = promotion.shadow().min_requests
    with lake.lake().reading() as con:
        have = shadow_comparison.shadowed_songs(con, champion.version, challenger.version) if con else 0
    if have < need:
        return dg.SkipReason(f"challenger {challenger.version} has shadowed {have} of {need} distinct songs")
    pair = {"trigger": "shadow", "challenger_version": str(challenger.version),
            "champion_version": str(champion.version)}
    if context.instance.get_runs(dg.RunsFilter(tags=pair, statuses=IN_FLIGHT), limit=1):
        return dg.SkipReason(f"a judgement of challenger {challenger.version} is under way")
    # a judgement that failed is asked for again once enough new songs arrive (not on the same songs)
    return dg.RunRequest(run_key=shadow_run_key(champion.version, challenger.version, have, need),
                         asset_selection=[SHADOW_EVALUATION, SHADOW_PROMOTION], tags=pair)
