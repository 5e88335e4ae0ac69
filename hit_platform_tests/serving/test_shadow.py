"""Shadow scoring on real serving: a challenger loaded beside the champion under load changes no answer
and fails no request; it scores every answered song, exactly as it would alone, into ops.shadow_log;
its scores are as durable as the answers (a dead replica's open segment is recovered); a full queue
skips songs rather than slow answers; removing the alias stops it."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timezone

import httpx
import numpy as np
import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.reports.audit import audit
from hit_platform.adapters.lake.tables import SHADOW_LOG
from hit_platform.adapters.tracking import Tracker
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.probabilities import answered
from hit_platform.serving import process
from hit_platform.serving.inference_log import InferenceLogger, JournalCommitter, Served
from hit_platform.serving.inference_log.journal import OPEN, SegmentWriter, encode
from hit_platform.serving.predictor import features_of, load_predictor
from hit_platform.serving.shadow import ShadowScorer
from hit_platform.settings import Settings
from hit_platform_tests.support.serving import (answers, promote_champion, register_version, serving_env, song,
                                               under_load)

pytestmark = pytest.mark.slow

PROBS = ", ".join(f'probabilities."{c}"' for c in COUNTRIES)


@pytest.fixture(scope="module")
def shadowed(tmp_path_factory):
    settings, config = serving_env(tmp_path_factory.mktemp("shadow"), log_commit_seconds=1.0)
    v1 = promote_champion(settings, seed=1)
    endpoint = process.start(settings, config)
    try:
        yield settings, config, endpoint, v1
    finally:
        process.stop(settings, config)


def wait_rows(settings: Settings, sql: str, params: list, want: int, timeout: float = 60) -> int:
    deadline, got = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        try:
            with Lake(settings).connection(read_only=True) as con:
                got = con.execute(sql, params).fetchall()[0][0]
        except Exception:  # the table is not there yet
            got = 0
        if got >= want:
            return got
        time.sleep(0.5)
    return got


def test_a_challenger_changes_no_answer_fails_no_request_and_scores_every_song_as_it_would_alone(shadowed):
    settings, config, endpoint, v1 = shadowed
    songs = [song(danceability=0.05 * i, tempo=80.0 + 3 * i, spotify_id=f"shadow{i:03d}") for i in range(20)]
    alone = answers(endpoint, songs)
    v2 = register_version(settings, seed=1, nudge=0.05)
    Tracker(settings).set_challenger(v2)
    st, results = under_load(endpoint, lambda: process.update(settings, config))
    assert (st.model_version, st.challenger_version) == (v1, v2)
    failed = [r for r in results if r[0] != 200]
    assert failed == [] and {v for _, v in results} == {v1}, failed[:5]
    card = httpx.get(endpoint + "/model", timeout=30).json()
    assert card["version"] == v1 and card["challenger"]["version"] == v2
    assert httpx.get(endpoint + "/healthz", timeout=30).json()["challenger_version"] == v2

    # the champion's bytes are the same with a shadow as without
    assert answers(endpoint, songs) == alone
    ids = []
    with httpx.Client(base_url=endpoint, timeout=30) as client:
        for s in songs:
            ids.append(client.post("/predict", json=s).json()["request_id"])
        batch = client.post("/predict/batch", json={"songs": songs}).json()
    ids.append(batch["request_id"])
    n = wait_rows(settings, f"SELECT count(*) FROM {SHADOW_LOG} WHERE list_contains(?, request_id)", [ids],
                  2 * len(songs))
    assert n == 2 * len(songs)
    with Lake(settings).connection(read_only=True) as con:
        rows = con.execute(f"""SELECT s.request_id, s.item, s.champion_model_version, s.shadow_model_version,
                                      s.spotify_id, l.model_version, {PROBS.replace('probabilities', 's.probabilities')}
                               FROM {SHADOW_LOG} s JOIN ops.inference_log l USING (request_id, item)
                               WHERE list_contains(?, s.request_id) ORDER BY s.received_at, s.item""",
                           [ids]).fetchall()
    assert len(rows) == 2 * len(songs)
    assert {(r[2], r[3], r[5]) for r in rows} == {(v1, v2, v1)}
    X = features_of(songs)
    expected = answered(load_predictor(Tracker(settings), v2).predict(X))  # the challenger alone
    got = np.array([r[6:] for r in rows], dtype=np.float64)
    assert np.array_equal(got[:len(songs)], expected) and np.array_equal(got[len(songs):], expected)
    assert [r[4] for r in rows[:len(songs)]] == [s["spotify_id"] for s in songs]
    report = audit(settings, ids[-1])  # the batch: answered by v1, shadowed by v2
    assert report["model_version"] == v1 and f"challenger version {v2} scored its {len(songs)}" in report["shadowed_by"]

    # removing the alias stops the shadow; the champion keeps answering
    Tracker(settings).clear_challenger()
    st, results = under_load(endpoint, lambda: process.update(settings, config))
    assert st.challenger_version is None and all(r[0] == 200 for r in results)
    assert httpx.get(endpoint + "/model", timeout=30).json()["challenger"] is None


def test_shadow_scores_in_a_dead_replicas_open_segment_are_recovered_into_the_shadow_log(tmp_path):
    settings = Settings(warehouse=tmp_path / "warehouse")
    journal = tmp_path / "journal"
    X = np.random.default_rng(0).random((3, 14))
    P = np.random.default_rng(1).random((3, len(COUNTRIES)))
    now = datetime.now(timezone.utc)
    rid = str(uuid.uuid4())
    answer = Served(rid, now, "/predict/batch", 200, 1.0, "1", 5, X, P, [("a", None, None, None)] * 3)
    shadow = Served(rid, now, "/predict/batch", 200, 9.0, "2", None, X, P[::-1].copy(), [("a", None, None, None)] * 3,
                    shadow_of="1")
    writer = SegmentWriter(journal, fsync=False)
    writer.append(encode(answer))
    writer.append(encode(shadow))
    [segment] = list(journal.glob("*" + OPEN))
    os.close(writer.fd)  # the writer is gone (its lock with it), its segment left open: a replica killed
    committer = JournalCommitter(Lake(settings), journal)
    committer.close()
    with Lake(settings).connection(read_only=True) as con:
        log = con.execute("SELECT count(*), any_value(recovered_from) FROM ops.inference_log").fetchall()[0]
        rows = con.execute(f"SELECT item, champion_model_version, shadow_model_version, recovered_from, {PROBS} "
                           f"FROM {SHADOW_LOG} ORDER BY item").fetchall()
    assert log == (3, segment.name)
    assert [r[:4] for r in rows] == [(i, "1", "2", segment.name) for i in range(3)]
    assert np.array_equal(np.array([r[4:] for r in rows]), P[::-1])
    # committed again (a crash between commit and delete): never doubled
    JournalCommitter(Lake(settings), journal).close()
    with Lake(settings).connection(read_only=True) as con:
        assert con.execute(f"SELECT count(*) FROM {SHADOW_LOG}").fetchall()[0][0] == 3


def test_a_full_shadow_queue_skips_songs_and_never_blocks(tmp_path):
    settings, _ = serving_env(tmp_path)
    version = promote_champion(settings, seed=3)
    challenger = load_predictor(Tracker(settings), version)
    logger = InferenceLogger(tmp_path / "journal", fsync=False)
    scorer = ShadowScorer(logger, queue_rows=5, gather_seconds=60)  # nothing is scored while we submit
    X = features_of([song()] * 3)
    t = time.perf_counter()
    for _ in range(4):
        scorer.submit(challenger, str(uuid.uuid4()), datetime.now(timezone.utc), "/predict/batch", "1", X, None)
    assert time.perf_counter() - t < 0.5
    assert scorer.stats()["queued_rows"] == 3 and scorer.skipped_rows == 9
    assert scorer.score_queued() == 3 and scorer.stats()["queued_rows"] == 0
    logger.close()
