"""Shadow scoring on real serving: a challenger set beside the champion under load changes no answer
and fails no request; it scores every answered song, exactly as it would alone, into ops.shadow_log,
from what the inference log committed; its scores are as durable as the answers (a dead replica's open
segment is recovered and scored, once; answers committed but not scored when the scorer died are scored
by the next one); a broken challenger holds back no answer; removing the alias stops it."""

from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.reports.audit import audit
from hit_platform.adapters.lake.tables import SHADOW_LOG
from hit_platform.adapters.tracking import Tracker
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.probabilities import answered
from hit_platform.serving import process
from hit_platform.serving.inference_log import JournalCommitter, Served, insert, to_arrow
from hit_platform.serving.inference_log.journal import OPEN, SegmentWriter, encode
from hit_platform.adapters.tracking import ModelVersionInfo
from hit_platform.serving.predictor import Predictor, features_of, load_predictor
from hit_platform.serving.shadow import ShadowScorer, shadow_rows
from hit_platform.settings import Settings
from hit_platform_tests.support.serving import (LinearHits, answers, promote_champion, register_version,
                                               serving_env, song, under_load)

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

    # kill -9 of the serving process with answers still in the journal: the next start scores them once its
    # first commit round has committed them, like the answers they are (its scorer holds the challenger
    # before the committer starts)
    os.kill(process.status(settings, config).pid, signal.SIGKILL)
    left = str(uuid.uuid4())
    writer = SegmentWriter(config.journal(settings), fsync=False)  # what a replica journaled before the kill
    writer.append(encode(Served(left, datetime.now(timezone.utc), "/predict/batch", 200, 1.0, v1, 5, X,
                                answered(load_predictor(Tracker(settings), v1).predict(X)), None)))
    writer.seal()
    assert process.start(settings, config) == endpoint
    assert wait_rows(settings, f"SELECT count(*) FROM {SHADOW_LOG} WHERE request_id = ? AND shadow_model_version = ?",
                     [left, v2], len(songs)) == len(songs)

    # removing the alias stops the shadow; the champion keeps answering
    Tracker(settings).clear_challenger()
    st, results = under_load(endpoint, lambda: process.update(settings, config))
    assert st.challenger_version is None and all(r[0] == 200 for r in results)
    assert httpx.get(endpoint + "/model", timeout=30).json()["challenger"] is None


def committed_and_scored(settings: Settings, journal, challenger: Predictor) -> ShadowScorer:
    """What the serving process does with a journal: commit it, and score what was committed."""
    scorer = ShadowScorer(Lake(settings))
    scorer.set_challenger(challenger)
    JournalCommitter(Lake(settings), journal, on_committed=scorer.take).close()  # commits, hands it over
    scorer.close()  # scores and writes what it was handed
    return scorer


