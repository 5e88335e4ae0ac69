"""The monitors on a real lake with known contents: each one breaches exactly when it should."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hit_platform.adapters.reports import dashboard
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.serving.predictor import probe_rows
from hit_platform.steps import monitors
from hit_platform_tests.support.monitored_world import N, batch, make_world, serve, truth

T = monitors.MonitorThresholds(min_rows=100)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory)


def test_served_songs_like_the_training_data_do_not_drift_and_shifted_ones_do(world):
    lake, X, P, _, _, snapshot = world
    serve(lake, probe_rows(300, seed=9), truth(probe_rows(300, seed=9)), "v-same")
    with lake.connection(read_only=True) as con:
        ok = monitors.served_feature_drift(con, T, "v-same", snapshot)
    assert not ok.breached and ok.metrics["served_songs"] == 300 and ok.metrics["max_psi"] < T.max_served_psi
    shifted = probe_rows(300, seed=10)
    shifted[:, FEATURE_COLUMNS.index("energy")] *= 0.1
    serve(lake, shifted, truth(shifted), "v-shift")
    with lake.connection(read_only=True) as con:
        bad = monitors.served_feature_drift(con, T, "v-shift", snapshot)
        few = monitors.served_feature_drift(con, T, "v-none", snapshot)
    assert bad.breached and "energy" in bad.summary and bad.detail["psi_energy"] > T.max_served_psi
    assert not few.breached and "not judged" in few.summary


def test_prediction_drift_compares_served_probabilities_with_the_reference(world):
    lake, X, P, *_ = world
    serve(lake, X[:200], P[:200], "p-same")
    serve(lake, X[:200], np.clip(P[:200] + 0.5, 0, 1), "p-shift")
    with lake.connection(read_only=True) as con:
        ok = monitors.prediction_drift(con, T, "p-same", P[200:])
        bad = monitors.prediction_drift(con, T, "p-shift", P[200:])
    assert not ok.breached, ok.summary
    assert bad.breached and bad.metrics["served_mean_probability"] > ok.metrics["served_mean_probability"] + 0.3


def test_delayed_labels_score_old_predictions_on_labels_revealed_later(world):
    lake, X, P, Y, ids, _ = world
    with lake.connection(read_only=True) as con:
        before = lake.snapshot_id(con)
    batch(lake, ids, P, "good", before)
    batch(lake, ids, np.random.default_rng(5).random(P.shape), "noise", before)
    # later charts reveal new positives for 40 songs outside the train split
    country = 0
    revealed = [i for i in range(N) if i % 10 >= 7 and not Y[i, country]][:40]
    lake.write(lambda con: con.execute("UPDATE core.song_labels SET label = true WHERE country = ? AND "
                                       "spotify_id IN (SELECT unnest(?))", [COUNTRIES[country],
                                                                          [ids[i] for i in revealed]]))
    with lake.connection(read_only=True) as con:
        good = monitors.delayed_label_evaluation(con, T, "good", promoted_auc=0.80)
        noise = monitors.delayed_label_evaluation(con, T, "noise", promoted_auc=0.80)
    assert good.metrics["songs"] == N - int(0.7 * N)  # the train split is left out
    assert good.metrics["revealed_positives"] == 40
    assert not good.breached and good.metrics["mean_roc_auc"] > 0.7, good.summary
    assert noise.breached and abs(noise.metrics["mean_roc_auc"] - 0.5) < 0.05, noise.summary


def test_serving_health_breaches_on_errors_and_when_serving_is_down(world):
    lake, X, P, *_ = world
    with lake.connection(read_only=True) as con:
        up = monitors.serving_health(con, T, "v", running=True, pid=None)
        down = monitors.serving_health(con, T, "v", running=False, pid=None)
    assert not up.breached and up.metrics["requests"] > 0 and up.metrics["p99_ms"] == pytest.approx(5.0)
    assert down.breached and "not running" in down.summary
    serve(lake, X[:60], P[:60], "v", status=500)
    with lake.connection(read_only=True) as con:
        erring = monitors.serving_health(con, T, "v", running=True, pid=None)
    assert erring.breached and erring.metrics["error_rate"] > T.max_error_rate


def test_results_are_recorded_and_the_dashboard_shows_them(world):
    lake, *_ , snapshot = world
    with lake.connection(read_only=True) as con:
        result = monitors.serving_health(con, T, "v", running=False, pid=None)
    lake.write(lambda con: monitors.record(con, result, "run-1"))
    with lake.connection(read_only=True) as con:
        rows = con.execute("SELECT metric, value, breached FROM ops.monitor_metrics WHERE dagster_run_id = 'run-1'"
                           ).fetchall()
    assert ("breached", 1.0, True) in rows and any(m == "p99_ms" for m, _, _ in rows)
    board = dashboard.render(lake)
    for section in board.sections:
        assert f"<h2>{section}</h2>" in board.html
    assert "serving_health" in board.html and "BREACHED" in board.html and "serving_health" in board.summary_md


def test_delayed_labels_are_judged_in_a_lake_without_splits(lake):
    """Labels and predictions but no ml.splits (never built): no song is known to be a training song."""
    X = probe_rows(300, seed=4)
    P = truth(X)
    ids = np.array([f"nosplit{i:015d}" for i in range(300)])
    Y = np.random.default_rng(6).random(P.shape) < P
    labels = pd.DataFrame({"spotify_id": np.repeat(ids, len(COUNTRIES)), "country": np.tile(COUNTRIES, 300),
                           "label": Y.ravel()})

    def write(con):
        con.register("l", labels)
        con.execute("CREATE TABLE core.song_labels AS SELECT * FROM l")

    lake.write(write)
    batch(lake, ids, P, "no-splits", None)
    with lake.connection(read_only=True) as con:
        result = monitors.delayed_label_evaluation(con, T, "no-splits", promoted_auc=0.8)
    assert result.metrics["songs"] == 300 and result.metrics["mean_roc_auc"] > 0.7, result.summary
