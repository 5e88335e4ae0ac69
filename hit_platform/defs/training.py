"""Candidate models: every family trained on the train split, tuned on validation, tracked in MLflow."""

import hashlib

import dagster as dg
import numpy as np
import pandas as pd

from hit_platform import plots
from hit_platform.automation import WITH_ITS_ASSET
from hit_platform.datasets import at_version, load_split
from hit_platform.defs.features import FEATURES, SPLITS_KEY
from hit_platform.defs.checks import alert_on_failure
from hit_platform.defs.resources import LakeResource, TrackingResource, TrainingResource
from hit_platform.defs.songs import SONG_LABELS
from hit_platform.models import refit, select_best, train_candidates
from hit_platform.models.candidates import fitted_params
from hit_platform.tables import table_fingerprint
from hit_platform.tracking import code_version

CANDIDATES = dg.AssetKey(["ml", "candidate_models"])
PROBE_ROWS = 256


def flat_metrics(prefix: str, m: dict) -> dict[str, float]:
    """MLflow metrics: the means, and every per-country value (e.g. val_roc_auc_US)."""
    out = {f"{prefix}_{k}": float(v) for k, v in m.items() if k.startswith("mean_")}
    for name in ("roc_auc", "pr_auc", "log_loss", "brier"):
        out.update({f"{prefix}_{name}_{c}": float(v) for c, v in m[name].items()})
    return out


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
    gradient-boosted trees (and any other family in `hit_platform.models`), each predicting all 72
    countries at once, hyper-parameters chosen on the validation split. The best one becomes a new
    version of the registered model `hit_model`, tagged with the lake snapshot, split data version,
    code version and this Dagster run."""
    the_lake = lake.lake()
    with the_lake.connection(read_only=True) as con:
        snapshot = the_lake.snapshot_id(con)
        train, val = (load_split(con, s, snapshot) for s in ("train", "validation"))
        splits_fp = table_fingerprint(con, at_version("ml.splits", snapshot))
    results = train_candidates(train.X, train.Y, val.X, val.Y, seed=training.seed, families=training.family_names(),
                               workers=training.workers)
    best = select_best(results)
    tracker = tracking.tracker()
    lineage = {"lake_snapshot_id": str(snapshot), "splits_data_version": splits_data_version(context.instance),
               "splits_fingerprint": splits_fp, "dagster_run_id": context.run.run_id, **code_version(),
               "train_rows": str(len(train)), "validation_rows": str(len(val)), "seed": str(training.seed)}
    rows, runs = [], {}
    for r in results:
        P_val = r.pipeline.predict_proba(val.X)
        figs = {"auc_by_country": plots.auc_bars(r.val_metrics["roc_auc"], f"{r.family}: validation ROC AUC"),
                "calibration": plots.calibration(val.Y, P_val, f"{r.family}: calibration (validation)"),
                "roc": plots.roc(val.Y, P_val, f"{r.family}: ROC (validation)")}
        run_id, uri = tracker.log_candidate(
            run_name=f"{r.family}", params={"family": r.family, **r.params},
            metrics={**flat_metrics("val", r.val_metrics), **flat_metrics("train", r.train_metrics),
                     "fit_seconds": r.fit_seconds},
            pipeline=r.pipeline, input_example=val.X.head(5), tags={**lineage, "family": r.family},
            figures=figs, tables={"search": pd.DataFrame(r.search)})
        plots.close(*figs.values())
        runs[r.family] = (run_id, uri)
        rows.append((r.family, r.val_metrics["mean_roc_auc"], r.val_metrics["mean_log_loss"], r.fit_seconds,
                     run_id, "best" if r is best else ""))
    run_id, uri = runs[best.family]
    version = tracker.register(uri, run_id, tags={**lineage, "family": best.family, "mlflow_run_id": run_id})
    probe = val.X.head(PROBE_ROWS)
    table = "| family | val mean AUC | val mean log loss | fit s | MLflow run | |\n|---|---|---|---|---|---|\n" + \
        "\n".join(f"| {f} | {a:.4f} | {ll:.4f} | {s:.1f} | {rid} | {b} |" for f, a, ll, s, rid, b in rows)
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
    })


@dg.asset_check(asset=CANDIDATES, blocking=True, automation_condition=WITH_ITS_ASSET)
def candidates_reproducible(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                            tracking: TrackingResource) -> dg.AssetCheckResult:
    """Refitting the best candidate's hyper-parameters from the same lake snapshot and code gives
    identical split hashes and an identical model: the same prediction bytes on a fixed probe set, compared with
    the model as stored in the MLflow registry."""
    meta = context.instance.get_latest_materialization_event(CANDIDATES).asset_materialization.metadata
    snapshot, family = meta["lake_snapshot_id"].value, meta["best_family"].value
    the_lake = lake.lake()
    with the_lake.connection(read_only=True) as con:
        train, val = (load_split(con, s, snapshot) for s in ("train", "validation"))
        splits_fp = table_fingerprint(con, at_version("ml.splits", snapshot))
    # The chosen hyper-parameters fitted again (no search): the same data and code must give the
    # same model, byte for byte.
    rebuilt = refit(family, meta["best_params"].value, train.X, train.Y, seed=meta["seed"].value)
    stored = tracking.tracker().load_version(meta["best_model_version"].value)
    probe = val.X.head(PROBE_ROWS)
    h_rebuilt, h_stored = prediction_hash(rebuilt, probe), prediction_hash(stored, probe)
    chose = fitted_params(rebuilt)  # what the fit chose again (e.g. boosting rounds)
    same = (h_rebuilt == h_stored == meta["probe_prediction_sha256"].value
            and splits_fp == meta["splits_fingerprint"].value
            and all(meta["best_params"].value.get(k) == v for k, v in chose.items()))
    return alert_on_failure(context, lake, dg.AssetCheckResult(
        passed=same,
        description=("rebuilt from snapshot %s: identical splits, parameters and prediction bytes" % snapshot)
        if same else "the rebuild differs from the registered model (see metadata)",
        metadata={"lake_snapshot_id": snapshot, "family": family, "probe_rows": len(probe),
                  "prediction_sha256_rebuilt": h_rebuilt, "prediction_sha256_registered": h_stored,
                  "prediction_sha256_at_training": meta["probe_prediction_sha256"].value,
                  "splits_fingerprint_rebuilt": splits_fp,
                  "splits_fingerprint_at_training": meta["splits_fingerprint"].value,
                  "params_fitted_again": dg.MetadataValue.json(chose)}))