def test_a_dead_replicas_answers_are_scored_as_they_are_recovered_and_never_twice(tmp_path):
    """The challenger scores what the committer committed, so a dead replica's recovered answers are
    shadowed too (marked recovered_from); a segment committed again doubles nothing; scores an earlier
    replica journaled itself (`shadow_of`) are committed as they were, not scored again."""
    settings, _ = serving_env(tmp_path)
    v1, v2 = promote_champion(settings, seed=1), register_version(settings, seed=1, nudge=0.05)
    challenger = load_predictor(Tracker(settings), v2)
    journal = tmp_path / "journal"
    X = features_of([song(tempo=90.0 + i) for i in range(3)])
    P = answered(load_predictor(Tracker(settings), v1).predict(X))
    now = datetime.now(timezone.utc)
    extras = [("a", None, None, None)] * 3
    fresh, old = str(uuid.uuid4()), str(uuid.uuid4())
    writer = SegmentWriter(journal, fsync=False)
    writer.append(encode(Served(fresh, now, "/predict/batch", 200, 1.0, v1, 5, X, P, extras)))
    writer.append(encode(Served(str(uuid.uuid4()), now, "/predict", 422, 0.3, None, 5, request_body="{}",
                                response_body="{}")))
    writer.append(encode(Served(old, now, "/predict", 200, 1.0, v1, 5, X[:1], P[:1], extras[:1])))
    writer.append(encode(Served(old, now, "/predict", 200, 9.0, "7", None, X[:1], P[:1] / 2, extras[:1],
                                shadow_of=v1)))  # scored by an earlier replica of version 7
    [segment] = list(journal.glob("*" + OPEN))
    copy = segment.read_bytes()
    os.close(writer.fd)  # the writer is gone (its lock with it), its segment left open: a replica killed
    scorer = committed_and_scored(settings, journal, challenger)
    with Lake(settings).connection(read_only=True) as con:
        rows = con.execute(f"SELECT request_id, item, champion_model_version, shadow_model_version, recovered_from, "
                           f"{PROBS} FROM {SHADOW_LOG} ORDER BY request_id = ?, item", [old]).fetchall()
    assert [r[:5] for r in rows] == [(fresh, i, v1, v2, segment.name) for i in range(3)] + [
        (old, 0, v1, "7", segment.name)]
    assert np.array_equal(np.array([r[5:] for r in rows[:3]]), answered(challenger.predict(X)))
    assert np.array_equal(np.array([r[5:] for r in rows[3:]]), P[:1] / 2)
    assert scorer.stats()["shadowed_rows"] == 3  # the fourth was the replica's own score, committed as it was
    # the same segment committed again (a crash between commit and delete): never doubled
    (journal / segment.name).write_bytes(copy)
    assert committed_and_scored(settings, journal, challenger).stats()["shadowed_rows"] == 0
    with Lake(settings).connection(read_only=True) as con:
        assert con.execute(f"SELECT count(*) FROM {SHADOW_LOG}").fetchall()[0][0] == 4


def test_only_answers_of_another_version_are_scored_and_a_broken_challenger_holds_back_no_answer(tmp_path):
    settings, _ = serving_env(tmp_path)
    v1, v2 = promote_champion(settings, seed=2), register_version(settings, seed=2, nudge=0.1)
    challenger = load_predictor(Tracker(settings), v2)
    X = features_of([song(energy=0.1 * i) for i in range(1, 5)])
    now = datetime.now(timezone.utc)
    by_v1 = Served(str(uuid.uuid4()), now, "/predict/batch", 200, 1.0, v1, 5, X, X @ np.ones((14, 72)), None)
    by_v2 = Served(str(uuid.uuid4()), now, "/predict", 200, 1.0, v2, 5, X[:1], X[:1] @ np.ones((14, 72)), None)
    refused = Served(str(uuid.uuid4()), now, "/predict", 422, 0.2, None, 5, request_body="{}", response_body="{}")
    scored = shadow_rows(to_arrow([refused, by_v2, by_v1]), challenger).to_pylist()
    assert [(r["request_id"], r["item"], r["champion_model_version"], r["shadow_model_version"]) for r in scored] == [
        (by_v1.request_id, i, v1, v2) for i in range(len(X))]
    assert np.array_equal(np.array([list(r["probabilities"].values()) for r in scored]),
                          answered(challenger.predict(X)))
    assert all(r["latency_ms"] >= 0 for r in scored)

    # a challenger that fails to score (a model fitted on 13 features): the answers still commit
    broken = Predictor(Pipeline([("model", LinearHits(0))]).fit(pd.DataFrame(np.ones((5, 13)))),
                       ModelVersionInfo("hit_model", "99", "run", {}, "source"), {})
    journal = tmp_path / "journal"
    writer = SegmentWriter(journal, fsync=False)
    writer.append(encode(by_v1))
    writer.seal()
    scorer = ShadowScorer(Lake(settings))
    scorer.set_challenger(broken)
    committer = JournalCommitter(Lake(settings), journal, on_committed=scorer.take)
    assert committer.commit() == len(X)
    assert scorer.score() == 0
    assert "version 99" in scorer.stats()["last_error"] and scorer.stats()["shadowed_rows"] == 0
    committer.close()
    scorer.close()


