"""A model version built again from its recipe: what the registry says it was built from (the lake
snapshot, the splits' fingerprint, the family, its parameters and seed), refitted from exactly that
data by DuckLake time travel and compared, byte for byte, with the registered model.

The `candidates_reproducible` check (`defs/ml/training.py`) runs `reproduce` on every new candidate;
`hit-platform rebuild --model-version V` runs it on any version later, from the registry alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.exceptions import MlflowException

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.model_training import PROBE_ROWS, prediction_hash
from hit_platform.adapters.early_rebuild import EarlyRebuilds
from hit_platform.adapters.tracking import UNKNOWN, Tracker, code_version
from hit_platform.domain.models import refit
from hit_platform.domain.models.candidates import fitted_params, member_params
from hit_platform.steps.datasets import at_version, load_split
from hit_platform.steps.transforms import table_fingerprint

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
              registration: Registration | None = None, workers: int = 1,
              early: EarlyRebuilds | None = None) -> ReproResult:
    """Rebuild a model version as `recorded` says it was built and compare it with the registered model.

    `recorded` is a `Recipe`, or the plain values of an ml/candidate_models materialization's metadata
    (the `candidates_reproducible` check); `hit-platform rebuild` gives the registry's own recipe
    (`Registration.recipe`). From the recorded lake snapshot (time travel: newer data changes nothing):
    the splits must hash to the recorded fingerprint; the recorded family, parameters and seed must be
    those of the registered version (its tags and its MLflow run, which must agree); the chosen
    parameters fitted again (no search) with the recorded seed must choose what the fit chose then
    (e.g. boosting rounds) and give the same prediction bytes on a fixed probe set as the registered
    model (and as measured at training, when recorded). Every difference is named in the description.
    `workers`: processes refitting a blend's members side by side. `early`: the refits the training
    started for this recipe (`adapters/early_rebuild.py`), taken where their key is exactly this one."""
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
    ready = _taken_early(early, snapshot, splits_fp, family, params, seed) if early is not None else {}
    rebuilt = refit(family, params, train.X, train.Y, seed=seed, val_X=val.X, val_Y=val.Y, workers=workers,
                    ready=ready)
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
        "params_fitted_again": chose,
        "refitted_while_training": ", ".join(sorted(ready)) or "none",
        "seed_at_training": seed, "seed_registered": registration.tags.get("seed", "unknown")}, differences)


def _taken_early(early: EarlyRebuilds, snapshot: int, splits_fingerprint: str, family: str, params: dict,
                 seed: int) -> dict:
    """The refits started while training of this family (or of its members) with exactly these inputs."""
    code = code_version()
    wanted = member_params(family, params) or {family: params}
    taken = {name: early.take(snapshot, splits_fingerprint, name, p, seed, code) for name, p in wanted.items()}
    return {name: fit for name, fit in taken.items() if fit is not None}
