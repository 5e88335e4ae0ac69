"""MLflow: candidate runs, the `hit_model` registry and its `champion` alias.

The one place that talks to MLflow. The tracking URI comes from `Settings`
(a SQLite store under warehouse/mlflow/ by default, a tracking server by
configuration); artifacts of the default store stay under warehouse/ too.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from hit_platform.adapters import pyfunc_flavor
from hit_platform.adapters.processes import is_alive, this_process
from hit_platform.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)
CHAMPION = "champion"
CHALLENGER = "challenger"  # HIT_PROMOTION_MODE=shadow: the version scored beside the champion on live traffic
WAS_CHAMPION = "was_champion"  # version tag: the champion alias pointed here once
REGISTERED_BY = "registered_by"  # version tag: the process that registered it (adapters.processes)
ABANDONED = "abandoned"  # version tag: why no run ever recorded, evaluated or served it
# Our own pipelines are pickled on purpose (custom estimators); MLflow warns on every save.
logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)


class ModelUnavailable(RuntimeError):
    """A model cannot be loaded from the registry (missing or corrupted artifacts)."""


class ChampionUnavailable(ModelUnavailable):
    """There is no usable champion: none promoted yet, or its model cannot be loaded."""


@dataclass
class ModelVersionInfo:
    name: str
    version: str
    run_id: str
    tags: dict
    source: str


UNKNOWN = "unknown"


def code_version(repo_root: Path = REPO_ROOT, *, timeout: float = 10.0) -> dict[str, str]:
    """The git commit of the code and whether the work tree had uncommitted changes ("true"/"false").

    When git cannot say (not installed, not a repository, a timeout, any non-zero exit), what it
    could not say is "unknown": never a commit read off a failed command, never "false".
    """
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=repo_root, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.SubprocessError) as exc:  # no git, no such folder, timeout
            log.warning("code version unknown: `git %s` in %s failed: %s", " ".join(args), repo_root, exc)
            return None
        if done.returncode != 0:
            log.warning("code version unknown: `git %s` in %s exited %d: %s", " ".join(args), repo_root,
                        done.returncode, done.stderr.strip()[:300])
            return None
        return done.stdout.strip()
    commit = git("rev-parse", "--verify", "HEAD")
    if not commit:
        return {"git_commit": UNKNOWN, "git_dirty": UNKNOWN}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": UNKNOWN if status is None else str(bool(status)).lower()}


def _was_champion(tags: dict) -> bool:
    """Tagged by `Tracker.promote`; a version promoted before that tag existed carries `promoted_by_dagster_run`."""
    return tags.get(WAS_CHAMPION) == "true" or "promoted_by_dagster_run" in tags


def _error_code(exc: MlflowException) -> str:
    return str(getattr(exc, "error_code", ""))


@functools.cache
def model_requirements() -> list[str]:
    """What a logged model needs, pinned to the versions that fitted it. Given explicitly: MLflow's
    own inference imports the model in a subprocess, about 7 s per candidate."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", "scikit-learn", "numpy", "pandas", "cloudpickle", "pyarrow")]


def flat_metrics(prefix: str, m: dict) -> dict[str, float]:
    """MLflow metrics: the means, and every per-country value (e.g. val_roc_auc_US)."""
    out = {f"{prefix}_{k}": float(v) for k, v in m.items() if k.startswith(("mean_", "pooled_"))}
    for name in ("roc_auc", "pr_auc", "log_loss", "brier", "ece"):
        out.update({f"{prefix}_{name}_{c}": float(v) for c, v in m.get(name, {}).items()})
    return out


def _made_once(db: Path, uri: str) -> None:
    """A SQLite store's tables, made once. MLflow makes them on a new store's first use (fifty-odd
    migrations, ~5 s), and two processes doing it at once can fail: so the first does it under a file
    lock, and leaves a mark that it is done."""
    done = db.with_name(db.name + ".made")
    if done.exists():
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)
            done.touch()


def prepare_store(settings: Settings) -> None:
    """The tracking store made and the experiment created, ahead of the first training (the demo runs this
    in a process of its own while it lands its files and ingests them)."""
    Tracker(settings).experiment_id()


