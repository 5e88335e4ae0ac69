"""A candidate's global importance per country in its MLflow run (real store), read back by version, and
on the dashboard: the champion's plot, or a line saying why there is none."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.model_explanations import load_background
from hit_platform.adapters.model_importance import (IMPORTANCE_ARTIFACT, SHARE_METRIC, SONGS_TAG, TOP_TAG,
                                                    NoImportance, load_importance, log_importances)
from hit_platform.adapters.reports import dashboard
from hit_platform.adapters.tracking import ModelUnavailable, Tracker
from hit_platform.domain.explain import explain
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform_tests.adapters.reports.test_dashboard_follows import evaluated, panel
from hit_platform_tests.support.models import synthetic_features
from hit_platform_tests.support.serving import register_explained_version, register_version

pytestmark = pytest.mark.slow  # a new MLflow store and two models logged: 56 s at load average 15

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)


def test_logged_importance_reads_back_exactly_and_the_dashboard_plots_it_or_says_why_not(settings):
    tracker = Tracker(settings)
    version = register_explained_version(settings, seed=3)
    run_id = tracker.client.get_model_version("hit_model", version).run_id
    model, background = tracker.load_version(version), load_background(tracker, version)
    X = synthetic_features(50, 9)
    validation = SimpleNamespace(spotify_ids=np.array([f"v{i}" for i in range(50)]), X=X)
    logged, seconds = log_importances(tracker, {"trees": (run_id, "")}, {"trees": model}, {"trees": background},
                                      validation, seed=4, songs=8)
    imp = load_importance(tracker, version)
    assert np.array_equal(imp.matrix, logged["trees"].matrix) and imp.song_ids == logged["trees"].song_ids
    rows = [int(i[1:]) for i in imp.song_ids]
    np.testing.assert_allclose(imp.matrix, np.abs(explain(model, X.iloc[rows], background).phi).mean(axis=0),
                               rtol=1e-12, atol=1e-15)  # up to the sums' rounding (logged on one BLAS thread)
    run = tracker.client.get_run(run_id).data
    assert run.tags[TOP_TAG] == imp.top_feature() and run.tags[SONGS_TAG] == "8"
    assert {m for m in run.metrics if m.startswith(SHARE_METRIC)} == {SHARE_METRIC + f for f in FEATURE_COLUMNS}
    assert run.metrics["importance_seconds"] == pytest.approx(seconds["trees"])
    assert "plots/importance_by_country.png" in {a.path for a in tracker.client.list_artifacts(run_id, "plots")}

    lake = Lake(settings)
    evaluated(lake, version, T0)
    page = dashboard.render(lake, importance_of=lambda v: load_importance(tracker, v)).html
    shown = panel(page, "Global importance")
    assert "data:image/png;base64" in shown and f"Version {version} (trees)" in shown
    assert "over 8 validation songs" in shown and f"Top feature: {imp.top_feature()}" in shown

    old = register_version(settings, seed=1)  # as versions were registered before importances were logged
    with pytest.raises(NoImportance, match=f"version {old} of 'hit_model' .* has no global importance "
                                           f"\\(no {IMPORTANCE_ARTIFACT}: it was registered before"):
        load_importance(tracker, old)
    with pytest.raises(ModelUnavailable, match="no version 99 of 'hit_model'"):
        load_importance(tracker, 99)
    evaluated(lake, old, T0 + timedelta(minutes=1))  # the newest promoted: the champion shown
    shown = panel(dashboard.render(lake, importance_of=lambda v: load_importance(tracker, v)).html,
                  "Global importance")
    assert f"No global importance for version {old}" in shown and "train a new version" in shown
    assert "data:image" not in shown
    assert "Not asked" in panel(dashboard.render(lake).html, "Global importance")
