"""The label-free performance estimate on a real lake: stored per country with its interval, raises a
breach only when many countries fall, gets its realized value once labels arrive, and is printed
worst first by `hit-platform monitor`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from hit_platform.domain.countries import COUNTRIES
from hit_platform.serving.predictor import probe_rows
from hit_platform.settings import REPO_ROOT, MonitorThresholds
from hit_platform.steps import performance_estimates as estimates
from hit_platform_tests.support.monitored_world import N, batch, make_world, serve, truth

T = MonitorThresholds(min_rows=100)
SERVED = 600


def label(lake, ids, Y) -> None:
    frame = pd.DataFrame({"spotify_id": np.repeat(ids, len(COUNTRIES)), "country": np.tile(COUNTRIES, len(ids)),
                          "label": Y.ravel()})

    def write(con):
        con.register("new_labels", frame)
        con.execute("INSERT INTO core.song_labels SELECT * FROM new_labels")
        con.unregister("new_labels")

    lake.write(write)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(world):
    _, _, P, Y, _, _ = world
    test = np.arange(N) % 10 >= 7
    return estimates.Reference.from_test(Y[test], P[test])


def window():
    end = datetime.now(timezone.utc)
    return end - timedelta(hours=T.window_hours), end


def test_a_calibrated_model_on_new_songs_is_estimated_close_to_the_truth_and_realized_later(world, reference):
    lake = world[0]
    X = probe_rows(SERVED, seed=21)
    P = truth(X)
    ids = np.array([f"new{i:018d}" for i in range(SERVED)])
    serve(lake, X, P, "est-ok", ids=ids)
    serve(lake, X[:50], P[:50], "est-ok", ids=ids[:50])  # asked again: still one song each
    serve(lake, X[:20], P[:20], "est-ok")  # no spotify_id: each item counts
    with lake.connection(read_only=True) as con:
        pop = estimates.served_population(con, "est-ok", *window())
    assert len(pop) == SERVED + 20
    result = estimates.estimate_population(pop, "est-ok", reference, T, run_id="r1")
    assert not result.breached, result.summary
    rows = result.rows
    assert len(rows) == 2 * len(COUNTRIES) and set(rows["metric"]) == {"roc_auc", "log_loss"}
    assert (rows["lower"] <= rows["estimate"]).all() and (rows["estimate"] <= rows["upper"]).all()
    assert (rows["songs"] == SERVED + 20).all()
    lake.write(lambda con: estimates.append(con, rows))
    # the labels arrive: sampled from the same truth the probabilities are
    Y = np.random.default_rng(3).random(P.shape) < P
    label(lake, ids, Y)
    assert lake.write(estimates.realize) >= 2 * len(COUNTRIES)
    # realized again as the window turns a day, a week, ...: not by a monitor 15 minutes later, nor on day 2
    def realized_at(later: timedelta) -> int:
        return lake.write(lambda con: estimates.realize(con, datetime.now(timezone.utc) + later))

    assert realized_at(timedelta(minutes=15)) == 0
    assert realized_at(timedelta(days=1, minutes=1)) >= 2 * len(COUNTRIES)
    assert realized_at(timedelta(days=2)) == 0
    assert realized_at(timedelta(days=7, minutes=1)) >= 2 * len(COUNTRIES)
    with lake.connection(read_only=True) as con:
        got = con.execute("SELECT country, estimate, lower, upper, realized, realized_songs FROM "
                          "ops.performance_estimates WHERE model_version = 'est-ok' AND metric = 'roc_auc'").df()
    assert (got["realized_songs"] == SERVED).all()  # the songs with an id and labels
    enough = got["country"].isin([c for c, n in zip(COUNTRIES, Y.sum(axis=0)) if 30 <= n <= SERVED - 30])
    error = (got["estimate"] - got["realized"]).abs()[enough]
    assert enough.sum() >= 20 and error.mean() < 0.04, error.describe()
    covered = ((got["realized"] >= got["lower"]) & (got["realized"] <= got["upper"]))[enough]
    assert covered.mean() >= 0.75, covered.mean()


def test_the_served_population_leaves_out_the_songs_of_the_train_split(world):
    """Training songs asked for: their labels are in the model, so they are not estimated (as from the batch)."""
    lake, X, P, _, ids, _ = world
    serve(lake, X[:40], P[:40], "est-train", ids=ids[:40])
    with lake.connection(read_only=True) as con:
        pop = estimates.served_population(con, "est-train", *window())
        train = {r[0] for r in con.execute("SELECT spotify_id FROM ml.splits WHERE split = 'train'").fetchall()}
    served_train = [i for i in ids[:40] if i in train]
    assert 0 < len(served_train) < 40
    assert sorted(pop.spotify_ids) == sorted(i for i in ids[:40] if i not in train)


def test_compressed_probabilities_fall_below_the_test_auc_in_many_countries_and_breach(world, reference):
    """Songs the model can barely tell apart (its probabilities bunched near each country's mean): the
    estimate falls below the test AUC everywhere, with no label needed."""
    lake = world[0]
    X = probe_rows(SERVED, seed=22)
    P = truth(X)
    flat = P.mean(axis=0) + 0.1 * (P - P.mean(axis=0))
    serve(lake, X, flat, "est-flat", ids=np.array([f"flat{i:017d}" for i in range(SERVED)]))
    with lake.connection(read_only=True) as con:
        pop = estimates.served_population(con, "est-flat", *window())
    result = estimates.estimate_population(pop, "est-flat", reference, T)
    assert result.breached and len(result.degraded) > T.max_degraded_countries, result.summary
    worst = result.worst(10)
    assert len(worst) == 10 and (worst["drop"] > T.max_estimated_auc_drop).all()
    assert list(worst["drop"]) == sorted(worst["drop"], reverse=True)
    # the same songs judged with a looser rule do not breach
    loose = MonitorThresholds(min_rows=100, max_degraded_countries=len(COUNTRIES))
    assert not estimates.estimate_population(pop, "est-flat", reference, loose).breached


def test_too_few_songs_are_not_estimated(world, reference):
    lake = world[0]
    with lake.connection(read_only=True) as con:
        pop = estimates.served_population(con, "never-served", *window())
    result = estimates.estimate_population(pop, "never-served", reference, T)
    assert len(pop) == 0 and not result.breached and result.rows.empty and "not estimated" in result.summary


def test_the_batch_population_is_the_latest_batch_outside_the_train_split(world, reference):
    lake, X, P, Y, ids, snapshot = world
    batch(lake, ids, P, "est-batch", snapshot)
    with lake.connection(read_only=True) as con:
        pop = estimates.batch_population(con, "est-batch")
        none = estimates.batch_population(con, "no-batch")
    assert none is None
    assert len(pop) == N - int(0.7 * N) and not any(int(i[4:]) % 10 < 7 for i in pop.spotify_ids)
    result = estimates.estimate_population(pop, "est-batch", reference, T, now=datetime.now(timezone.utc))
    assert not result.breached, result.summary
    lake.write(lambda con: estimates.append(con, result.rows))
    assert lake.write(estimates.realize) > 0
    with lake.connection(read_only=True) as con:
        realized = con.execute("SELECT count(*), min(realized_songs) FROM ops.performance_estimates "
                               "WHERE model_version = 'est-batch' AND realized IS NOT NULL").fetchall()[0]
    assert realized[0] > 0 and realized[1] == len(pop)


def test_hit_platform_monitor_prints_the_latest_estimate_worst_first(world, reference):
    lake = world[0]
    with lake.connection(read_only=True) as con:
        pop = estimates.served_population(con, "est-flat", *window())
    flat = estimates.estimate_population(pop, "est-flat", reference, T,
                                         now=datetime.now(timezone.utc) + timedelta(seconds=5))
    lake.write(lambda con: estimates.append(con, flat.rows))
    env = {**os.environ, "HIT_WAREHOUSE": str(lake.settings.warehouse)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "hit_platform.cli", "monitor", *a], env=env,  # noqa: E731
                                    cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    out = run("--source", "served", "--limit", "5")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "model version est-flat" in lines[0] and f"{SERVED:,} served songs" in lines[0]
    changes = [float(line.split()[5]) for line in lines[2:]]  # country estimate [lower, upper] test change
    assert len(changes) == 5 and changes == sorted(changes) and changes[0] < -T.max_estimated_auc_drop
    as_json = [json.loads(line) for line in run("--source", "served", "--json").stdout.splitlines()]
    assert len(as_json) == len(COUNTRIES) and {r["model_version"] for r in as_json} == {"est-flat"}
    assert all(r["lower"] <= r["estimate"] <= r["upper"] for r in as_json)
    empty = subprocess.run([sys.executable, "-m", "hit_platform.cli", "monitor"], cwd=REPO_ROOT, text=True,
                           env={**env, "HIT_WAREHOUSE": str(lake.settings.warehouse) + "_none"},
                           capture_output=True, timeout=120)
    assert empty.returncode == 0 and "no performance estimates yet" in empty.stdout, empty.stderr


def test_the_dashboard_shows_estimated_against_realized_auc_of_the_worst_countries(world):
    from hit_platform.adapters.reports import dashboard

    lake = world[0]
    board = dashboard.render(lake)
    assert "<h2>Performance estimate</h2>" in board.html and "Performance estimate" in board.sections
    with lake.connection(read_only=True) as con:
        worst = estimates.latest(con)
    assert worst.loc[0, "model_version"] == "est-flat"  # the newest estimate, worst country first
    panel = board.html.split("<h2>Performance estimate</h2>")[1].split("<h2>")[0]
    assert "data:image/png;base64" in panel and f"<td>{worst.loc[0, 'country']}</td>" in panel