class Tracker:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.uri = settings.tracking_uri
        if self.uri.startswith("sqlite:///"):
            _made_once(Path(self.uri.removeprefix("sqlite:///")), self.uri)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.model_name = settings.mlflow.model_name

    def _activate(self) -> None:
        # MLflow's fluent API (runs, log_model, load_model) reads a process-wide URI.
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)

    def experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.settings.mlflow.experiment)
        if exp is not None:
            return exp.experiment_id
        # A tracking server knows where its artifacts go; with a file or database store MLflow's
        # default would be ./mlruns in whatever directory the process runs in.
        location = self.settings.mlflow.artifact_location
        if location is None and not self.uri.startswith(("http:", "https:", "databricks")):
            self.settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
            location = self.settings.mlflow_artifacts.as_uri()
        try:
            return self.client.create_experiment(self.settings.mlflow.experiment, artifact_location=location)
        except MlflowException as exc:
            if _error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
            # created meanwhile by another process
            return self.client.get_experiment_by_name(self.settings.mlflow.experiment).experiment_id

    def log_candidate(self, *, run_name: str, params: dict, metrics: dict[str, float], pipeline,
                      input_example: pd.DataFrame, tags: dict[str, str], figures: dict[str, object],
                      tables: dict[str, pd.DataFrame]) -> tuple[str, str]:
        """One MLflow run for one candidate; returns (run_id, model_uri).

        The model is logged in `pyfunc_flavor`'s format: the sklearn pipeline, and a python_function
        flavor that takes the dump's columns and answers 72 probability columns. Its input example is
        a few rows of `input_example` (a features frame will do) in the dump's natural dtypes."""
        self._activate()
        with mlflow.start_run(experiment_id=self.experiment_id(), run_name=run_name, tags=tags) as run:
            mlflow.log_params({k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                               for k, v in params.items()})
            # The model before its metrics, which are then logged once, already linked to it: logged the
            # other way round, MLflow links them afterwards with one query per metric (~1,500 here).
            info = pyfunc_flavor.log_model(pipeline, input_example=pyfunc_flavor.input_example(input_example),
                                           pip_requirements=model_requirements())
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)}, model_id=info.model_id)
            for name, fig in figures.items():
                mlflow.log_figure(fig, f"plots/{name}.png")
            for name, df in tables.items():
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / f"{name}.csv"
                    df.to_csv(path, index=False)
                    mlflow.log_artifact(str(path), "tables")
            return run.info.run_id, info.model_uri

    def log_candidates(self, results: list, X_val: pd.DataFrame, Y_val, lineage: dict[str, str]
                       ) -> dict[str, tuple[str, str]]:
        """One run per trained candidate (params, train and validation metrics, plots, its search);
        returns {family: (run_id, model_uri)}."""
        from hit_platform.adapters.reports import plots

        runs = {}
        for r in results:
            P_val = r.pipeline.predict_proba(X_val)
            figs = {"auc_by_country": plots.auc_bars(r.val_metrics["roc_auc"], f"{r.family}: validation ROC AUC"),
                    "calibration": plots.calibration(Y_val, P_val, f"{r.family}: calibration (validation)"),
                    "reliability_by_country": plots.reliability_by_country(
                        Y_val, P_val, f"{r.family}: reliability by country (validation)"),
                    "roc": plots.roc(Y_val, P_val, f"{r.family}: ROC (validation)")}
            try:
                runs[r.family] = self.log_candidate(
                    run_name=r.family, params={"family": r.family, **r.params},
                    metrics={**flat_metrics("val", r.val_metrics), **flat_metrics("train", r.train_metrics),
                             "fit_seconds": r.fit_seconds,
                             **{f"val_crossfit_log_loss_{m}": v for m, v in r.calibration_log_loss.items()}},
                    pipeline=r.pipeline, input_example=X_val, tags={**lineage, "family": r.family},
                    figures=figs, tables={"search": pd.DataFrame(r.search),  # what the budget skipped, if any
                                          **({"skipped": pd.DataFrame(r.skipped)} if r.skipped else {})})
            finally:
                plots.close(*figs.values())
        return runs

    def log_to_run(self, run_id: str, metrics: dict[str, float], figures: dict[str, object]) -> None:
        """Add metrics and figures (as plots/<name>.png) to an existing run, e.g. a candidate's test
        results measured after its run ended. Non-finite metrics are left out, as in `log_candidate`."""
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items() if np.isfinite(v)]
        for start in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(run_id, metrics=batch[start:start + 1000])
        for name, fig in figures.items():
            self.client.log_figure(run_id, fig, f"plots/{name}.png")

    def register(self, model_uri: str, run_id: str, tags: dict[str, str]) -> ModelVersionInfo:
        """A new version of the registered model (created on first use)."""
        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException as exc:
            if _error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise
            try:
                self.client.create_registered_model(
                    self.model_name, description="Per-country Spotify Top 50 hit probabilities (72 outputs)")
            except MlflowException as exc2:
                if _error_code(exc2) != "RESOURCE_ALREADY_EXISTS":
                    raise  # only "created meanwhile by another process" is fine
        mv = self.client.create_model_version(self.model_name, model_uri, run_id=run_id,
                                              tags={**tags, REGISTERED_BY: this_process()})
        return ModelVersionInfo(self.model_name, str(mv.version), run_id, dict(mv.tags), mv.source)

    def mark_abandoned(self, recorded: set[str]) -> list[tuple[str, str]]:
        """Tag the versions a run registered and then died before recording (killed between registering
        and its materialization): not in `recorded`, their registering process gone. They were never
        evaluated and can never become champion; the tag says so. Returns [(version, reason)]."""
        try:
            versions = self.client.search_model_versions(f"name = '{self.model_name}'")
        except MlflowException as exc:
            if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                return []
            raise
        marked = []
        for mv in versions:
            by = mv.tags.get(REGISTERED_BY)
            if str(mv.version) in recorded or ABANDONED in mv.tags or by is None or is_alive(by) is not False:
                continue  # recorded, already marked, registered by hand, or its process may still run
            reason = (f"registered by Dagster run {mv.tags.get('dagster_run_id', '?')} (process {by}), which died "
                      "before recording it: never evaluated, never served")
            self.client.set_model_version_tag(self.model_name, mv.version, ABANDONED, reason)
            marked.append((str(mv.version), reason))
        return marked

    def version_tags(self, version: str) -> dict | None:
        """The registry tags of `version`; None when no such version is registered."""
        try:
            return dict(self.client.get_model_version(self.model_name, str(version)).tags)
        except MlflowException as exc:
            if _error_code(exc) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def set_version_tag(self, version: str, key: str, value: str) -> None:
        self.client.set_model_version_tag(self.model_name, version, key, value)

    def promote(self, version: str) -> None:
        """Point the champion alias at `version`, and mark it as having been champion (what a rollback
        may go back to)."""
        self.client.set_registered_model_alias(self.model_name, CHAMPION, version)
        self.client.set_model_version_tag(self.model_name, version, WAS_CHAMPION, "true")

    def was_champion(self, version: str) -> bool:
        """Whether the champion alias ever pointed at `version` (tagged by `promote`; a version promoted
        before the tag existed carries `promoted_by_dagster_run`)."""
        tags = self.version_tags(version)
        return tags is not None and _was_champion(tags)

    def champion_versions(self) -> list[str]:
        """Every version that was champion, in version order."""
        found = self.client.search_model_versions(f"name = '{self.model_name}'")
        return sorted((str(mv.version) for mv in found if _was_champion(mv.tags)), key=int)

    def champion_info(self) -> ModelVersionInfo | None:
        """The version the champion alias names; None when there is none yet (no registered model, or no
        alias). Any other failure (store unreachable, broken) raises: it is not "no champion"."""
        return self.alias_info(CHAMPION)

    def challenger_info(self) -> ModelVersionInfo | None:
        """The version shadowing the champion (HIT_PROMOTION_MODE=shadow); None when there is none."""
        return self.alias_info(CHALLENGER)

    def set_challenger(self, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, CHALLENGER, str(version))

    def clear_challenger(self) -> None:
        try:
            self.client.delete_registered_model_alias(self.model_name, CHALLENGER)
        except MlflowException as exc:
            if _error_code(exc) not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise

    def alias_info(self, alias: str) -> ModelVersionInfo | None:
        try:
            mv = self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException as exc:
            # the SQL store answers a missing alias with INVALID_PARAMETER_VALUE, a missing model with
            # RESOURCE_DOES_NOT_EXIST; a tracking server that cannot be reached raises INTERNAL_ERROR etc.
            if _error_code(exc) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        return ModelVersionInfo(self.model_name, str(mv.version), mv.run_id, dict(mv.tags), mv.source)

    def load_uri(self, uri: str):
        """The fitted scikit-learn pipeline of a model (`predict_proba(X) -> (n, 72)`), for serving,
        evaluation and batch predictions: the sklearn flavor, which every version has, those logged
        before the python_function flavor was ours included. A clear error when it cannot be loaded."""
        self._activate()
        try:
            return pyfunc_flavor.load_pipeline(uri)
        except Exception as exc:  # missing or corrupted artifacts: say which model and where
            raise ModelUnavailable(f"cannot load {uri} from {self.uri}: {type(exc).__name__}: {exc}") from exc

    def load_version(self, version: str):
        """The fitted pipeline of one registered version (see `load_uri`)."""
        return self.load_uri(f"models:/{self.model_name}/{version}")

    def load_champion(self):
        """(pipeline, info) of `models:/hit_model@champion`."""
        info = self.champion_info()
        if info is None:
            raise ChampionUnavailable(f"no {CHAMPION} alias on registered model {self.model_name!r} in {self.uri}: "
                                      "no model has been promoted yet (build the graph first)")
        try:
            return self.load_version(info.version), info
        except ModelUnavailable as exc:
            raise ChampionUnavailable(f"the champion (version {info.version}) is unusable: {exc}") from exc
