"""Candidate models: every family trained on the train split, tuned on validation, tracked in MLflow."""

import hashlib
from dataclasses import dataclass, field

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from hit_platform.defs.gate_policy import gated
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
from hit_platform.adapters.tracking import UNKNOWN, Tracker, code_version

CANDIDATES = dg.AssetKey(["ml", "candidate_models"])
PROBE_ROWS = 256


def prediction_hash(pipeline, X: pd.DataFrame) -> str:
    """sha256 of the prediction bytes on a fixed probe set: same model, same hash."""
    return hashlib.sha256(np.ascontiguousarray(pipeline.predict_proba(X), dtype=np.float64).tobytes()).hexdigest()


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
    one the training settings pin (`HIT_TRAIN_SNAPSHOT`, `hit-platform rebuild --snapshot N`)."""
    tracker = tracking.tracker()
    abandoned = tracker.mark_abandoned(recorded_versions(context.instance))
    for version, reason in abandoned:
        context.log.warning(f"model version {version} marked abandoned: {reason}")
    the_lake = lake.lake()
    with the_lake.connection(read_only=True) as con:
        if training.snapshot is None:
            snapshot = the_lake.snapshot_id(con)
        else:
            snapshot = readable_snapshot(the_lake, con, training.snapshot)
            context.log.info(f"training from the pinned lake snapshot {snapshot} (the newest is "
                             f"{the_lake.snapshot_id(con)})")
        train, val = (load_split(con, s, snapshot) for s in ("train", "validation"))
        splits_fp = table_fingerprint(con, at_version("ml.splits", snapshot))
    results = train_candidates(train.X, train.Y, val.X, val.Y, seed=training.seed, families=training.family_names(),
                               workers=training.workers)
    best = select_best(results)
    lineage = {"lake_snapshot_id": str(snapshot),
               "splits_data_version": splits_data_version(context.instance, training.snapshot),
               "splits_fingerprint": splits_fp, "dagster_run_id": context.run.run_id, **code_version(),
               "train_rows": str(len(train)), "validation_rows": str(len(val)), "seed": str(training.seed)}
    if training.snapshot is not None:
        lineage["snapshot_pinned"] = "true"
    runs = tracker.log_candidates(results, val.X, val.Y, lineage)
    run_id, uri = runs[best.family]
    probe = val.X.head(PROBE_ROWS)
    probe_sha = prediction_hash(best.pipeline, probe)
    version = tracker.register(uri, run_id, tags={**lineage, "family": best.family, "mlflow_run_id": run_id,
                                                  "probe_prediction_sha256": probe_sha})
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
        "probe_prediction_sha256": probe_sha,
        "trained_from": "the newest snapshot" if training.snapshot is None else "a pinned snapshot",
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


class SnapshotUnavailable(ValueError):
    """A lake snapshot a model cannot be (re)built from: never taken, expired, or from before the splits."""


def readable_snapshot(lake: Lake, con: duckdb.DuckDBPyConnection, snapshot: int) -> int:
    """`snapshot`, once it is sure the lake still holds it with splits to train from; otherwise
    `SnapshotUnavailable` saying why and which snapshots there are."""
    kept = [r[0] for r in con.execute(f"SELECT snapshot_id FROM {lake.alias}.snapshots() ORDER BY 1").fetchall()]
    if snapshot not in kept:
        # DuckLake numbers snapshots 0, 1, 2, ...: a missing id below the newest was expired
        if 0 <= snapshot < kept[-1]:
            raise SnapshotUnavailable(
                f"lake snapshot {snapshot} has been expired from the lake (ducklake_expire_snapshots): its data "
                f"can no longer be read by time travel; the lake keeps {len(kept)} snapshots, "
                f"{kept[0]} .. {kept[-1]}")
        raise SnapshotUnavailable(f"lake snapshot {snapshot} does not exist: the lake's snapshots run "
                                  f"{kept[0]} .. {kept[-1]}")
    try:
        con.execute(f"SELECT count(*) FROM {at_version('ml.splits', snapshot)}").fetchall()
    except duckdb.CatalogException:
        raise SnapshotUnavailable(
            f"lake snapshot {snapshot} has no ml.splits: it was taken before the splits were first built; "
            f"pick a later one (`hit-platform sql \"SELECT * FROM lake.snapshots()\"` lists them)") from None
    return snapshot


LINEAGE = ("lake_snapshot_id", "splits_fingerprint", "seed", "family")  # on the version and on its run alike


@dataclass(frozen=True)
class Recipe:
    """What a model version was built from: everything a rebuild needs to build it again."""

    version: str
    lake_snapshot_id: int
    family: str
    params: dict
    seed: int
    splits_fingerprint: str
    git_commit: str = UNKNOWN
    git_dirty: str = UNKNOWN
    probe_prediction_sha256: str | None = None  # the registered model's, measured when it was trained

    @classmethod
    def from_materialization(cls, recorded: dict) -> "Recipe":
        """The recipe an ml/candidate_models materialization recorded (the plain values of its metadata)."""
        return cls(str(recorded["best_model_version"]), int(recorded["lake_snapshot_id"]), recorded["best_family"],
                   dict(recorded["best_params"]), int(recorded["seed"]), recorded["splits_fingerprint"],
                   recorded.get("git_commit", UNKNOWN), recorded.get("git_dirty", UNKNOWN),
                   recorded.get("probe_prediction_sha256"))


class NotRebuildable(LookupError):
    """A model version the registry cannot say how to rebuild: unknown, or without its lineage tags."""


def _param(text: str):
    """A hyper-parameter as MLflow keeps it (a string) back as the plain JSON scalar the grid held."""
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        if str(value) == text:  # "64" is an int, "30.0" a float, "1e-05" a float; "007" stays a string
            return value
    return {"True": True, "False": False, "None": None}.get(text, text)


@dataclass
class Registration:
    """A registered model version as the registry holds it: its tags and its MLflow run."""

    version: str
    tags: dict[str, str]
    run_id: str
    run_tags: dict[str, str]
    run_params: dict[str, str]

    @classmethod
    def read(cls, tracker: Tracker, version: str) -> "Registration":
        try:
            mv = tracker.client.get_model_version(tracker.model_name, str(version))
        except MlflowException as exc:
            if str(getattr(exc, "error_code", "")) not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            try:
                known = sorted(int(v.version) for v in tracker.client.search_model_versions(
                    f"name = '{tracker.model_name}'"))
            except MlflowException:
                known = []
            raise NotRebuildable(
                f"model version {version} of {tracker.model_name} does not exist in {tracker.uri}; "
                + (f"its versions: {', '.join(map(str, known))}" if known else "it has no versions yet")) from None
        run = tracker.client.get_run(mv.run_id).data if mv.run_id else None
        return cls(str(mv.version), dict(mv.tags), mv.run_id or "", dict(run.tags) if run else {},
                   dict(run.params) if run else {})

    def recipe(self) -> Recipe:
        """How the registry says this version was built: its tags, and its run's params."""
        missing = [k for k in LINEAGE if not self.tags.get(k)]
        if missing:
            raise NotRebuildable(f"model version {self.version} has no {', '.join(missing)} tag: registered "
                                 "without the lineage a rebuild needs (not by ml/candidate_models?)")
        params = {k: _param(v) for k, v in self.run_params.items() if k != "family"}
        t = self.tags
        return Recipe(self.version, int(t["lake_snapshot_id"]), t["family"], params, int(t["seed"]),
                      t["splits_fingerprint"], t.get("git_commit", UNKNOWN), t.get("git_dirty", UNKNOWN),
                      t.get("probe_prediction_sha256"))

    def disagreements(self) -> list[str]:
        """Where the version's tags and its MLflow run (tags, and the family param) tell different stories."""
        out = []
        for key in LINEAGE:
            tag, run_tag = self.tags.get(key), self.run_tags.get(key)
            if tag is not None and run_tag is not None and tag != run_tag:
                out.append(f"{key}: {tag} in version {self.version}'s tags, {run_tag} in its MLflow run {self.run_id}")
        family = self.run_params.get("family")
        if family is not None and self.tags.get("family", family) != family:
            out.append(f"family: {self.tags['family']} in version {self.version}'s tags, {family} in the params of "
                       f"its MLflow run {self.run_id}")
        return out

    def differences_from(self, claimed: Recipe) -> list[str]:
        """Where `claimed` (e.g. Dagster's record of the training) says other than the registry: the seed,
        the family and the parameters the registered version was fitted with."""
        out = []
        seed = self.tags.get("seed")
        if seed is not None and seed != str(claimed.seed):
            out.append(f"seed: {claimed.seed} recorded, the registered version {self.version} was fitted with {seed}")
        logged = self.run_params
        if logged.get("family", claimed.family) != claimed.family:
            out.append(f"family: {claimed.family} recorded, the registered version {self.version} is "
                       f"{logged['family']}")
        # MLflow keeps params as strings; compare in that form (what `log_candidate` logged)
        changed = {k: (v, logged.get(k)) for k, v in claimed.params.items() if logged and str(v) != logged.get(k)}
        if changed:
            out.append("params: " + ", ".join(f"{k} {a} recorded, {b} in the registered version's run"
                                              for k, (a, b) in sorted(changed.items())))
        return out


