"""Monitoring assets (`ops`): is the deployed model still right, and is serving healthy?

Each one appends its figures to `ops.monitor_metrics` (the performance estimate: to
`ops.performance_estimates`); a breach of a threshold (`HIT_MONITOR_*`) writes an alert to
`ops.alerts` (kind `drift` for the two drift monitors and `performance_estimate` for the
estimate, which make the drift sensor retrain; `monitor_breach` otherwise).
"""

import json
from datetime import datetime, timezone

import dagster as dg

from hit_platform.adapters.lake.tables import evaluations
from hit_platform.steps import attribution_drift as attribution_steps
from hit_platform.steps import monitors as monitor_steps
from hit_platform.steps import performance_estimates as estimates
from hit_platform.adapters.alerts import raise_alert
from hit_platform.adapters.model_explanations import NoDeclaredBackground, load_background
from hit_platform.domain.explain import Explainer
from hit_platform.adapters.model_monitoring import estimate_performance
from hit_platform.steps.datasets import load_split
from hit_platform.adapters.model_importance import load_importance
from hit_platform.adapters.reports.dashboard import publish, render_current
from hit_platform.defs.ml.evaluation import CHAMPION, EVALUATION
from hit_platform.defs.ml.explanations import BATCH_EXPLANATIONS
from hit_platform.defs.ml.predictions import BATCH_PREDICTIONS
from hit_platform.defs.lake_asset import commit
from hit_platform.defs.resources import LakeResource, MonitorsResource, TrackingResource, serving_settings
from hit_platform.defs.serving import DEPLOYMENT
from hit_platform.defs.core import SONG_LABELS
from hit_platform.serving import process

SERVED_FEATURE_DRIFT = dg.AssetKey(["ops", "served_feature_drift"])
PREDICTION_DRIFT = dg.AssetKey(["ops", "prediction_drift"])
DELAYED_LABELS = dg.AssetKey(["ops", "delayed_label_evaluation"])
SERVING_HEALTH = dg.AssetKey(["ops", "serving_health"])
PERFORMANCE_ESTIMATE = dg.AssetKey(["ops", "performance_estimate"])
ATTRIBUTION_DRIFT = dg.AssetKey(["ops", "attribution_drift"])
MONITORS = [SERVED_FEATURE_DRIFT, PREDICTION_DRIFT, DELAYED_LABELS, SERVING_HEALTH, PERFORMANCE_ESTIMATE,
            ATTRIBUTION_DRIFT]
ALERT_KIND = {"served_feature_drift": "drift", "prediction_drift": "drift",
              **{f"performance_estimate_{s}": "performance_estimate" for s in estimates.SOURCES}}


def _champion(tracking: TrackingResource):
    info = tracking.tracker().champion_info()
    snapshot = int(info.tags["lake_snapshot_id"]) if info and info.tags.get("lake_snapshot_id") else None
    return info, snapshot


def _record(context: dg.AssetExecutionContext, lake: LakeResource, result: monitor_steps.MonitorResult,
            where: str | None = None, details: dict | None = None) -> int:
    """Append the result to ops.monitor_metrics and, on a breach, raise its alert; returns the snapshot written."""
    the_lake = lake.lake()
    written = commit(the_lake, lambda con: monitor_steps.record(con, result, context.run.run_id), "ops.monitor_metrics")
    if result.breached:
        regions = result.regions_breached
        raise_alert(the_lake, kind=ALERT_KIND.get(result.monitor, "monitor_breach"), severity="warning",
                    what=result.summary,
                    where=(where or f"ops/{result.monitor}") + (f" (region {', '.join(regions)})" if regions else ""),
                    run_id=context.run.run_id, alert_id=f"{result.monitor}:{context.run.run_id}",
                    details={"model_version": result.model_version, **result.metrics, **(details or {}),
                             **({"regions": regions} if regions else {})})
        context.log.warning(f"{result.monitor}: {result.summary}")
    return written


def _report(context: dg.AssetExecutionContext, lake: LakeResource, result: monitor_steps.MonitorResult):
    written = _record(context, lake, result)
    return dg.MaterializeResult(metadata={**result.metadata(), "lake_snapshot_id": written})


@dg.asset(key=SERVED_FEATURE_DRIFT, deps=[DEPLOYMENT], group_name="ops", code_version="1",
          kinds={"duckdb"})
