"""The serving logs' retention on a real lake: raw rows past the retention become daily aggregates, and what
the monitors read of them stays: the delayed-label monitor still scores every song served before they went."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from hit_platform.adapters.reports import dashboard
from hit_platform.domain.countries import COUNTRIES
from hit_platform.serving.predictor import probe_rows
from hit_platform.steps import log_retention, monitors
from hit_platform_tests.support.monitored_world import serve, truth

T = monitors.MonitorThresholds(min_rows=100)
pytestmark = pytest.mark.slow  # ~25 s on a busy machine


def test_the_delayed_label_monitor_scores_the_same_songs_after_their_raw_rows_expired(lake):
    X = probe_rows(200, seed=8)
    P = truth(X)
    ids = np.array([f"expired{i:015d}" for i in range(200)])
    Y = np.random.default_rng(9).random(P.shape) < P
    labels = pd.DataFrame({"spotify_id": np.repeat(ids, len(COUNTRIES)), "country": np.tile(COUNTRIES, 200),
                           "label": Y.ravel()})

    def write(con):
        con.register("l", labels)
        con.execute("CREATE TABLE core.song_labels AS SELECT * FROM l")

    lake.write(write)
    serve(lake, X, P, "7", ids=ids)
    serve(lake, X[:50], P[:50] * 0.5, "7", ids=ids[:50])  # later answers of the same songs: not the first
    with lake.connection(read_only=True) as con:
        before = monitors.delayed_label_evaluation(con, T, "7", promoted_auc=0.8)
    now = datetime.now(timezone.utc) + timedelta(days=40)  # 40 days on: every row is past a 30-day retention
    done = lake.write(lambda con: log_retention.expire_logs(con, log_retention.cutoff(now, 30), 30, now, 365))
    with lake.connection(read_only=True) as con:
        after = monitors.delayed_label_evaluation(con, T, "7", promoted_auc=0.8)
        raw = con.execute("SELECT count(*) FROM ops.inference_log").fetchall()[0][0]
        daily = con.execute(f"SELECT sum(requests), sum(songs), min(day) FROM {log_retention.DAILY}").fetchall()[0]
    assert done["inference_rows_expired"] == 250 and done["requests_expired"] == 250 and raw == 0
    assert daily[:2] == (250, 250) and daily[2] == datetime.now(timezone.utc).date()
    assert after.metrics["songs"] == before.metrics["songs"] == 200
    assert after.metrics["mean_roc_auc"] == before.metrics["mean_roc_auc"]
    with lake.connection(read_only=True) as con:
        assert log_retention.traffic_by_day(con) == [(datetime.now(timezone.utc).date(), 250, 250, 0, 5.0,
                                                      "daily aggregate")]
    assert "Traffic per day (1 newest days)" in dashboard.render(lake).html  # the dashboard still shows it
    # a second run finds nothing more to fold: each day once
    again = lake.write(lambda con: log_retention.expire_logs(con, log_retention.cutoff(now, 30), 30, now, 365))
    assert again["inference_rows_expired"] == 0
    with lake.connection(read_only=True) as con:
        assert con.execute(f"SELECT sum(requests) FROM {log_retention.DAILY}").fetchall()[0][0] == 250