@dataclass
class ReproResult:
    passed: bool
    description: str
    metadata: dict
    differences: list[str] = field(default_factory=list)  # one line per thing that differs


def reproduce(lake: Lake, tracker: Tracker, recorded: dict | Recipe,
              registration: Registration | None = None) -> ReproResult:
    """Rebuild a model version as `recorded` says it was built and compare it with the registered model.

    `recorded` is a `Recipe`, or the plain values of an ml/candidate_models materialization's metadata
    (the `candidates_reproducible` check); `hit-platform rebuild` gives the registry's own recipe
    (`Registration.recipe`). From the recorded lake snapshot (time travel: newer data changes nothing):
    the splits must hash to the recorded fingerprint; the recorded family, parameters and seed must be
    those of the registered version (its tags and its MLflow run, which must agree); the chosen
    parameters fitted again (no search) with the recorded seed must choose what the fit chose then
    (e.g. boosting rounds) and give the same prediction bytes on a fixed probe set as the registered
    model (and as measured at training, when recorded). Every difference is named in the description."""
    claimed = recorded if isinstance(recorded, Recipe) else Recipe.from_materialization(recorded)
    snapshot, family, version, params, seed = (claimed.lake_snapshot_id, claimed.family, claimed.version,
                                               claimed.params, claimed.seed)
    with lake.connection(read_only=True) as con:
        train, val = (load_split(con, s, snapshot) for s in ("train", "validation"))
        splits_fp = table_fingerprint(con, at_version("ml.splits", snapshot))
    differences = []
    if splits_fp != claimed.splits_fingerprint:
        differences.append(f"splits fingerprint at snapshot {snapshot}: {splits_fp} now, "
                           f"{claimed.splits_fingerprint} at training")
    # What the registry says the model was built with: its version tags and its MLflow run's params.
    registration = registration or Registration.read(tracker, version)
    differences += registration.disagreements() + registration.differences_from(claimed)
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
    h_training = claimed.probe_prediction_sha256
    if h_rebuilt != h_stored or h_training not in (None, h_rebuilt):
        differences.append(f"prediction bytes on {len(probe)} probe rows (sha256): rebuilt {h_rebuilt[:12]}, "
                           f"registered {h_stored[:12]}" + (f", at training {h_training[:12]}" if h_training else ""))
    passed = not differences
    description = (f"rebuilt from snapshot {snapshot}: identical splits, parameters and prediction bytes" if passed
                   else f"the rebuild from snapshot {snapshot} differs from registered version {version}: "
                        + "; ".join(differences))
    return ReproResult(passed, description, {
        "model_version": version, "lake_snapshot_id": snapshot, "family": family,
        "train_rows": len(train), "validation_rows": len(val), "probe_rows": len(probe),
        "prediction_sha256_rebuilt": h_rebuilt, "prediction_sha256_registered": h_stored,
        "prediction_sha256_at_training": h_training or "not recorded",
        "splits_fingerprint_rebuilt": splits_fp, "splits_fingerprint_at_training": claimed.splits_fingerprint,
        "params_fitted_again": dg.MetadataValue.json(chose),
        "seed_at_training": seed, "seed_registered": registration.tags.get("seed", "unknown")}, differences)


@dg.asset_check(asset=CANDIDATES, blocking=True, automation_condition=WITH_ITS_ASSET)
def candidates_reproducible(context: dg.AssetCheckExecutionContext, lake: LakeResource,
                            tracking: TrackingResource) -> dg.AssetCheckResult:
    """Refitting the best candidate's hyper-parameters from the same lake snapshot and code gives
    identical split hashes and an identical model: the same prediction bytes on a fixed probe set, compared with
    the model as stored in the MLflow registry (see `reproduce`; `hit-platform rebuild --model-version V` runs
    the same rebuild for any version later, from the registry alone)."""
    event = context.instance.get_latest_materialization_event(CANDIDATES)
    recorded = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    r = reproduce(lake.lake(), tracking.tracker(), recorded)
    return alert_on_failure(context, lake, dg.AssetCheckResult(passed=r.passed, description=r.description,
                                                               metadata=r.metadata))
