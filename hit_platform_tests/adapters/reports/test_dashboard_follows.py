"""The dashboard follows the platform: every time axis spans the data it shows (one point in time: a
small window around it, said in words), each section says how old it is, and the page says whether the
champion it shows is the one served now, and reloads itself."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import Evaluation, append_evaluation
from hit_platform.adapters.reports import dashboard, plots
from hit_platform.adapters.reports import dashboard_sections as sec
from hit_platform.domain.countries import COUNTRIES
from hit_platform.serving import inference_log
from hit_platform.serving.inference_log import Served
from hit_platform.serving.predictor import probe_rows
from hit_platform.settings import Settings
from hit_platform.steps import monitors
from hit_platform.steps import performance_estimates as estimates

T0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=10)


def estimate(lake: Lake, at: datetime) -> None:
    rows = pd.DataFrame({"estimated_at": at, "model_version": "2", "source": "served",
                         "window_start": at - timedelta(hours=1), "window_end": at, "country": COUNTRIES[:3],
                         "metric": "roc_auc", "estimate": [0.8, 0.7, 0.9], "lower": [0.7, np.nan, np.nan],
                         "upper": [0.9, np.nan, np.nan], "songs": 120, "reference": 0.75, "dagster_run_id": "r1"})
    lake.write(lambda con: estimates.append(con, rows))


def served(lake: Lake, at: datetime, n: int = 3) -> None:
    X, P = probe_rows(n, seed=1), np.full((n, len(COUNTRIES)), 0.1)
    entries = [Served(str(uuid.uuid4()), at, "/predict", 200, 5.0 + i, "2", 5, X[i:i + 1], P[i:i + 1],
                      [(None, None, None, None)]) for i in range(n)]
    lake.write(lambda con: inference_log.insert(con, inference_log.to_arrow(entries)))


def drift_checks(lake: Lake) -> None:
    """The two drift monitors of one build: one point in time, a few milliseconds apart."""
    for monitor in ("served_feature_drift", "prediction_drift"):
        result = monitors.MonitorResult(monitor, "2", False, "max PSI 0.05",
                                        metrics={"max_psi": 0.05, "psi_energy": 0.05, "breached": 0.0},
                                        thresholds={"max_psi": 0.25})
        lake.write(lambda con: monitors.record(con, result, "run-1"))


def evaluated(lake: Lake, version: str, at: datetime) -> None:
    e = Evaluation(at, "run-1", 1, version, "mlflow-run", "linear", 500, 0.81, 0.3, 0.2, 0.1, 0.6, 0.3, None, None,
                   None, 0.86, 0.18, 0.94, 1.1, True, "promoted", None)
    lake.write(lambda con: append_evaluation(con, e))


@pytest.fixture
def time_axes(monkeypatch) -> list[tuple[str, datetime, datetime, list[datetime]]]:
    """Every time axis the dashboard draws: its plot's title, the span it shows, and the times of its data."""
    drawn = []
    png = sec.png

    def recording(fig):
        for ax in fig.axes:
            if isinstance(ax.xaxis.get_major_locator(), mdates.DateLocator):
                xs = [x for line in ax.get_lines() for x in np.atleast_1d(line.get_xdata())
                      if isinstance(x, (datetime, np.datetime64))]  # not axhline's x, in axes units
                drawn.append((ax.get_title(), *plots.x_span(ax), [plots._utc(pd.Timestamp(x)) for x in xs]))
        return png(fig)

    monkeypatch.setattr(sec, "png", recording)
    return drawn


def panel(page: str, title: str) -> str:
    return page.split(f"<h2>{title}</h2>")[1].split("</section>")[0]


def test_one_point_in_time_gets_a_small_window_around_it_and_says_so(tmp_path, time_axes):
    lake = Lake(Settings(warehouse=tmp_path / "warehouse"))
    estimate(lake, T0)
    served(lake, T0 + timedelta(seconds=20))
    drift_checks(lake)
    page = dashboard.render(lake).html
    assert {t for t, *_ in time_axes} == {"Drift over time", "Serving latency per minute",
                                          "Estimated (line, 90% band) vs realized (x) ROC AUC, served songs; "
                                          "dotted: test AUC"}
    for title, lo, hi, data in time_axes:
        assert data and lo < min(data) <= max(data) < hi, (title, lo, hi, data)
        assert hi - lo <= timedelta(hours=2), f"{title}: {lo} .. {hi}, for one point in time"
    assert "one estimate so far" in panel(page, "Performance estimate")
    assert "one check so far" in panel(page, "Drift")
    assert "3 requests (0 answered 5xx), all in one minute: one minute of traffic so far." in panel(page, "Serving")


