"""The shadow comparison on a real lake: pairs joined on (request_id, item), figures computed as defined,
and each of shadow_gate's rules failing on the challenger it is meant to stop."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.domain.countries import COUNTRIES
from hit_platform.serving.inference_log import Served, insert, to_arrow
from hit_platform.serving.inference_log.schema import to_shadow_arrow
from hit_platform.adapters.lake.tables import SHADOW_LOG
from hit_platform.domain.promotion import ShadowComparison, ShadowThresholds
from hit_platform.settings import Settings, ShadowSettings
from hit_platform.steps import shadow_comparison

N = 300


def log_pairs(lake: Lake, A: np.ndarray, B: np.ndarray, champion: str = "1", challenger: str = "2") -> None:
    """Each row of A answered by `champion` in its own request, and B's row scored by `challenger`."""
    now = datetime.now(timezone.utc)
    X = np.zeros((1, 14))
    answers, shadows = [], []
    for i in range(len(A)):
        rid, at = str(uuid.uuid4()), now + timedelta(milliseconds=i)
        extras = [(f"song{i:04d}", None, None, None)]
        answers.append(Served(rid, at, "/predict", 200, 1.0, champion, 5, X, A[i:i + 1], extras))
        shadows.append(Served(rid, at, "/predict", 200, 5.0, challenger, None, X, B[i:i + 1], extras,
                              shadow_of=champion))
    lake.write(lambda con: (insert(con, to_arrow(answers)), insert(con, to_shadow_arrow(shadows), SHADOW_LOG)))


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
    log_pairs(lake, A, probabilities(5))  # a challenger that knows nothing
    rows = [(f"song{i:04d}", c, bool(Y[i, j])) for i in range(N) for j, c in enumerate(COUNTRIES)]

    def labels(con):
        con.execute("CREATE SCHEMA IF NOT EXISTS core")
        con.execute("CREATE TABLE core.song_labels (spotify_id VARCHAR, country VARCHAR, label BOOLEAN)")
        con.executemany("INSERT INTO core.song_labels VALUES (?, ?, ?)", rows)

    lake.write(labels)
    cmp = compare(lake, "1", "2", min_labelled=100)
    assert cmp.labelled_songs == N and cmp.champion_roc_auc > cmp.challenger_roc_auc + 0.1
    passed, reasons = cmp.judge(thresholds(min_requests=N, max_mean_abs_diff=1, min_top5_overlap=0,
                                               max_prediction_psi=100, min_labelled_songs=100))
    assert not passed and "below the champion's" in reasons[0], reasons
    # with fewer labelled songs than asked for, labels do not judge yet
    assert cmp.judge(thresholds(min_requests=N, max_mean_abs_diff=1, min_top5_overlap=0,
                                    max_prediction_psi=100, min_labelled_songs=N + 1))[0]
