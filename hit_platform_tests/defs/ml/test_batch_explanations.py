"""`ml/batch_explanations` on a real DuckLake, a real MLflow store and real Dagster runs: the champion's
attributions of its batch add up, an analyst can ask them questions, runs take bounded slices and never
explain a song twice, a failed write leaves nothing, and a champion without a background is said, not
crashed on.

The champion is a small real trees pipeline with its declared background
(`support.serving.register_explained_version`, ~2 s); ml.features holds 30 songs, one with a missing feature.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.model_explanations import load_background
from hit_platform.adapters.tracking import Tracker
from hit_platform.defs.ml.explanations import batch_explanations
from hit_platform.defs.ml.predictions import batch_predictions
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.explain import Explainer
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.serving.predictor import probe_rows
from hit_platform.settings import Settings
from hit_platform.steps import batch_explanations as steps
from hit_platform_tests.support.lake_assets import materialize, write_features
from hit_platform_tests.support.serving import register_explained_version, register_version

N_SONGS, LIMIT = 30, 12
PER_SONG = len(COUNTRIES) * len(FEATURE_COLUMNS)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    settings = Settings(warehouse=tmp_path_factory.mktemp("batch_explanations") / "warehouse")
    version = register_explained_version(settings, seed=3)
    Tracker(settings).promote(version)
    X = probe_rows(N_SONGS, seed=5)
    X[7, FEATURE_COLUMNS.index("tempo")] = np.nan  # a new track whose audio features are partly missing
    ids = [f"song{i:02d}" for i in range(N_SONGS)][::-1]  # written out of order: the slices go by spotify_id
    frame = pd.DataFrame(X, columns=list(FEATURE_COLUMNS)).assign(spotify_id=ids)[["spotify_id", *FEATURE_COLUMNS]]

    write_features(settings, frame)
    materialize(settings, batch_predictions)
    return settings, version, frame


def explanations(settings: Settings, where: str = "true") -> pd.DataFrame:
    with Lake(settings).connection(read_only=True) as con:
        return con.execute(f"SELECT * FROM ml.batch_explanations WHERE {where}").df()


def test_runs_explain_the_batch_in_bounded_slices_that_add_up_and_never_repeat(world, monkeypatch):
    settings, version, frame = world
    monkeypatch.setenv("HIT_BATCH_EXPLAIN_SONGS", str(LIMIT))
    explainable = sorted(frame["spotify_id"].drop(frame.index[7]))
    seen = []
    for run, expected in enumerate([LIMIT, LIMIT, N_SONGS - 1 - 2 * LIMIT, 0]):
        meta = materialize(settings, batch_explanations)
        assert (meta["songs_explained"], meta["songs_missing_a_feature"]) == (expected, 1), meta
        assert meta["songs_remaining"] == len(explainable) - len(seen) - expected
        if expected:
            assert meta["dagster/row_count"] == expected * PER_SONG and meta["songs_per_second"] > 0
        rows = explanations(settings)
        new = sorted(set(rows["spotify_id"]) - set(seen))
        assert new == explainable[len(seen):len(seen) + expected], f"run {run}: the next songs by spotify_id"
        seen += new
    assert rows.groupby(["spotify_id", "country", "feature"]).size().max() == 1  # never twice
    assert len(rows) == len(explainable) * PER_SONG and set(rows["model_version"]) == {version}

    # base + sum == value within 1e-9 per song x country, the value the batch's probability on its scale
    per = rows.groupby(["spotify_id", "country"]).agg(base=("base", "first"), total=("attribution", "sum"),
                                                       value=("value", "first"), p=("probability", "first"),
                                                       scale=("scale", "first"))
    assert (per["base"] + per["total"] - per["value"]).abs().max() <= 1e-9
    assert set(per["scale"]) == {"log-odds"} and np.allclose(expit(per["value"]), per["p"], rtol=0, atol=1e-9)

    # the very attributions the library gives for the features the batch scored
    tracker = Tracker(settings)
    a = Explainer(tracker.load_version(version), load_background(tracker, version)).explain(
        frame.set_index("spotify_id").loc[["song00"], list(FEATURE_COLUMNS)])
    mine = rows[rows["spotify_id"] == "song00"].set_index(["country", "feature"])["attribution"]
    assert np.abs(mine.loc[list(zip(np.repeat(COUNTRIES, len(FEATURE_COLUMNS)), FEATURE_COLUMNS * len(COUNTRIES)))]
                  .to_numpy() - a.phi[0].ravel()).max() <= 1e-12


def test_an_analyst_asks_which_feature_drives_a_country_and_where_a_feature_pushes_up(world, monkeypatch):
    settings, version, _ = world
    monkeypatch.setenv("HIT_BATCH_EXPLAIN_SONGS", str(N_SONGS))
    materialize(settings, batch_explanations)
    rows = explanations(settings)
    with Lake(settings).connection(read_only=True) as con:
        drives_br = con.execute("""SELECT feature, avg(abs(attribution)) AS importance FROM ml.batch_explanations
                                   WHERE country = 'BR' AND model_version = ? GROUP BY feature
                                   ORDER BY importance DESC LIMIT 1""", [version]).fetchall()[0][0]
        pushed = con.execute("""SELECT spotify_id FROM ml.batch_explanations WHERE country = 'CZ'
                                AND feature = 'energy' AND attribution > 0 ORDER BY spotify_id""").fetchall()
    br = rows[rows["country"] == "BR"]
    assert drives_br == br.groupby("feature")["attribution"].apply(lambda s: s.abs().mean()).idxmax()
    cz = rows[(rows["country"] == "CZ") & (rows["feature"] == "energy")]
    assert [r[0] for r in pushed] == sorted(cz.loc[cz["attribution"] > 0, "spotify_id"])
    assert 0 < len(pushed) < len(cz)  # a real question: some songs yes, some no


def test_a_failed_write_leaves_nothing_and_the_next_run_explains_the_same_songs(world, monkeypatch):
    settings, version, _ = world
    lake = Lake(settings)
    with lake.connection() as con:
        con.execute("DELETE FROM ml.batch_explanations WHERE spotify_id >= 'song20'")
        todo = steps.pending(con, version, 5)
    rows, _ = steps.explain(Explainer(Tracker(settings).load_version(version),
                                      load_background(Tracker(settings), version)), todo)

    def written_then_crashed(con):
        assert steps.append(con, rows, version, "crashed-run", todo.lake_snapshot_read) == len(rows)
        raise OSError("the disk filled up before the commit")
    with pytest.raises(OSError):
        lake.write(written_then_crashed, what="ml.batch_explanations")
    assert "crashed-run" not in set(explanations(settings)["dagster_run_id"])
    # a second writer of the same songs (a concurrent run) adds nothing
    assert lake.write(lambda c: steps.append(c, rows, version, "first", todo.lake_snapshot_read)) == len(rows)
    assert lake.write(lambda c: steps.append(c, rows, version, "second", todo.lake_snapshot_read)) == 0
    monkeypatch.setenv("HIT_BATCH_EXPLAIN_SONGS", "100")
    meta = materialize(settings, batch_explanations)
    assert (meta["songs_explained"], meta["songs_remaining"]) == (N_SONGS - 1 - 20 - 5, 0)
    assert explanations(settings).groupby(["spotify_id", "country", "feature"]).size().max() == 1


def test_a_champion_without_a_declared_background_explains_nothing_and_says_how_to_get_one(world):
    settings, _, _ = world
    before = len(explanations(settings))
    old = register_version(settings, seed=9)  # as registered before backgrounds were declared
    Tracker(settings).promote(old)
    materialize(settings, batch_predictions)
    meta = materialize(settings, batch_explanations)
    assert meta["songs_explained"] == 0 and meta["model_version"] == old
    assert "no declared background" in meta["not_explained"] and "train a new version" in meta["not_explained"]
    assert len(explanations(settings)) == before
