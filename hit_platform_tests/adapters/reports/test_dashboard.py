"""The dashboard on a lake that holds little: it renders what there is and says what is missing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.reports import dashboard
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.promotion import ShadowComparison
from hit_platform.settings import Settings
from hit_platform.steps import performance_estimates as estimates


def test_an_estimate_without_an_interval_is_shown_without_one(tmp_path):
    """Few served songs: in a country with too few expected hits, no interval can be drawn (NULL)."""
    lake = Lake(Settings(warehouse=tmp_path / "warehouse"))
    now = datetime.now(timezone.utc)
    rows = pd.DataFrame({"estimated_at": now, "model_version": "1", "source": "served",
                         "window_start": now - timedelta(hours=1), "window_end": now, "country": COUNTRIES[:3],
                         "metric": "roc_auc", "estimate": [0.8, 0.7, 0.9], "lower": [0.7, np.nan, np.nan],
                         "upper": [0.9, np.nan, np.nan], "songs": 120, "reference": 0.75, "dagster_run_id": "r1"})
    lake.write(lambda con: estimates.append(con, rows))
    board = dashboard.render(lake)
    panel = board.html.split("<h2>Performance estimate</h2>")[1].split("<h2>")[0]
    assert "data:image/png;base64" in panel and "[0.700, 0.900]" in panel
    assert panel.count("none: too few hits expected") == 2


def test_it_shows_the_shadow_comparison_it_is_handed(tmp_path):
    lake = Lake(Settings(warehouse=tmp_path / "warehouse"))
    lake.connect().close()
    shadow = lambda html: html.split("<h2>Shadow</h2>")[1].split("<h2>")[0]  # noqa: E731
    assert "No challenger has shadowed the champion" in shadow(dashboard.render(lake).html)
    assert "Challenger 2 has no answered songs" in shadow(dashboard.render(lake, ShadowComparison("1", "2")).html)
