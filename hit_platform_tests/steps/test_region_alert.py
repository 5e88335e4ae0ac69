"""The delayed-label monitor judges each region: a region whose taste changed is named, a world
without a change stays quiet. The 'model' is the world's own truth before the change (the best a
model could have learned), so only the change of taste moves the labels away from it."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from hit_platform.adapters.alerts import list_alerts, raise_alert
from hit_platform.adapters.lake.connection import Lake
from hit_platform.domain.countries import COUNTRIES, REGIONS
from hit_platform.domain.models import evaluate
from hit_platform.generator.config import GeneratorConfig
from hit_platform.generator.dump import hidden_truth
from hit_platform.generator.oracle import conditional_probability
from hit_platform.generator.taste import TasteShift
from hit_platform.settings import Settings
from hit_platform.steps import monitors
from hit_platform_tests.support.monitored_world import batch

T = monitors.MonitorThresholds()
SHIFT_DAY = 120


def world(tmp_path, strength: float):
    """A world whose Latin American countries judge the songs released from day 120 on by a taste
    moved `strength` of the way toward the anglo countries' (0: the same calendar, no change)."""
    return hidden_truth(GeneratorConfig(out_dir=tmp_path / "landing", seed=42, songs=12_000, history_days=120,
                                        increments=0, start_date=date(2026, 1, 1), world_days=150,
                                        taste_shift=TasteShift("latam", SHIFT_DAY, strength, "anglo")))


