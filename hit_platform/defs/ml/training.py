"""Candidate models: every family trained on the train split, tuned on validation, tracked in MLflow."""

import hashlib
from dataclasses import dataclass, field

import dagster as dg
import numpy as np
import pandas as pd

from hit_platform.defs.automation import WITH_ITS_ASSET
from hit_platform.steps.datasets import at_version, load_split
from hit_platform.defs.ml.features import FEATURES, SPLITS_KEY
from hit_platform.defs.gate_checks import alert_on_failure
from hit_platform.defs.resources import LakeResource, TrackingResource, TrainingResource
from hit_platform.defs.core import SONG_LABELS
from hit_platform.adapters.lake.connection import Lake
from hit_platform.domain.models import refit, select_best, train_candidates
from hit_platform.domain.models.candidates import fitted_params
from hit_platform.steps.transforms import table_fingerprint
from hit_platform.adapters.tracking import Tracker, code_version

CANDIDATES = dg.AssetKey(["ml", "candidate_models"])
PROBE_ROWS = 256


def prediction_hash(pipeline, X: pd.DataFrame) -> str:
    """sha256 of the prediction bytes on a fixed probe set: same model, same hash."""
    return hashlib.sha256(np.ascontiguousarray(pipeline.predict_proba(X), dtype=np.float64).tobytes()).hexdigest()


def splits_data_version(instance: dg.DagsterInstance) -> str:
    event = instance.get_latest_materialization_event(SPLITS_KEY)
    return event.asset_materialization.tags.get("dagster/data_version", "") if event else ""


@dg.asset(key=CANDIDATES, deps=[SPLITS_KEY, FEATURES, SONG_LABELS], group_name="ml", code_version="1",
          kinds={"sklearn", "mlflow"})
def candidate_models(context: dg.AssetExecutionContext, lake: LakeResource, tracking: TrackingResource,
                     training: TrainingResource) -> dg.MaterializeResult:
    """Candidate models, one MLflow run each: a per-country prior (the baseline), a linear model and
    gradient-boosted trees (and any other family in `hit_platform.domain.models`), each predicting all 72
    countries at once, hyper-parameters chosen on the validation split. The best one becomes a new
    version of the registered model `hit_model`, tagged with the lake snapshot, split data version,
    code version and this Dagster run."""
    tracker = tracking.tracker()
    abandoned = tracker.mark_abandoned(recorded_versions(context.instance))
    for version, reason in abandoned:
        context.log.warning(f"model version {version} marked abandoned: {reason}")
    the_lake = lake.lake()
    with the_lake.connection(read_only=True) as con:
        snapshot = the_lake.snapshot_id(con)
        train, val = (load_split(con, s, snapshot) for s in ("train", "validation"))
        splits_fp = table_fingerprint(con, at_version("ml.splits", snapshot))
    results = train_candidates(train.X, train.Y, val.X, val.Y, seed=training.seed, families=training.family_names(),
                               workers=training.workers)
    best = select_best(results)
    lineage = {"lake_snapshot_id": str(snapshot), "splits_data_version": splits_data_version(context.instance),
               "splits_fingerprint": splits_fp, "dagster_run_id": context.run.run_id, **code_version(),
               "train_rows": str(len(train)), "validation_rows": str(len(val)), "seed": str(training.seed)}
    runs = tracker.log_candidates(results, val.X, val.Y, lineage)
    run_id, uri = runs[best.family]
    version = tracker.register(uri, run_id, tags={**lineage, "family": best.family, "mlflow_run_id": run_id})
    probe = val.X.head(PROBE_ROWS)
    table = "| family | val mean AUC | val mean log loss | fit s | MLflow run | |\n|---|---|---|---|---|---|\n" + "\n".join(
        f"| {r.family} | {r.val_metrics['mean_roc_auc']:.4f} | {r.val_metrics['mean_log_loss']:.4f} | "
        f"{r.fit_seconds:.1f} | {runs[r.family][0]} | {'best' if r is best else ''} |" for r in results)
    return dg.MaterializeResult(metadata={
        "candidates": dg.MetadataValue.md(table),
        "best_family": best.family, "best_params": dg.MetadataValue.json(best.params),
        "best_model_version": version.version, "seed": training.seed, "best_run_id": run_id, "best_model_uri": uri,
        "baseline_model_uri": runs["prior"][1], "baseline_run_id": runs["prior"][0],
        "val_mean_roc_auc": float(best.val_metrics["mean_roc_auc"]),
        "val_mean_log_loss": float(best.val_metrics["mean_log_loss"]),
        "lake_snapshot_id": snapshot, "splits_fingerprint": splits_fp,
        "probe_prediction_sha256": prediction_hash(best.pipeline, probe),
        "mlflow_tracking_uri": tracker.uri, **{k: v for k, v in code_version().items()},
        "abandoned_versions": dg.MetadataValue.json({v: r for v, r in abandoned}),
    })


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


