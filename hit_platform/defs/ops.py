"""Monitoring assets (`ops`): is the deployed model still right, and is serving healthy?

Each one appends its figures to `ops.monitor_metrics`; a breach of a threshold
(`HIT_MONITOR_*`) writes an alert to `ops.alerts` (kind `drift` for the two drift
monitors, which makes the drift sensor retrain; `monitor_breach` otherwise).
"""

import dagster as dg

from hit_platform.adapters.lake.tables import evaluations
from hit_platform.steps import monitors as monitor_steps
from hit_platform.adapters.alerts import raise_alert
from hit_platform.steps.datasets import load_split
from hit_platform.adapters.reports.dashboard import render as render_dashboard
from hit_platform.defs.ml.evaluation import CHAMPION, EVALUATION
from hit_platform.defs.ml.predictions import BATCH_PREDICTIONS
from hit_platform.defs.resources import LakeResource, MonitorsResource, TrackingResource, serving_settings
from hit_platform.defs.serving import DEPLOYMENT
from hit_platform.defs.core import SONG_LABELS
from hit_platform.serving import process

SERVED_FEATURE_DRIFT = dg.AssetKey(["ops", "served_feature_drift"])
PREDICTION_DRIFT = dg.AssetKey(["ops", "prediction_drift"])
DELAYED_LABELS = dg.AssetKey(["ops", "delayed_label_evaluation"])
SERVING_HEALTH = dg.AssetKey(["ops", "serving_health"])
MONITORS = [SERVED_FEATURE_DRIFT, PREDICTION_DRIFT, DELAYED_LABELS, SERVING_HEALTH]
ALERT_KIND = {"served_feature_drift": "drift", "prediction_drift": "drift"}


def _champion(tracking: TrackingResource):
    info = tracking.tracker().champion_info()
    snapshot = int(info.tags["lake_snapshot_id"]) if info and info.tags.get("lake_snapshot_id") else None
    return info, snapshot


def _report(context: dg.AssetExecutionContext, lake: LakeResource, result: monitor_steps.MonitorResult):
    the_lake = lake.lake()
    written = monitor_steps.record(the_lake, result, context.run.run_id)
    if result.breached:
        raise_alert(the_lake, kind=ALERT_KIND.get(result.monitor, "monitor_breach"), severity="warning",
                    what=result.summary, where=f"ops/{result.monitor}", run_id=context.run.run_id,
                    alert_id=f"{result.monitor}:{context.run.run_id}",
                    details={"model_version": result.model_version, **result.metrics})
        context.log.warning(f"{result.monitor}: {result.summary}")
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
        result = monitor_steps.served_feature_drift(the_lake, con, monitors.thresholds(),
                                                 info.version if info else None, snapshot)
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
        result = monitor_steps.prediction_drift(the_lake, con, monitors.thresholds(),
                                             info.version if info else None, reference)
    return _report(context, lake, result)


@dg.asset(key=DELAYED_LABELS, deps=[BATCH_PREDICTIONS, SONG_LABELS, CHAMPION], group_name="ops",
          code_version="1", kinds={"duckdb"})
def delayed_label_evaluation(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                             monitors: MonitorsResource) -> dg.MaterializeResult:
    """The champion's earlier predictions (batch and served, songs outside its train split) scored
    against the labels later charts revealed, next to the test ROC AUC it was promoted with."""
    info, _ = _champion(tracking)
    the_lake = lake.lake()
    with the_lake.connection(read_only=True) as con:
        if info is None:
            result = monitor_steps.MonitorResult("delayed_label_evaluation", None, False, "no champion yet")
        else:
            judged = evaluations(con, candidate_version=info.version)
            promoted = judged[-1].candidate_mean_roc_auc if judged else None
            result = monitor_steps.delayed_label_evaluation(the_lake, con, monitors.thresholds(), info.version,
                                                         promoted)
    return _report(context, lake, result)


@dg.asset(key=SERVING_HEALTH, deps=[DEPLOYMENT], group_name="ops", code_version="1", kinds={"ray"})
def serving_health(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                   monitors: MonitorsResource) -> dg.MaterializeResult:
    """Request rate, error rate and p50/p99 latency from the inference log window, and the serving
    process tree's CPU and memory; breached when serving is down, erring, slow or too large."""
    st = process.status(serving_settings(lake, tracking))
    the_lake = lake.lake()
    with the_lake.connection(read_only=True) as con:
        result = monitor_steps.serving_health(the_lake, con, monitors.thresholds(), st.model_version,
                                           st.running, st.pid)
    return _report(context, lake, result)


DASHBOARD = dg.AssetKey(["ops", "dashboard"])


@dg.asset(key=DASHBOARD, deps=[*MONITORS, EVALUATION], group_name="ops", code_version="1",
          kinds={"html"})
def dashboard(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """An HTML report under warehouse/reports/: model quality over versions, per-country ROC AUC,
    drift, serving latency, monitors and alerts. Open the file linked in the metadata in a browser;
    the summary below is the short version."""
    the_lake = lake.lake()
    board = render_dashboard(the_lake)
    out = lake.settings().warehouse / "reports" / "dashboard.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(board.html, encoding="utf-8")
    tmp.replace(out)  # readers never see half a page
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(out)), "open": dg.MetadataValue.url(out.resolve().as_uri()),
        "summary": dg.MetadataValue.md(board.summary_md), "bytes": len(board.html)})
