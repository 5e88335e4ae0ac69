"""The serving model's label-free performance estimate, as `ops/performance_estimate` runs it: its test
split at the lake snapshot it was trained on gives the reference (MLflow loads the model), the songs it
served in the window and its latest batch predictions are estimated against it
(`steps.performance_estimates`), and the estimate rows are appended to `ops.performance_estimates` in
one transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.tracking import ModelVersionInfo, Tracker
from hit_platform.settings import MonitorThresholds
from hit_platform.steps import performance_estimates as estimates
from hit_platform.steps.datasets import load_split


def estimate_performance(lake: Lake, tracker: Tracker, champion: ModelVersionInfo, snapshot: int,
                         thresholds: MonitorThresholds, run_id: str,
                         end: datetime) -> list[estimates.EstimateResult]:
    """One estimate per population that has songs (served in the window ending at `end`, the latest
    batch), its rows written."""
    with lake.connection(read_only=True) as con:
        test = load_split(con, "test", snapshot)
        reference = estimates.Reference.from_test(test.Y, tracker.load_version(champion.version).predict_proba(test.X))
        start = end - timedelta(hours=thresholds.window_hours)
        populations = [estimates.served_population(con, champion.version, start, end),
                       estimates.batch_population(con, champion.version)]
    results = [estimates.estimate_population(p, champion.version, reference, thresholds, run_id, end)
               for p in populations if p is not None]
    made = [r for r in results if not r.rows.empty]
    if made:
        rows = pd.concat([r.rows for r in made], ignore_index=True)
        lake.write(lambda con: estimates.append(con, rows), what=estimates.TABLE)
    return results
