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

import dagster as dg

from hit_platform.defs.gate_policy import gated
from hit_platform.adapters import model_events
from hit_platform.defs import gate_policy
from hit_platform.defs.gate_checks import alert_on_failure
from hit_platform.defs.core import SONG_LABELS
from hit_platform.defs.ml.evaluation import CHAMPION, upstream_metadata
from hit_platform.defs.ml.features import FEATURES, SPLITS_KEY
from hit_platform.defs.resources import (LakeResource, PromotionResource, ServingResource, TrackingResource,
                                         serving_settings)
from hit_platform.domain.promotion import ShadowComparison, ShadowThresholds, shadow_promotion_refusal
from hit_platform.steps import shadow_comparison

SHADOW_EVALUATION = dg.AssetKey(["ml", "shadow_evaluation"])
SHADOW_PROMOTION = dg.AssetKey(["ml", "shadow_promotion"])
BY_SENSOR = frozenset({SHADOW_EVALUATION, SHADOW_PROMOTION})
GATE = dg.AssetCheckKey(SHADOW_EVALUATION, "shadow_gate")


# Every lake table it reads is a parent: the shadowed songs are matched to ml.features, and their labels
# (core.song_labels) outside the train split (ml.splits) decide the AUC rule; their gates hold it.
@dg.asset(key=SHADOW_EVALUATION, deps=[CHAMPION, FEATURES, SONG_LABELS, SPLITS_KEY], group_name="ml", code_version="1",
          kinds={"duckdb", "mlflow"})
@gated
def shadow_evaluation(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                      promotion: PromotionResource) -> dg.MaterializeResult:
    """The challenger against the champion on the songs it shadowed (ops.shadow_log joined to
    ops.inference_log): per country mean |difference|, prediction PSI and top-5 agreement, the top-5
    overlap, and both models' ROC AUC on the shadowed songs that have labels. Decides whether to promote
    (HIT_SHADOW_* thresholds); `shadow_gate` carries the decision."""
    tracker, t = tracking.tracker(), ShadowThresholds.of(promotion.shadow())
    champion, challenger = tracker.champion_info(), tracker.challenger_info()
    if challenger is None or champion is None or challenger.version == champion.version:
        return dg.MaterializeResult(metadata={
            "challenger_version": "none", "champion_version": champion.version if champion else "none",
            "promote": False, "decision": "no challenger shadows the champion: nothing to judge or promote"})
    with lake.lake().reading() as con:
        cmp = (shadow_comparison.compare(con, champion.version, challenger.version, min_labelled=t.min_labelled_songs)
               if con else ShadowComparison(str(champion.version), str(challenger.version)))
    passed, _ = cmp.judge(t)
    decision = cmp.summary(t)
    context.log.info(decision)
    return dg.MaterializeResult(metadata={**cmp.metadata(), "promote": passed, "decision": decision,
                                          "min_requests": t.min_requests})


@dg.asset_check(asset=SHADOW_EVALUATION, blocking=True)
def shadow_gate(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """The challenger shadowed enough live songs, agrees with the champion within HIT_SHADOW_*, and loses no
    ROC AUC on the labelled ones; with no challenger there is nothing to hold."""
    meta = upstream_metadata(context, SHADOW_EVALUATION)
    idle = meta["challenger_version"] == "none"
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=idle or bool(meta["promote"]), description=meta["decision"],
        metadata={k: meta[k] for k in meta if k.endswith(("version", "songs", "overlap", "diff", "psi", "roc_auc"))
                  and not isinstance(meta[k], dict)}))


@dg.asset(key=SHADOW_PROMOTION, deps=[SHADOW_EVALUATION], group_name="ml", code_version="1", kinds={"mlflow"})
@gated
def shadow_promotion(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                     serving: ServingResource) -> dg.MaterializeResult:
    """The champion alias moved to the challenger that `shadow_gate` passed, the challenger alias removed,
    the move recorded in ops.model_events and reported as ml/champion_model's new value; a running serving
    process swaps in place. Refused when the evaluation did not decide promote, its gate did not pass it,
    or the aliases moved since it was judged."""
    from hit_platform.serving import process

    ev = upstream_metadata(context, SHADOW_EVALUATION)
    tracker, the_lake = tracking.tracker(), lake.lake()
    for found in model_events.reconcile(the_lake, tracker):  # a move no event recorded (a killed process)
        context.log.warning(found.reason)
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
    version = str(ev["challenger_version"])
    event = model_events.promote(the_lake, tracker, version, champion.version, f"shadow_gate passed: {ev['decision']}",
                                 context.run.run_id, clear_challenger=True)
    meta = {"model_uri": f"models:/{tracker.model_name}@champion", "model_version": version,
            "previous_version": champion.version, "promoted_by": "shadow_gate", "model_event_id": event.event_id,
            "shadowed_songs": ev.get("shadowed_songs", 0)}
    context.instance.report_runless_asset_event(dg.AssetMaterialization(CHAMPION, metadata=meta))
    settings, config = serving_settings(lake, tracking), serving.config()
    if process.status(settings, config).running:
        after = process.update(settings, config)
        meta["serving"] = f"{after.endpoint} answers with version {after.model_version}"
    context.log.info(f"promoted challenger {version} (was champion {champion.version})")
    return dg.MaterializeResult(metadata={**meta, "promoted": True})


def shadow_sensor(context: dg.SensorEvaluationContext, lake: LakeResource, tracking: TrackingResource,
                  promotion: PromotionResource):
    """Once the challenger has shadowed HIT_SHADOW_MIN_REQUESTS songs beside the champion, judge it and
    promote it if its gate passes: one run per (champion, challenger) pair."""
    tracker = tracking.tracker()
    champion, challenger = tracker.champion_info(), tracker.challenger_info()
    if challenger is None or champion is None:
        return dg.SkipReason("no challenger shadows the champion")
    need = promotion.shadow().min_requests
    with lake.lake().reading() as con:
        have = shadow_comparison.shadowed_songs(con, champion.version, challenger.version) if con else 0
    if have < need:
        return dg.SkipReason(f"challenger {challenger.version} has shadowed {have} of {need} songs")
    return dg.RunRequest(run_key=f"shadow:{champion.version}:{challenger.version}",
                         asset_selection=[SHADOW_EVALUATION, SHADOW_PROMOTION],
                         tags={"trigger": "shadow", "challenger_version": str(challenger.version),
                               "champion_version": str(champion.version)})
