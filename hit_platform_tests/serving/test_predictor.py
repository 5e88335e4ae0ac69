"""The served model's lineage and input check: what they tolerate (a run pruned from the store, a
pipeline that needs a DataFrame) and what they must not hide (an unreachable store, a broken model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.cli import gc
from mlflow.exceptions import MlflowException
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.serving.loopback import free_port
from hit_platform.serving.predictor import Predictor, lineage_of, load_predictor, probe_rows
from hit_platform.settings import Settings
from hit_platform.adapters.tracking import ModelVersionInfo, Tracker
from hit_platform_tests.support.serving import LinearHits, promote_champion

INFO = ModelVersionInfo("hit_model", "1", "run", {}, "src")


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> tuple[Tracker, ModelVersionInfo]:
    settings = Settings(warehouse=tmp_path_factory.mktemp("predictor") / "warehouse")
    promote_champion(settings, seed=4)
    tracker = Tracker(settings)
    return tracker, tracker.champion_info()


def test_lineage_names_the_run_and_when_it_trained(registry):
    tracker, info = registry
    lineage = lineage_of(tracker, info)
    assert lineage["mlflow_run_id"] == info.run_id and lineage["trained_at"].startswith("20")
    assert lineage["lake_snapshot_id"] == "42" and lineage["code_version"]["git_dirty"] == "false"


def test_lineage_of_an_unreachable_store_raises(registry, tmp_path: Path, monkeypatch):
    """Only a run that is gone is tolerated; a store that cannot be asked is an error, not a blank lineage."""
    _, info = registry
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    down = Tracker(Settings(warehouse=tmp_path / "warehouse", mlflow={"tracking_uri": f"http://127.0.0.1:{free_port()}"}))
    with pytest.raises(MlflowException):
        lineage_of(down, info)


def test_lineage_survives_a_run_pruned_from_the_store(tmp_path: Path):
    """`mlflow gc` removes a deleted run for good; the version (and its tags) stay servable."""
    settings = Settings(warehouse=tmp_path / "warehouse")
    promote_champion(settings, seed=5)
    tracker = Tracker(settings)
    info = tracker.champion_info()
    tracker.client.delete_run(info.run_id)
    out = CliRunner().invoke(gc, ["--backend-store-uri", tracker.uri, "--run-ids", info.run_id])
    assert out.exit_code == 0, out.output
    with pytest.raises(MlflowException, match="not found"):
        tracker.client.get_run(info.run_id)
    lineage = lineage_of(tracker, info)
    assert lineage["trained_at"] is None  # unknown, not made up
    assert lineage["mlflow_run_id"] == info.run_id and lineage["lake_snapshot_id"] == "42"
    assert load_predictor(tracker).lineage == lineage


def fitted(pipeline: Pipeline) -> Pipeline:
    return pipeline.fit(pd.DataFrame(probe_rows(100, seed=1), columns=list(FEATURE_COLUMNS)))


def test_a_pipeline_that_selects_columns_by_name_is_fed_dataframes():
    pipe = fitted(Pipeline([("select", ColumnTransformer([("s", StandardScaler(), ["energy", "tempo", "valence"])])),
                            ("model", LinearHits(1))]))
    p = Predictor(pipe, INFO, {})
    p.check()
    assert not p.array_input
    X = probe_rows(4, seed=2)
    assert np.array_equal(p.predict(X), pipe.predict_proba(pd.DataFrame(X, columns=list(FEATURE_COLUMNS))))


class BrokenOnArrays(LinearHits):
    """Answers DataFrames; on an array, fails the way a broken model does (not a column-selection error)."""

    def predict_proba(self, X):
        if not isinstance(X, pd.DataFrame):
            raise RuntimeError("model state corrupted")
        return super().predict_proba(X)


def test_an_unexpected_error_on_arrays_is_not_taken_for_needs_a_dataframe():
    p = Predictor(fitted(Pipeline([("model", BrokenOnArrays(2))])), INFO, {})
    with pytest.raises(RuntimeError, match="model state corrupted"):
        p.check()