def served_feature_drift(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                         monitors: MonitorsResource) -> dg.MaterializeResult:
    """PSI of every feature of the songs served in the window (ops.inference_log) against the train
    split the serving model was trained on (DuckLake time travel to its lake snapshot)."""
    info, snapshot = _champion(tracking)
    the_lake = lake.lake()
    with the_lake.connection(read_only=True) as con:
        result = monitor_steps.served_feature_drift(con, monitors.thresholds(), info.version if info else None,
                                                    snapshot)
    return _report(context, lake, result)


@dg.asset(key=PREDICTION_DRIFT, deps=[DEPLOYMENT], group_name="ops", code_version="1",
          kinds={"duckdb", "sklearn"})
def prediction_drift(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                     monitors: MonitorsResource) -> dg.MaterializeResult:
    """PSI of each country's served probabilities against the same model's probabilities on its
    validation split: the model now sees a different world than the one it was checked on."""
    info, snapshot = _champion(tracking)
    the_lake = lake.lake()
    reference = None
    with the_lake.connection(read_only=True) as con:
        if info is not None and snapshot is not None:
            model = tracking.tracker().load_version(info.version)
            reference = model.predict_proba(load_split(con, "validation", snapshot).X)
        result = monitor_steps.prediction_drift(con, monitors.thresholds(), info.version if info else None,
                                                reference)
    return _report(context, lake, result)


@dg.asset(key=DELAYED_LABELS, deps=[BATCH_PREDICTIONS, SONG_LABELS, CHAMPION], group_name="ops",
          code_version="2", kinds={"duckdb"})
def delayed_label_evaluation(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                             monitors: MonitorsResource) -> dg.MaterializeResult:
    """The champion's earlier predictions (batch and served, songs outside its train split) scored
    against the labels later charts revealed, next to the test ROC AUC it was promoted with: the
    72-country mean, and each region's mean, so a region whose taste changed is named in its alert."""
    info, _ = _champion(tracking)
    the_lake = lake.lake()
    with the_lake.connection(read_only=True) as con:
        if info is None:
            result = monitor_steps.MonitorResult("delayed_label_evaluation", None, False, "no champion yet")
        else:
            judged = evaluations(con, candidate_version=info.version)
            last = judged[-1] if judged else None
            result = monitor_steps.delayed_label_evaluation(
                con, monitors.thresholds(), info.version, last.candidate_mean_roc_auc if last else None,
                json.loads(last.per_country_roc_auc) if last and last.per_country_roc_auc else None,
                last.test_songs if last else None)
    # the labels that arrived, beside the label-free estimates
    realized = the_lake.write(estimates.realize, what=f"{estimates.TABLE} realized")
    context.log.info(f"realized values written beside {realized} performance estimate rows")
    return _report(context, lake, result)


@dg.asset(key=PERFORMANCE_ESTIMATE, deps=[DEPLOYMENT, BATCH_PREDICTIONS], group_name="ops", code_version="1",
          kinds={"duckdb", "sklearn"})
def performance_estimate(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                         monitors: MonitorsResource) -> dg.MaterializeResult:
    """The serving model's ROC AUC and log loss per country, estimated without labels from its own
    probabilities (with intervals from sampling and from its calibration error on the test split), on
    the songs it served in the window and on its latest batch predictions; appended to
    `ops.performance_estimates`. Too many countries estimated well below their test AUC raise an alert
    (kind `performance_estimate`), which retrains like a drift alert. A change of taste it cannot see:
    `ops/delayed_label_evaluation` catches that once labels arrive, and writes the realized values here."""
    info, snapshot = _champion(tracking)
    if info is None or snapshot is None:
        return dg.MaterializeResult(metadata={"summary": "no champion yet", "breached": False})
    results = estimate_performance(lake.lake(), tracking.tracker(), info, snapshot, monitors.thresholds(),
                                   context.run.run_id, datetime.now(timezone.utc))
    meta = {"model_version": info.version, "breached": any(r.breached for r in results)}
    for r in results:
        meta["lake_snapshot_id"] = _record(context, lake, r.monitor_result(), where="ops/performance_estimate",
                                           details={"degraded": r.degraded})
        meta[f"{r.source}_summary"] = r.summary
        if not r.rows.empty:
            meta[f"{r.source}_songs"] = int(r.rows["songs"].iloc[0])
            meta[f"{r.source}_worst_countries"] = dg.MetadataValue.md(
                r.worst(10).to_markdown(index=False, floatfmt=".3f"))
    return dg.MaterializeResult(metadata=meta)


