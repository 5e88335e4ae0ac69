"""Candidate models: every family trained on the train split, tuned on validation, tracked in MLflow."""

import dagster as dg

from hit_platform.defs import gate_policy
from hit_platform.defs.gate_policy import gated
from hit_platform.adapters.early_rebuild import EarlyRebuilds
from hit_platform.adapters.model_rebuild import reproduce
from hit_platform.adapters.model_training import Trained, train_and_register, training_data
from hit_platform.defs.automation import WITH_ITS_ASSET
from hit_platform.defs.ml.features import FEATURES, SPLITS_KEY
from hit_platform.defs.gate_checks import alert_on_failure
from hit_platform.defs.resources import LakeResource, TrackingResource, TrainingResource
from hit_platform.cluster.training import cluster_pool
from hit_platform.domain.models.candidates import TRAINING_LOG_PREFIX
from hit_platform.defs.core import SONG_LABELS

CANDIDATES = dg.AssetKey(["ml", "candidate_models"])


def splits_data_version(instance: dg.DagsterInstance, snapshot: int | None = None) -> str:
    """The data version of ml/splits: the latest one, or the one the lake held at `snapshot` (the newest
    materialization written at or before it); "" when this instance never recorded it."""
    if snapshot is None:
        event = instance.get_latest_materialization_event(SPLITS_KEY)
        return event.asset_materialization.tags.get("dagster/data_version", "") if event else ""
    cursor = None
    while True:  # newest first
        page = instance.fetch_materializations(SPLITS_KEY, limit=100, cursor=cursor)
        for r in page.records:
            written = r.asset_materialization.metadata.get("lake_snapshot_id")
            if written is not None and written.value <= snapshot:
                return r.asset_materialization.tags.get("dagster/data_version", "")
        if not page.has_more:
            return ""
        cursor = page.cursor


@dg.asset(key=CANDIDATES, deps=[SPLITS_KEY, FEATURES, SONG_LABELS], group_name="ml", code_version="1",
          kinds={"sklearn", "mlflow"})
@gated
def candidate_models(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                     training: TrainingResource) -> dg.MaterializeResult:
    """Candidate models, one MLflow run each: a per-country prior (the baseline), a linear model and
    gradient-boosted trees (and any other family in `hit_platform.domain.models`), each predicting all 72
    countries at once, hyper-parameters chosen on the validation split. The best one becomes a new
    version of the registered model `hit_model`, tagged with the lake snapshot, split data version,
    code version and this Dagster run. They train from the lake's newest snapshot, or from the past
    one the training settings pin (`HIT_TRAIN_SNAPSHOT`, `hit-platform rebuild --snapshot N`), and only
    from data every blocking gate passed at that snapshot (the verdicts in the lake)."""
    tracker = tracking.tracker()
    abandoned = tracker.mark_abandoned(recorded_versions(context.instance))
    for version, reason in abandoned:
        context.log.warning(f"model version {version} marked abandoned: {reason}")
    the_lake = lake.lake()
    # what it reads at that snapshot must be what the blocking gates passed there
    with gate_policy.unjudged_refused(), the_lake.connection(read_only=True) as con:
        data = training_data(the_lake, con, training.snapshot, gates=gate_policy.split_gates())
    if data.pinned:
        context.log.info(f"training from the pinned lake snapshot {data.snapshot} (the newest is {data.newest})")
    trained = train_and_register(tracker, data, seed=training.seed, families=training.family_names(),
                                 workers=training.workers, dagster_run_id=context.run.run_id,
                                 splits_data_version=splits_data_version(context.instance, training.snapshot),
                                 on_progress=lambda p: context.log.info(f"{TRAINING_LOG_PREFIX}{p}"),
                                 early=EarlyRebuilds(lake.settings(), context.run.run_id)
                                 if training.workers > 1 else None, pool=cluster_pool(training.ray_address),
                                 importance_songs=training.importance_songs, budget_s=training.budget_s)
    return dg.MaterializeResult(metadata={
        **_metadata(trained, data.snapshot, data.splits_fingerprint, training.seed, data.pinned),
        "mlflow_tracking_uri": tracker.uri, **trained.code,
        "abandoned_versions": dg.MetadataValue.json({v: r for v, r in abandoned})})


def _metadata(t: Trained, snapshot: int, splits_fingerprint: str, seed: int, pinned: bool) -> dict:
    """What the UI shows of the candidates, and what the evaluation and the reproducibility check read."""
    best, (run_id, uri) = t.best, t.best_run
    table = "| family | val mean AUC | val mean log loss | fit s | MLflow run | |\n|---|---|---|---|---|---|\n" + "\n".join(
        f"| {r.family} | {r.val_metrics['mean_roc_auc']:.4f} | {r.val_metrics['mean_log_loss']:.4f} | "
        f"{r.fit_seconds:.1f} | {t.runs[r.family][0]} | {'best' if r is best else ''} |" for r in t.results)
    return {
        "candidates": dg.MetadataValue.md(table),
        "best_family": best.family, "best_params": dg.MetadataValue.json(best.params),
        "best_model_version": t.version.version, "seed": seed, "best_run_id": run_id, "best_model_uri": uri,
        "baseline_model_uri": t.runs["prior"][1], "baseline_run_id": t.runs["prior"][0],
        "val_mean_roc_auc": float(best.val_metrics["mean_roc_auc"]),
        "val_mean_log_loss": float(best.val_metrics["mean_log_loss"]),
        "lake_snapshot_id": snapshot, "splits_fingerprint": splits_fingerprint,
        "probe_prediction_sha256": t.probe_prediction_sha256,
        "trained_from": "a pinned snapshot" if pinned else "the newest snapshot"}


def recorded_versions(instance: dg.DagsterInstance) -> set[str]:
    """Every model version an ml/candidate_models materialization recorded."""
    recorded, cursor = set(), None
    while True:
        page = instance.fetch_materializations(CANDIDATES, limit=1000, cursor=cursor)
        recorded |= {str(r.asset_materialization.metadata["best_model_version"].value) for r in page.records
                     if "best_model_version" in r.asset_materialization.metadata}
        if not page.has_more:
            return recorded
        cursor = page.cursor


@dg.asset_check(asset=CANDIDATES, blocking=True, automation_condition=WITH_ITS_ASSET)
def candidates_reproducible(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                            tracking: TrackingResource, training: TrainingResource) -> dg.AssetCheckResult:
    """Refitting the best candidate's hyper-parameters from the same lake snapshot and code gives
    identical split hashes and an identical model: the same prediction bytes on a fixed probe set, compared with
    the model as stored in the MLflow registry (see `reproduce`; `hit-platform rebuild --model-version V` runs
    the same rebuild for any version later, from the registry alone)."""
    event = context.instance.get_latest_materialization_event(CANDIDATES)
    recorded = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    # the refits ml/candidate_models started while it trained (its run's), taken where they match exactly
    early = EarlyRebuilds(lake.settings(), event.run_id)
    try:
        r = reproduce(lake.lake(), tracking.tracker(), recorded, workers=training.workers, early=early)
    finally:
        early.discard()
    metadata = {**r.metadata, "params_fitted_again": dg.MetadataValue.json(r.metadata["params_fitted_again"])}
    return alert_on_failure(context, lake, dg.AssetCheckResult(passed=r.passed, description=r.description,
                                                               metadata=metadata))