@pytest.fixture(scope="module")
def truths(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("region_worlds")
    return {s: world(tmp, s) for s in (0.0, 0.5)}


def judged_lake(tmp_path, truths, strength: float) -> monitors.MonitorResult:
    """A lake holding the new songs' predictions (the truth before the change) and the labels `strength`'s
    world gave them; the monitor's result on it, its alert raised as ops/delayed_label_evaluation does."""
    control, labelled = truths[0.0], truths[strength]
    P = conditional_probability(control.prob)[:, 1:]
    old = np.flatnonzero(control.in_dump & ~control.shifted)
    test = evaluate(control.labels[old][:, 1:], P[old])  # what the model was promoted with
    new = np.flatnonzero(labelled.in_dump & labelled.shifted)
    ids = np.array([f"new{i:019d}" for i in new])
    lake = Lake(Settings(warehouse=tmp_path / "warehouse"))
    labels = pd.DataFrame({"spotify_id": np.repeat(ids, len(COUNTRIES)), "country": np.tile(COUNTRIES, len(ids)),
                           "label": labelled.labels[new][:, 1:].ravel()})

    def write(con):
        con.register("l", labels)
        con.execute("CREATE TABLE core.song_labels AS SELECT * FROM l")

    lake.write(write)
    batch(lake, ids, P[new], "v1", None)
    with lake.connection(read_only=True) as con:
        result = monitors.delayed_label_evaluation(con, T, "v1", test["mean_roc_auc"], test["roc_auc"], len(old))
    if result.breached:
        raise_alert(lake, kind="monitor_breach", severity="warning", what=result.summary,
                    where="ops/delayed_label_evaluation", details={"regions": result.regions_breached})
    return result, list_alerts(lake)


def test_a_region_that_lost_its_taste_is_named_though_the_mean_hardly_moves(tmp_path, truths):
    result, alerts = judged_lake(tmp_path, truths, 0.5)
    assert result.metrics["songs"] >= T.min_rows
    latam = result.metrics["region_auc_drop_latam"]
    assert latam > 0.08, result.summary  # the region lost about 0.1 of ROC AUC ...
    assert result.metrics["auc_drop"] < T.max_auc_drop, result.summary  # ... which the 72-country mean hides
    assert result.breached and result.regions_breached == ["latam"], result.summary
    assert result.summary.startswith("region latam: ")
    assert len(alerts) == 1 and alerts[0]["what"].startswith("region latam: ")
    others = [r for r in REGIONS if r != "latam"]
    assert all(abs(result.metrics[f"region_auc_drop_{r}"]) < 0.05 for r in others), result.metrics


def test_no_change_of_taste_raises_no_region_alert(tmp_path, truths):
    result, alerts = judged_lake(tmp_path, truths, 0.0)
    assert result.metrics["songs"] >= T.min_rows
    assert not result.breached and result.regions_breached == [] and alerts == [], result.summary
    assert "largest region drop" in result.summary
    assert all(result.metrics[f"region_auc_drop_lower_{r}"] < T.max_region_auc_drop for r in REGIONS)


def test_without_per_country_test_auc_only_the_mean_is_judged(tmp_path, truths):
    """An evaluation row from before per-country AUCs were kept: the monitor judges what it can."""
    control = truths[0.0]
    P = conditional_probability(control.prob)[:, 1:]
    new = np.flatnonzero(truths[0.5].in_dump & truths[0.5].shifted)[:300]
    ids = np.array([f"new{i:019d}" for i in new])
    lake = Lake(Settings(warehouse=tmp_path / "warehouse"))
    labels = pd.DataFrame({"spotify_id": np.repeat(ids, len(COUNTRIES)), "country": np.tile(COUNTRIES, len(ids)),
                           "label": truths[0.5].labels[new][:, 1:].ravel()})
    lake.write(lambda con: (con.register("l", labels), con.execute("CREATE TABLE core.song_labels AS SELECT * FROM l")))
    batch(lake, ids, P[new], "v1", None)
    with lake.connection(read_only=True) as con:
        result = monitors.delayed_label_evaluation(con, T, "v1", 0.8)
    assert result.regions_breached == [] and "region" not in result.summary


def test_new_releases_that_changed_taste_are_named_though_the_versions_old_songs_outnumber_them(tmp_path, truths):
    """A version's batch holds the old songs and the new releases: over all its songs the region's drop is
    diluted below the threshold; the songs first charted in the `label_recent_days` before the newest
    chart day name the region. With the recent window off, nothing fires."""
    control, labelled = truths[0.0], truths[0.5]
    P = conditional_probability(control.prob)[:, 1:]
    old = np.flatnonzero(labelled.in_dump & ~labelled.shifted)
    new = np.flatnonzero(labelled.in_dump & labelled.shifted)
    test = evaluate(control.labels[old][:, 1:], P[old])
    old = old[: 4 * len(new)]  # enough to dilute the region's drop four to one
    songs = np.concatenate([old, new])
    ids = np.array([f"{'old' if i < len(old) else 'new'}{s:019d}" for i, s in enumerate(songs)])
    lake = Lake(Settings(warehouse=tmp_path / "warehouse"))
    labels = pd.DataFrame({"spotify_id": np.repeat(ids, len(COUNTRIES)), "country": np.tile(COUNTRIES, len(ids)),
                           "label": labelled.labels[songs][:, 1:].ravel()})
    lake.write(lambda con: (con.register("l", labels), con.execute("CREATE TABLE core.song_labels AS SELECT * FROM l")))
    batch(lake, ids, P[songs], "v1", None)  # all predicted today, as a newly promoted version's batch is
    first = pd.DataFrame({"spotify_id": ids, "first_chart_date": [date(2026, 1, 1) if i.startswith("old")
                                                                  else date(2026, 5, 20) for i in ids],
                          "last_chart_date": date(2026, 5, 30)})
    lake.write(lambda con: (con.register("f", first), con.execute("CREATE TABLE core.songs AS SELECT * FROM f")))
    assert len(new) >= T.min_rows and len(old) > 3 * len(new), (len(old), len(new))

    def judged(t):
        with lake.connection(read_only=True) as con:
            return monitors.delayed_label_evaluation(con, t, "v1", test["mean_roc_auc"], test["roc_auc"], len(old))

    result = judged(T)
    assert result.metrics["region_auc_drop_lower_latam"] < T.max_region_auc_drop, result.summary  # diluted
    assert result.metrics["recent_songs"] == len(new)
    assert result.metrics["region_auc_drop_recent_latam"] > 0.08, result.metrics
    assert result.breached and result.regions_breached == ["latam"], result.summary
    assert result.summary.startswith("region latam: ") and f"first charted in the last {T.label_recent_days:g} days" \
        in result.summary
    others = [r for r in REGIONS if r != "latam"]
    assert all(result.metrics[f"region_auc_drop_lower_recent_{r}"] < T.max_region_auc_drop for r in others)
    off = judged(monitors.MonitorThresholds(label_recent_days=0))
    assert not off.breached and "recent_songs" in off.metrics and off.metrics["recent_songs"] == 0, off.summary