def test_a_time_axis_spans_the_times_of_its_data(tmp_path, time_axes):
    lake = Lake(Settings(warehouse=tmp_path / "warehouse"))
    for days in (2, 1, 0):
        estimate(lake, T0 - timedelta(days=days))
    served(lake, T0 - timedelta(hours=3))
    served(lake, T0)
    page = dashboard.render(lake).html
    spans = {title.split(",")[0]: (lo, hi, data) for title, lo, hi, data in time_axes}
    for title, first, last in (("Estimated (line", T0 - timedelta(days=2), T0),
                               ("Serving latency per minute", T0 - timedelta(hours=3), T0)):
        lo, hi, data = spans[title]
        assert (min(data), max(data)) == (first, last)
        margin = (last - first) * 0.1
        assert first - margin <= lo < first and last < hi <= last + margin, (title, lo, hi)
    assert "so far" not in panel(page, "Performance estimate") + panel(page, "Serving")


def test_each_section_says_how_old_it_is_against_the_render_time(tmp_path):
    lake = Lake(Settings(warehouse=tmp_path / "warehouse"))
    estimate(lake, T0)
    board = dashboard.render(lake, now=T0 + timedelta(minutes=3))
    assert board.newest["Performance estimate"] == T0 and board.rendered_at == T0 + timedelta(minutes=3)
    assert (f'newest estimate: 3 min ago (<time datetime="{T0.isoformat()}">{T0:%Y-%m-%d %H:%M:%S} UTC</time>)'
            in panel(board.html, "Performance estimate"))
    for title in board.sections:  # every section has its age line, "none yet" where it has no rows
        assert 'class="age"' in panel(board.html, title)
    assert "newest alert: none yet" in panel(board.html, "Alerts")
    assert f"Rendered <time datetime=\"{(T0 + timedelta(minutes=3)).isoformat()}\">" in board.html
    now = T0
    assert [dashboard.ago(now - d, now) for d in (timedelta(seconds=45), timedelta(minutes=3), timedelta(hours=5),
                                                   timedelta(days=3), timedelta(seconds=-5))] == \
        ["45 s ago", "3 min ago", "5 h ago", "3 days ago", "just now"]


def test_it_says_whether_the_champion_it_shows_is_the_one_served_now(tmp_path):
    lake = Lake(Settings(warehouse=tmp_path / "warehouse"))
    evaluated(lake, "2", T0)
    status = SimpleNamespace(running=True, model_version="2", state="running", challenger_version=None)
    board = dashboard.render(lake, served=status, refresh_seconds=30)
    assert board.champion_version == "2" and board.served == "served now: version 2 (same)"
    assert "Champion shown: version 2" in board.html and "served now: version 2 (same)" in board.html
    assert '<meta http-equiv="refresh" content="30">' in board.html
    assert "http-equiv" not in dashboard.render(lake).html  # the default: no reload
    other = SimpleNamespace(running=True, model_version="3", state="running", challenger_version="4")
    assert dashboard.served_line(other, "2") == \
        "served now: version 3 \u2014 this page shows 2; challenger 4 shadows it"
    assert dashboard.served_line(SimpleNamespace(running=False, model_version=None), "2") == "not served now"
    starting = SimpleNamespace(running=True, model_version="2", state="starting")
    assert dashboard.served_line(starting, "2") == "the serving process is starting (version 2, from its pid file)"


def test_a_lake_not_made_yet_gives_a_page_that_says_so(tmp_path):
    board = dashboard.render_current(Lake(Settings(warehouse=tmp_path / "warehouse")), refresh_seconds=30)
    assert "no lake at" in board.html and 'http-equiv="refresh"' in board.html