@dataclass
class ReproResult:
    passed: bool
    description: str
    metadata: dict
    differences: list[str] = field(default_factory=list)  # one line per thing that differs


def reproduce(lake: Lake, tracker: Tracker, recorded: dict) -> ReproResult:
    """Rebuild the best candidate as `recorded` (the plain values of an ml/candidate_models
    materialization's metadata) says it was built, and compare it with the registered model.

    From the recorded lake snapshot: the splits must hash to the recorded fingerprint; the recorded
    family, parameters and seed must be those of the registered version (its MLflow run and tags);
    the chosen parameters fitted again (no search) with the recorded seed must choose what the fit
    chose then (e.g. boosting rounds) and give the same prediction bytes on a fixed probe set as the
    registered model and as recorded at training. Every difference is named in the description."""
    snapshot, family, version = recorded["lake_snapshot_id"], recorded["best_family"], recorded["best_model_version"]
    params, seed = recorded["best_params"], recorded["seed"]
    with lake.connection(read_only=True) as con:
        train, val = (load_split(con, s, snapshot) for s in ("train", "validation"))
        splits_fp = table_fingerprint(con, at_version("ml.splits", snapshot))
    differences = []
    if splits_fp != recorded["splits_fingerprint"]:
        differences.append(f"splits fingerprint at snapshot {snapshot}: {splits_fp} now, "
                           f"{recorded['splits_fingerprint']} at training")
    # What the registry says the model was built with: its version tags and its MLflow run's params.
    mv = tracker.client.get_model_version(tracker.model_name, str(version))
    registered_seed = mv.tags.get("seed")
    if registered_seed is not None and registered_seed != str(seed):
        differences.append(f"seed: {seed} recorded, the registered version {version} was fitted with {registered_seed}")
    logged = tracker.client.get_run(mv.run_id).data.params if mv.run_id else {}
    if logged.get("family", family) != family:
        differences.append(f"family: {family} recorded, the registered version {version} is {logged['family']}")
    # MLflow keeps params as strings; compare in that form (what `log_candidate` logged)
    changed = {k: (v, logged.get(k)) for k, v in params.items() if logged and str(v) != logged.get(k)}
    if changed:
        differences.append("params: " + ", ".join(f"{k} {a} recorded, {b} in the registered version's run"
                                                  for k, (a, b) in sorted(changed.items())))
    # The chosen hyper-parameters fitted again (no search): the same data and code must give the
    # same model, byte for byte.
    rebuilt = refit(family, params, train.X, train.Y, seed=seed, val_X=val.X, val_Y=val.Y)
    chose = fitted_params(rebuilt)  # what the fit chose again (e.g. boosting rounds)
    chose_differently = {k: (v, params.get(k)) for k, v in chose.items() if params.get(k) != v}
    if chose_differently:
        differences.append("the refit chose " + ", ".join(f"{k}={a} (recorded {b})"
                                                          for k, (a, b) in sorted(chose_differently.items())))
    stored = tracker.load_version(version)
    probe = val.X.head(PROBE_ROWS)
    h_rebuilt, h_stored = prediction_hash(rebuilt, probe), prediction_hash(stored, probe)
    h_training = recorded["probe_prediction_sha256"]
    if not h_rebuilt == h_stored == h_training:
        differences.append(f"prediction bytes on {len(probe)} probe rows (sha256): rebuilt {h_rebuilt[:12]}, "
                           f"registered {h_stored[:12]}, at training {h_training[:12]}")
    passed = not differences
    description = (f"rebuilt from snapshot {snapshot}: identical splits, parameters and prediction bytes" if passed
                   else f"the rebuild from snapshot {snapshot} differs from registered version {version}: "
                        + "; ".join(differences))
    return ReproResult(passed, description, {
        "lake_snapshot_id": snapshot, "family": family, "probe_rows": len(probe),
        "prediction_sha256_rebuilt": h_rebuilt, "prediction_sha256_registered": h_stored,
        "prediction_sha256_at_training": h_training,
        "splits_fingerprint_rebuilt": splits_fp, "splits_fingerprint_at_training": recorded["splits_fingerprint"],
        "params_fitted_again": dg.MetadataValue.json(chose),
        "seed_at_training": seed, "seed_registered": registered_seed or "unknown"}, differences)


@dg.asset_check(asset=CANDIDATES, blocking=True, automation_condition=WITH_ITS_ASSET)
def candidates_reproducible(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                            tracking: TrackingResource) -> dg.AssetCheckResult:
    """Refitting the best candidate's hyper-parameters from the same lake snapshot and code gives
    identical split hashes and an identical model: the same prediction bytes on a fixed probe set, compared with
    the model as stored in the MLflow registry (see `reproduce`)."""
    event = context.instance.get_latest_materialization_event(CANDIDATES)
    recorded = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    r = reproduce(lake.lake(), tracking.tracker(), recorded)
    return alert_on_failure(context, lake, dg.AssetCheckResult(passed=r.passed, description=r.description,
                                                               metadata=r.metadata))