def test_answers_committed_but_never_scored_are_scored_by_the_next_scorer_once(tmp_path):
    """A scorer killed between the answers' commit and its own write leaves them unscored: the next scorer
    given the same challenger looks back, once, to a little before that challenger's newest score (not
    further: those were scored while their scorer lived, or answered while nothing shadowed), and never
    scores the challenger's own answers or anything twice."""
    settings, _ = serving_env(tmp_path)
    v1, v2 = promote_champion(settings, seed=3), register_version(settings, seed=3, nudge=0.05)
    challenger, lake = load_predictor(Tracker(settings), v2), Lake(settings)
    X = features_of([song(liveness=0.1 * i) for i in range(1, 5)])
    P = answered(load_predictor(Tracker(settings), v1).predict(X))
    now = datetime.now(timezone.utc)

    def answer(minutes_ago: int, version: str, n: int = len(X)) -> Served:
        return Served(str(uuid.uuid4()), now - timedelta(minutes=minutes_ago), "/predict/batch", 200, 1.0, version,
                      5, X[:n], P[:n], None)

    before, first, lost, own = answer(20, v1), answer(10, v1, 1), answer(1, v1), answer(1, v2)
    lake.write(lambda con: insert(con, to_arrow([before, first, lost, own])))
    lake.write(lambda con: insert(con, shadow_rows(to_arrow([first]), challenger), SHADOW_LOG))
    scorer = ShadowScorer(lake)
    scorer.set_challenger(challenger)
    assert scorer.score() == len(X)
    with lake.connection(read_only=True) as con:
        rows = con.execute(f"SELECT request_id, {PROBS} FROM {SHADOW_LOG} ORDER BY received_at, item").fetchall()
    assert [r[0] for r in rows] == [first.request_id] + [lost.request_id] * len(X)
    assert np.array_equal(np.array([r[1:] for r in rows[1:]]), answered(challenger.predict(X)))
    again = ShadowScorer(lake)
    again.set_challenger(challenger)
    assert again.score() == 0
    scorer.close()
    again.close()

    # a restart whose first commit lands before its first round: the look-back reads the committed answer
    # from the lake and the committer hands it over too; it is scored once
    late = answer(0, v1)
    restarted = ShadowScorer(lake)
    restarted.set_challenger(challenger)
    lake.write(lambda con: insert(con, to_arrow([late])))
    restarted.take(to_arrow([late]))
    assert restarted.score() == len(X)
    with lake.connection(read_only=True) as con:
        assert con.execute(f"SELECT count(*) FROM {SHADOW_LOG} WHERE request_id = ?",
                           [late.request_id]).fetchall()[0][0] == len(X)
    restarted.close()


def test_a_replica_that_commits_its_own_journal_scores_what_it_committed(tmp_path):
    """On a Ray cluster each replica commits its own journal (no serving process on its machine): it then
    holds the challenger and scores what it committed itself. In process, without Ray: the real replica."""
    import asyncio

    from hit_platform.serving.replica import ModelReplica

    settings, config = serving_env(tmp_path, log_committer="replica", log_flush_seconds=0.2,
                                   log_commit_seconds=0.2)
    v1, v2 = promote_champion(settings, seed=4), register_version(settings, seed=4, nudge=0.05)
    replica = ModelReplica(settings.dump_for_child(), config.model_dump(mode="json"))
    app = replica.__serve_build_asgi_app__()
    asyncio.run(replica.reconfigure({"model_version": v1, "challenger_version": v2}))
    songs = [song(valence=0.1 * i) for i in range(1, 4)]

    async def post():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
            return (await client.post("/predict/batch", json={"songs": songs})).json()["request_id"]
    request_id = asyncio.run(post())
    assert replica.card()["challenger"]["shadow"]["scored_by"].startswith("this replica")
    replica.__del__()  # what Serve calls on shutdown: seal, commit, score
    with Lake(settings).connection(read_only=True) as con:
        rows = con.execute(f"SELECT champion_model_version, shadow_model_version, {PROBS} FROM {SHADOW_LOG} "
                           "WHERE request_id = ? ORDER BY item", [request_id]).fetchall()
    assert [r[:2] for r in rows] == [(v1, v2)] * len(songs)
    assert np.array_equal(np.array([r[2:] for r in rows]),
                          answered(load_predictor(Tracker(settings), v2).predict(features_of(songs))))
