"""The shadow comparison on a real lake: pairs joined on (request_id, item), figures computed as defined,
and each of shadow_gate's rules failing on the challenger it is meant to stop."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.serving.inference_log import Served, insert, to_arrow
from hit_platform.serving.inference_log.schema import to_shadow_arrow
from hit_platform.adapters.lake.tables import SHADOW_LOG
from hit_platform.domain.promotion import ShadowComparison, ShadowThresholds, shadow_run_key
from hit_platform.settings import Settings, ShadowSettings
from hit_platform.steps import shadow_comparison

N = 300


def songs(n: int, seed: int = 0) -> np.ndarray:
    """(n, 14) features of n different songs."""
    return np.random.default_rng(100 + seed).random((n, len(FEATURE_COLUMNS)))


def log_pairs(lake: Lake, A: np.ndarray, B: np.ndarray, champion: str = "1", challenger: str = "2", *,
              X: np.ndarray | None = None, ids: list | None = None, batch: bool = False) -> None:
    """Each row of A answered by `champion` (in its own request, or all in one /predict/batch with `batch`) for
    the song of X's row (default: a different song each), and B's row scored by `challenger`."""
    now = datetime.now(timezone.utc)
    X = songs(len(A)) if X is None else X
    extras = [(f"song{i:04d}" if ids is None else ids[i], None, None, None) for i in range(len(A))]
    if batch:
        rid = str(uuid.uuid4())
        answers = [Served(rid, now, "/predict/batch", 200, 1.0, champion, 5, X, A, extras)]
        shadows = [Served(rid, now, "/predict/batch", 200, 5.0, challenger, None, X, B, extras, shadow_of=champion)]
    else:
        answers, shadows = [], []
        for i in range(len(A)):
            rid, at = str(uuid.uuid4()), now + timedelta(milliseconds=i)
            answers.append(Served(rid, at, "/predict", 200, 1.0, champion, 5, X[i:i + 1], A[i:i + 1], extras[i:i + 1]))
            shadows.append(Served(rid, at, "/predict", 200, 5.0, challenger, None, X[i:i + 1], B[i:i + 1],
                                  extras[i:i + 1], shadow_of=champion))
    lake.write(lambda con: (insert(con, to_arrow(answers)), insert(con, to_shadow_arrow(shadows), SHADOW_LOG)))


def lake_songs(lake: Lake, X: np.ndarray, Y: np.ndarray) -> None:
    """The lake's own songs song0000.. with features X and per-country labels Y (none in the train split)."""
    ids = [f"song{i:04d}" for i in range(len(X))]
    labels = pd.DataFrame({"spotify_id": np.repeat(ids, len(COUNTRIES)), "country": np.tile(COUNTRIES, len(X)),
                           "label": Y.reshape(-1)})
    features = pd.DataFrame(X, columns=list(FEATURE_COLUMNS)).assign(spotify_id=ids)

    def write(con):
        con.register("labels_df", labels)
        con.register("features_df", features)
        con.execute("CREATE TABLE core.song_labels AS SELECT * FROM labels_df")
        con.execute(f"CREATE TABLE ml.features AS SELECT spotify_id, {', '.join(FEATURE_COLUMNS)} FROM features_df")

    lake.write(write)


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(Settings(warehouse=tmp_path / "warehouse"))
    lake.connect().close()  # a lake with its layers and nothing in them
    return lake


def compare(lake: Lake, champion: str, challenger: str, **kw) -> ShadowComparison:
    with lake.connection(read_only=True) as con:
        return shadow_comparison.compare(con, champion, challenger, **kw)


def shadowed_songs(lake: Lake, champion: str, challenger: str) -> int:
    with lake.connection(read_only=True) as con:
        return shadow_comparison.shadowed_songs(con, champion, challenger)


def thresholds(**kw) -> ShadowThresholds:
    """The settings' `shadow` section (defaults but for `kw`), as the plain values the rules take."""
    return ShadowThresholds.of(ShadowSettings(**kw))


def probabilities(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).beta(1, 8, size=(N, len(COUNTRIES)))


def test_a_close_challenger_passes_with_its_figures_as_defined(lake):
    A = probabilities(0)
    B = np.clip(A + np.random.default_rng(1).normal(0, 0.005, A.shape), 0, 1)
    log_pairs(lake, A, B)
    assert shadowed_songs(lake, "1", "2") == N and shadowed_songs(lake, "1", "3") == 0
    cmp = compare(lake, "1", "2")
    assert (cmp.songs, cmp.requests, cmp.labelled_songs) == (N, N, 0)  # no labels in this lake
    assert cmp.mean_abs_diff["AR"] == pytest.approx(np.abs(B - A).mean(axis=0)[COUNTRIES.index("AR")])
    top_a = np.argsort(-A, axis=1)[:, :5]
    top_b = np.argsort(-B, axis=1)[:, :5]
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top_a, top_b)])
    assert cmp.top5_overlap == pytest.approx(overlap)
    passed, reasons = cmp.judge(thresholds(min_requests=N))
    assert passed and reasons == [], reasons
    assert "promote" in cmp.summary(thresholds(min_requests=N))


