"""MLflow adapter against a real SQLite-backed MLflow store in a temp dir."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from hit_platform.features import FEATURE_COLUMNS
from hit_platform.settings import Settings
from hit_platform.tracking import ChampionUnavailable, Tracker, code_version


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
    return pd.DataFrame(np.random.default_rng(1).random((3, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))


def log(tracker: Tracker, rate: float) -> tuple[str, str]:
    return tracker.log_candidate(run_name=f"rate-{rate}", params={"rate": rate}, metrics={"mean_roc_auc": 0.5},
                                 pipeline=pipeline(rate), input_example=example(),
                                 tags={"lake_snapshot_id": "7"}, figures={}, tables={})


def test_a_run_is_logged_registered_promoted_and_loaded(tracker: Tracker):
    run_id, uri = log(tracker, 0.2)
    run = tracker.client.get_run(run_id)
    assert run.data.params["rate"] == "0.2" and run.data.tags["lake_snapshot_id"] == "7"
    assert str(tracker.settings.warehouse) in run.info.artifact_uri  # artifacts stay under warehouse/
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
