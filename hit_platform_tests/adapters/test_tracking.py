"""MLflow adapter against a real SQLite-backed MLflow store in a temp dir."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.serving.loopback import free_port
from hit_platform.serving.predictor import probe_rows
from hit_platform.settings import Settings
from hit_platform.adapters.tracking import ChampionUnavailable, Tracker, code_version


class RateModel(BaseEstimator):
    """72 constant probabilities: enough to exercise the registry."""

    def __init__(self, rate: float = 0.1):
        self.rate = rate

    def fit(self, X, Y):
        self.rate_ = self.rate
        return self

    def predict_proba(self, X):
        return np.full((len(X), 72), self.rate_)


def pipeline(rate: float) -> Pipeline:
    X = pd.DataFrame(np.random.default_rng(0).random((20, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))
    return Pipeline([("scale", StandardScaler()), ("model", RateModel(rate))]).fit(X, None)


@pytest.fixture(scope="module")
def tracker(tmp_path_factory) -> Tracker:
    return Tracker(Settings(warehouse=tmp_path_factory.mktemp("mlflow") / "warehouse"))


def example() -> pd.DataFrame:
    """Songs as the features table holds them (whole numbers where the dump has integers, is_explicit 0/1)."""
    return pd.DataFrame(probe_rows(3, seed=1), columns=list(FEATURE_COLUMNS))


def log(tracker: Tracker, rate: float) -> tuple[str, str]:
    return tracker.log_candidate(run_name=f"rate-{rate}", params={"rate": rate}, metrics={"mean_roc_auc": 0.5},
                                 pipeline=pipeline(rate), input_example=example(),
                                 tags={"lake_snapshot_id": "7"}, figures={}, tables={})


def test_a_run_is_logged_registered_promoted_and_loaded(tracker: Tracker):
    run_id, uri = log(tracker, 0.2)
    run = tracker.client.get_run(run_id)
    assert run.data.params["rate"] == "0.2" and run.data.tags["lake_snapshot_id"] == "7"
    assert str(tracker.settings.warehouse) in run.info.artifact_uri  # artifacts stay under warehouse/
    # the metrics are the run's, logged once, and the logged model's too (the MLflow UI shows them on it)
    [logged] = tracker.client.search_logged_models([tracker.experiment_id()],
                                                   filter_string=f"source_run_id = '{run_id}'")
    assert [(m.key, m.value) for m in logged.metrics] == [("mean_roc_auc", 0.5)]
    assert [m.value for m in tracker.client.get_metric_history(run_id, "mean_roc_auc")] == [0.5]
    assert logged.params["rate"] == "0.2"
    v = tracker.register(uri, run_id, tags={"family": "rate"})
    tracker.promote(v.version)
    model, info = tracker.load_champion()
    assert info.version == v.version and info.run_id == run_id
    assert np.allclose(model.predict_proba(example()), 0.2)


def test_missing_champion_is_a_clear_error(tmp_path):
    empty = Tracker(Settings(warehouse=tmp_path / "warehouse"))
    with pytest.raises(ChampionUnavailable, match="no champion alias on registered model 'hit_model'"):
        empty.load_champion()


def test_corrupted_champion_is_a_clear_error(tracker: Tracker):
    run_id, uri = log(tracker, 0.3)
    v = tracker.register(uri, run_id, tags={})
    tracker.promote(v.version)
    artifacts = Path(tracker.client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    models_dir = tracker.settings.mlflow_artifacts
    # MLflow 3 keeps logged models apart from runs: remove every file of this version's model
    for pkl in models_dir.rglob("model.pkl"):
        if v.source.split("/")[-1] in str(pkl) or str(artifacts) in str(pkl):
            pkl.write_bytes(b"not a pickle")
    expected = rf"champion \(version {v.version}\) is unusable: cannot load models:/hit_model/{v.version}"
    with pytest.raises(ChampionUnavailable, match=expected):
        tracker.load_champion()
    shutil.rmtree(artifacts, ignore_errors=True)


def test_code_version_names_the_commit():
    cv = code_version()
    assert len(cv["git_commit"]) in (40, len("unknown")) and cv["git_dirty"] in ("true", "false")


# -- code version: what git cannot say is "unknown", never a commit off a failed command, never "clean" ------

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git executable")
UNKNOWN_CODE = {"git_commit": "unknown", "git_dirty": "unknown"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def outside_any_repo(tmp_path: Path, monkeypatch) -> Path:
    """A folder git will not walk up from (the temp dir could sit inside some repository)."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def fake_git(tmp_path: Path, script: str) -> Path:
    """A `git` executable of our own on PATH: a git that misbehaves the way real ones can."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "git"
    exe.write_text("#!/bin/sh\n" + script + "\n")
    exe.chmod(0o755)
    return bin_dir


@needs_git
def test_code_version_reads_the_commit_and_whether_the_tree_is_dirty(outside_any_repo: Path):
    repo = outside_any_repo
    git(repo, "init", "-q")
    (repo / "code.py").write_text("x = 1\n")
    git(repo, "add", "code.py")
    git(repo, "commit", "-q", "-m", "one")
    head = git(repo, "rev-parse", "HEAD")
    assert code_version(repo) == {"git_commit": head, "git_dirty": "false"}
    (repo / "code.py").write_text("x = 2\n")
    assert code_version(repo) == {"git_commit": head, "git_dirty": "true"}


@needs_git
def test_code_version_outside_a_repository_is_unknown(outside_any_repo: Path):
    assert code_version(outside_any_repo) == UNKNOWN_CODE


@needs_git
def test_code_version_of_a_repository_without_commits_is_unknown(outside_any_repo: Path):
    """`git rev-parse HEAD` prints "HEAD" on stdout there, and fails: the exit code decides, not stdout."""
    git(outside_any_repo, "init", "-q")
    assert code_version(outside_any_repo) == UNKNOWN_CODE


def test_code_version_without_git_installed_is_unknown(outside_any_repo: Path, tmp_path: Path, monkeypatch):
    empty = tmp_path / "no-git-here"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert code_version(outside_any_repo) == UNKNOWN_CODE


def test_a_git_that_prints_a_commit_but_fails_is_unknown(outside_any_repo: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_git(tmp_path, "echo 0123456789abcdef0123456789abcdef01234567\n"
                                                      "echo 'fatal: something broke' >&2\nexit 128")))
    assert code_version(outside_any_repo) == UNKNOWN_CODE


def test_a_git_that_hangs_is_unknown(outside_any_repo: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_git(tmp_path, "exec sleep 30")))
    started = time.monotonic()
    assert code_version(outside_any_repo, timeout=0.5) == UNKNOWN_CODE
    assert time.monotonic() - started < 10


def test_a_git_whose_status_fails_keeps_the_commit_but_not_the_cleanliness(outside_any_repo: Path, tmp_path: Path,
                                                                          monkeypatch):
    script = ('case "$1" in rev-parse) echo 0123456789abcdef0123456789abcdef01234567;; '
              "*) echo 'fatal: index file corrupt' >&2; exit 128;; esac")
    monkeypatch.setenv("PATH", str(fake_git(tmp_path, script)))
    assert code_version(outside_any_repo) == {"git_commit": "0123456789abcdef0123456789abcdef01234567",
                                              "git_dirty": "unknown"}


# -- the champion alias: "none yet" only when the registry says so -------------------------------------------

def test_a_registered_model_without_the_alias_has_no_champion(tmp_path: Path):
    tracker = Tracker(Settings(warehouse=tmp_path / "warehouse"))
    tracker.client.create_registered_model(tracker.model_name)
    assert tracker.champion_info() is None


def test_an_unreachable_registry_is_an_error_not_no_champion(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    tracker = Tracker(Settings(warehouse=tmp_path / "warehouse", mlflow={"tracking_uri": uri}))
    with pytest.raises(MlflowException):
        tracker.champion_info()
    with pytest.raises(MlflowException):
        tracker.load_champion()  # not "no model has been promoted yet"


def test_a_model_pickled_under_the_old_layout_still_loads():
    """Models registered before the layout change name `hit_platform.models.*` in their pickle."""
    import pickle
    import subprocess
    import sys

    from hit_platform.domain.models.estimators import PriorRates
    old = pickle.dumps(PriorRates(), protocol=0).replace(b"hit_platform.domain.models", b"hit_platform.models")
    assert b"hit_platform.models.estimators" in old
    code = ("import pickle, sys\n"
            "data = sys.stdin.buffer.read()\n"
            "try:\n    pickle.loads(data)\nexcept ModuleNotFoundError:\n    print('unaliased fails')\n"
            "from hit_platform.adapters.pyfunc_flavor import alias_moved_modules\n"
            "alias_moved_modules()\n"
            "print(type(pickle.loads(data)).__module__)\n")
    out = subprocess.run([sys.executable, "-c", code], input=old, capture_output=True, check=True).stdout.decode()
    assert out.split() == ["unaliased", "fails", "hit_platform.domain.models.estimators"]


def test_a_new_store_is_made_once_while_other_processes_open_it(tmp_path):
    """The demo makes the store in a process of its own while the build starts: processes that open a new
    store at the same moment wait for its tables, then all of them use the one store."""
    import multiprocessing

    from hit_platform.adapters.tracking import prepare_store

    settings = Settings(warehouse=tmp_path / "warehouse")
    spawn = multiprocessing.get_context("spawn")
    makers = [spawn.Process(target=prepare_store, args=(settings,)) for _ in range(3)]
    for p in makers:
        p.start()
    for p in makers:
        p.join(timeout=180)
    assert [p.exitcode for p in makers] == [0, 0, 0]
    db = Path(settings.tracking_uri.removeprefix("sqlite:///"))
    assert db.with_name(db.name + ".made").exists()
    tracker = Tracker(settings)
    assert [e.name for e in tracker.client.search_experiments()].count(settings.mlflow.experiment) == 1