def test_each_rule_of_the_gate_fails_on_the_challenger_it_is_meant_to_stop(lake):
    A = probabilities(0)
    log_pairs(lake, A, A[::-1].copy(), challenger="2")  # another song's answers: unrelated to the champion
    shifted = A.copy()
    shifted[:, COUNTRIES.index("JP")] = np.clip(shifted[:, COUNTRIES.index("JP")] + 0.5, 0, 1)
    log_pairs(lake, A, shifted, challenger="3")  # one country moved by half
    t = thresholds(min_requests=N)
    passed, reasons = compare(lake, "1", "2").judge(t)
    assert not passed and any("top-5 overlap" in r for r in reasons), reasons
    passed, reasons = compare(lake, "1", "3").judge(t)
    assert not passed
    assert any("mean |difference| in JP" in r for r in reasons) and any("PSI in JP" in r for r in reasons), reasons
    passed, reasons = compare(lake, "1", "2").judge(thresholds(min_requests=N + 1))
    assert not passed and "waiting for live traffic" in reasons[0]


def test_no_shadow_log_is_no_pair(lake):
    cmp = compare(lake, "1", "2")
    assert cmp.songs == 0 and shadowed_songs(lake, "1", "2") == 0
    with lake.connection(read_only=True) as con:
        assert shadow_comparison.latest_pair(con) is None and shadow_comparison.newest(con) is None
    assert not cmp.judge(thresholds())[0]


def test_a_challenger_worse_on_the_labelled_shadowed_songs_fails(lake):
    A = probabilities(0)
    Y = np.random.default_rng(2).random(A.shape) < A  # labels the champion's probabilities describe
    X = songs(N)
    log_pairs(lake, A, probabilities(5), X=X, ids=[None] * N)  # a challenger that knows nothing; no ids sent
    lake_songs(lake, X, Y)
    cmp = compare(lake, "1", "2", min_labelled=100)
    assert cmp.labelled_songs == N and cmp.champion_roc_auc > cmp.challenger_roc_auc + 0.1
    passed, reasons = cmp.judge(thresholds(min_requests=N, max_mean_abs_diff=1, min_top5_overlap=0,
                                               max_prediction_psi=100, min_labelled_songs=100))
    assert not passed and "below the champion's" in reasons[0], reasons
    # with fewer labelled songs than asked for, labels do not judge yet
    assert cmp.judge(thresholds(min_requests=N, max_mean_abs_diff=1, min_top5_overlap=0,
                                    max_prediction_psi=100, min_labelled_songs=N + 1))[0]


@pytest.mark.slow
def test_one_song_sent_500_times_in_one_batch_is_one_shadowed_song(lake):
    """A client cannot fill HIT_SHADOW_MIN_REQUESTS, nor weigh the agreement, with copies of one song."""
    A, B = probabilities(0)[:1], probabilities(5)[:1]  # on this one song the two models disagree
    log_pairs(lake, np.repeat(A, 500, axis=0), np.repeat(B, 500, axis=0), X=np.repeat(songs(1, seed=3), 500, axis=0),
              batch=True)
    assert shadowed_songs(lake, "1", "2") == 1
    cmp = compare(lake, "1", "2")
    assert (cmp.songs, cmp.answers, cmp.requests) == (1, 500, 1)
    passed, reasons = cmp.judge(thresholds(min_requests=500))
    assert not passed and "1 shadowed songs" in reasons[0] and "waiting for live traffic" in reasons[0], reasons
    # 300 other songs on which they agree: the repeated song weighs 1 in 301, not 500 in 800
    same = probabilities(1)
    log_pairs(lake, same, same, batch=True)
    assert shadowed_songs(lake, "1", "2") == N + 1
    cmp = compare(lake, "1", "2")
    assert (cmp.songs, cmp.answers) == (N + 1, N + 500)
    j = COUNTRIES.index("AR")
    assert cmp.mean_abs_diff["AR"] == pytest.approx(abs(B[0, j] - A[0, j]) / (N + 1))


@pytest.mark.slow
def test_labels_join_on_the_lake_s_own_song_features_not_on_a_client_s_spotify_id(lake):
    """The AUC rule scores the lake's songs: a client that sends a labelled song's spotify_id with features of
    its choosing judges nothing, and a song sent without an id is labelled by its features."""
    A = probabilities(0)
    Y = np.random.default_rng(2).random(A.shape) < A
    X = songs(N)
    lake_songs(lake, X, Y)
    chosen = songs(N, seed=9)  # the client's own features, under the lake's ids
    log_pairs(lake, A, probabilities(5), X=chosen, ids=[f"song{i:04d}" for i in range(N)])
    cmp = compare(lake, "1", "2", min_labelled=2)
    assert cmp.songs == N and cmp.labelled_songs == 0 and cmp.champion_roc_auc is None
    # the lake's songs, sent without ids (or with ids of other songs): labelled by what they are
    log_pairs(lake, A, probabilities(5), "1", "3", X=X, ids=[f"song{(i + 1) % N:04d}" for i in range(N)])
    cmp = compare(lake, "1", "3", min_labelled=2)
    assert cmp.labelled_songs == N and cmp.champion_roc_auc > cmp.challenger_roc_auc + 0.1


def test_a_judgement_is_asked_again_as_distinct_songs_grow():
    """The sensor's run key: one judgement per pair per step of growth of the distinct shadowed songs, so a
    failed one is retried when new songs arrive, and never twice on the same songs."""
    keys = [shadow_run_key("1", "2", n, 500) for n in (500, 600, 624, 625, 781, 782, 5000)]
    assert keys[:3] == ["shadow:1:2:0"] * 3 and keys[3] == keys[4] == "shadow:1:2:1"
    assert keys[5] == "shadow:1:2:2" and keys[6] != keys[5]
    assert shadow_run_key("2", "3", 500, 500) == "shadow:2:3:0"