@dg.asset(key=SERVING_HEALTH, deps=[DEPLOYMENT], group_name="ops", code_version="1", kinds={"ray"})
def serving_health(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                   monitors: MonitorsResource) -> dg.MaterializeResult:
    """Request rate, error rate and p50/p99 latency from the inference log window, and the serving
    process tree's CPU and memory; breached when serving is down, erring, slow or too large."""
    st = process.status(serving_settings(lake, tracking))
    the_lake = lake.lake()
    with the_lake.connection(read_only=True) as con:
        result = monitor_steps.serving_health(con, monitors.thresholds(), st.model_version, st.running, st.pid)
    return _report(context, lake, result)


@dg.asset(key=ATTRIBUTION_DRIFT, deps=[DEPLOYMENT, BATCH_EXPLANATIONS], group_name="ops", code_version="1",
          kinds={"duckdb", "sklearn"})
def attribution_drift(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                      monitors: MonitorsResource) -> dg.MaterializeResult:
    """Whether the serving model still relies on the features it relied on for its batch: each country's
    shares of mean |attribution| per feature on the newest served songs (exact attributions recomputed
    from the logged features, at most HIT_MONITOR_ATTRIBUTION_SAMPLE of them) against ml.batch_explanations
    of the same version. Breached when the median over countries of the share moved (total variation)
    passes HIT_MONITOR_MAX_ATTRIBUTION_SHIFT: a feature's pipeline broke upstream even if the
    probabilities look normal. Its alert (kind `monitor_breach`) asks for a person, not a retrain:
    retraining on a broken feature would learn the break."""
    info, _ = _champion(tracking)
    t = monitors.thresholds()
    with lake.lake().connection(read_only=True) as con:
        served = attribution_steps.served_sample(con, t, info.version) if info else None
        batch, batch_songs = attribution_steps.batch_importance(con, info.version) if info else (None, 0)
    result = _attribution_drift(tracking, info, t, served, batch, batch_songs)
    return _report(context, lake, result)


def _attribution_drift(tracking, info, t, served, batch, batch_songs) -> monitor_steps.MonitorResult:
    if info is None:
        return attribution_steps.not_judged(None, "no champion yet")
    n = len(served)
    if n < t.min_rows:
        return attribution_steps.not_judged(info.version, f"{n} served songs with every feature in the last "
                                            f"{t.window_hours:g} h, fewer than {t.min_rows}", served_songs=n)
    if batch is None or batch_songs < t.min_rows:
        return attribution_steps.not_judged(info.version, f"{batch_songs} songs of version {info.version}'s batch "
                                            f"explained (ml/batch_explanations), fewer than {t.min_rows}",
                                            served_songs=n, batch_songs=batch_songs)
    tracker = tracking.tracker()
    try:
        explainer = Explainer(tracker.load_version(info.version), load_background(tracker, info.version))
    except NoDeclaredBackground as exc:
        return attribution_steps.not_judged(info.version, str(exc), served_songs=n)
    return attribution_steps.attribution_drift(t, info.version, served, explainer, batch, batch_songs)


DASHBOARD = dg.AssetKey(["ops", "dashboard"])


@dg.asset(key=DASHBOARD, deps=[*MONITORS, EVALUATION], group_name="ops", code_version="3",
          kinds={"html"})
def dashboard(context: dg.AssetExecutionContext, lake: LakeResource,
              tracking: TrackingResource) -> dg.MaterializeResult:
    """An HTML report under warehouse/reports/: model quality over versions, per-country ROC AUC,
    drift, serving latency, monitors and alerts, each with its age, and whether the champion shown is
    the one served now. The file reloads itself (HIT_DASHBOARD_REFRESH_SECONDS); `hit-platform
    dashboard` serves it re-rendered. Open the file linked in the metadata in a browser; the summary
    below is the short version."""
    settings = lake.settings()
    board = render_current(lake.lake(), process.status(serving_settings(lake, tracking)),
                           refresh_seconds=settings.dashboard.refresh_seconds,
                           origin="Written by the Dagster asset ops/dashboard: it shows the lake as of then. "
                                  "Live: hit-platform dashboard.",
                           importance_of=lambda version: load_importance(tracking.tracker(), version))
    out = publish(board, settings.warehouse / "reports" / "dashboard.html")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(out)), "open": dg.MetadataValue.url(out.resolve().as_uri()),
        "summary": dg.MetadataValue.md(board.summary_md), "bytes": len(board.html)})
