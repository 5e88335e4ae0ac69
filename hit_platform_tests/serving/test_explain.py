"""POST /explain on a real serving process (Ray Serve on 127.0.0.1): exact attributions that add up to what
/predict answers, /predict's refusals, the inference log, the audit, and a version with no background.

One serving process for the module; its champion is a small real trees pipeline with its declared
background (`support.serving.register_explained_version`). The last test swaps in a version registered
without a background.
"""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest
from scipy.special import expit

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import requests_in_log
from hit_platform.adapters.model_explanations import NoDeclaredBackground, load_background
from hit_platform.adapters.reports.audit import audit
from hit_platform.adapters.tracking import Tracker
from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.serving import process
from hit_platform_tests.support.serving import promote_champion, register_version, serving_env, song

pytestmark = pytest.mark.slow

SENT: dict[str, int] = {}  # request_id -> log rows expected
ANSWERS: dict[str, dict] = {}  # request_id -> the /explain answer
SONGS = [song(), song(danceability=0.3, energy=0.9, tempo=95.0, speechiness=0.3, spotify_id="x1"),
         song(valence=0.9, loudness=-12.0, tempo=128.0, is_explicit=True, key=-1, time_signature=3.0)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    settings, config = serving_env(tmp_path_factory.mktemp("explain"))
    version = promote_champion(settings, seed=1, explained=True)
    endpoint = process.start(settings, config)
    client = httpx.Client(base_url=endpoint, timeout=60)
    try:
        yield settings, config, client, version
    finally:
        client.close()
        process.stop(settings, config)


def post(client: httpx.Client, path: str, expect: int, **kwargs) -> dict:
    r = client.post(path, **kwargs)
    assert r.status_code == expect, r.text[:500]
    body = r.json()
    SENT[body["request_id"]] = 1
    if path == "/explain" and expect == 200:
        ANSWERS[body["request_id"]] = body
    return body


def logged(settings, config, ids) -> None:
    """Wait until the log holds every id of `ids` (committed from the journal)."""
    lake, deadline, found = Lake(settings), time.monotonic() + 30 + 3 * config.log_flush_seconds, {}
    while time.monotonic() < deadline:
        found = requests_in_log(lake, list(ids))
        if set(ids) <= set(found):
            return
        time.sleep(0.5)
    raise AssertionError(f"not in the log after the deadline: {sorted(set(ids) - set(found))}; found {found}")


def test_attributions_add_up_to_the_probability_predict_answers(served):
    settings, _, client, version = served
    for s in SONGS:
        e, p = post(client, "/explain", 200, json=s), post(client, "/predict", 200, json=s)
        assert e["model_version"] == p["model_version"] == version and e["family"] == "trees"
        assert list(e["countries"]) == list(COUNTRIES)
        for c, x in e["countries"].items():
            assert list(x["attributions"]) == list(FEATURE_COLUMNS) and x["scale"] == "log-odds"
            total = x["base"] + sum(x["attributions"].values())
            assert abs(total - x["value"]) <= 1e-9
            assert abs(expit(total) - p["probabilities"][c]) <= 1e-9, c  # /predict prints 9 decimals
            assert x["probability"] == p["probabilities"][c]
        assert any(abs(v) > 0.01 for x in e["countries"].values() for v in x["attributions"].values())
    declared = load_background(Tracker(settings), version)
    assert e["background"] | {"artifact": None} == {"seed": 1, "size": 64, "drawn_from": 800, "artifact": None}
    assert declared.size == 64 and declared.seed == 1


def test_countries_are_chosen_by_query_in_country_order(served):
    _, _, client, _ = served
    e = post(client, "/explain", 200, params={"country": ["CZ", "BR", "CZ"]}, json=song())
    assert list(e["countries"]) == ["BR", "CZ"]
    r = post(client, "/explain", 422, params={"country": ["BR", "XX", "br"]}, json=song())
    assert [d["loc"] for d in r["detail"]] == [["query", "country", 1], ["query", "country", 2]]
    assert "unknown country 'XX'" in r["detail"][0]["msg"] and r["detail"][0]["type"] == "unknown_country"


@pytest.mark.parametrize("content, ctype", [
    (b'{"energy": 0.5,\n "key": }', "application/json"),              # malformed JSON
    (json.dumps(song(energy="high")).encode(), "application/json"),    # wrong type
    (json.dumps(song(tempo=None)).encode(), "application/json"),       # a null feature
    (b"[]", "application/json"),                                        # an empty list
    (json.dumps([song()]).encode(), "application/json"),               # a list of songs: /predict/batch's job
    (json.dumps({k: v for k, v in song().items() if k != "mode"}).encode(), "application/json"),  # missing
    (json.dumps(song(colour="red")).encode(), "application/json"),     # unknown field
    (json.dumps(song()).encode(), "text/plain"),                        # not JSON
])
def test_a_bad_body_is_refused_exactly_as_predict_refuses_it(served, content, ctype):
    _, _, client, _ = served
    answers = {}
    for path in ("/predict", "/explain"):
        r = client.post(path, content=content, headers={"content-type": ctype})
        assert 400 <= r.status_code < 500, r.text[:300]
        body = r.json()
        SENT[body.pop("request_id")] = 1
        answers[path] = (r.status_code, body)
    assert answers["/explain"] == answers["/predict"]


def test_explained_and_refused_requests_are_logged_whole(served):
    settings, config, client, version = served
    post(client, "/explain", 422, params={"country": "ZZ"}, json=song())
    logged(settings, config, SENT)
    time.sleep(config.log_flush_seconds + config.log_commit_seconds)  # nothing more may arrive
    assert requests_in_log(Lake(settings), list(SENT)) == SENT  # one row each: one song, or one refusal
    with Lake(settings).connection(read_only=True) as con:
        rows = con.execute(f"""SELECT request_id, status, model_version, {', '.join(FEATURE_COLUMNS)}, probabilities
                               FROM ops.inference_log WHERE endpoint = '/explain'""").fetchall()
    explained = {r[0]: r for r in rows if r[1] == 200}
    assert set(explained) == set(ANSWERS)
    for rid, answer in ANSWERS.items():
        row = explained[rid]
        assert row[2] == version
        assert all(row[3 + len(FEATURE_COLUMNS)][c] == x["probability"] for c, x in answer["countries"].items())
    refused = [r for r in rows if r[1] != 200]
    assert refused and all(r[2] is None and r[3:] == (None,) * (len(FEATURE_COLUMNS) + 1) for r in refused)


def test_the_audit_recomputes_an_explained_request(served):
    settings, config, client, version = served
    e = post(client, "/explain", 200, json=SONGS[1])
    logged(settings, config, [e["request_id"]])
    report = audit(settings, e["request_id"])
    assert report["endpoint"] == "/explain" and report["model_version"] == version
    lines = report["explanation"]
    assert lines[0].startswith(f"recomputed now, not logged: exact interventional Shapley values of model "
                               f"version {version} (trees)")
    assert "within 1e-9, the logged answer" in lines[1]
    P = np.array([e["countries"][c]["probability"] for c in COUNTRIES])
    top = COUNTRIES[int(np.argmax(P))]
    phi = e["countries"][top]["attributions"]
    feature = max(phi, key=lambda f: abs(phi[f]))
    assert lines[2].startswith(f"{top} p {P.max():.3f}") and f"{feature} {phi[feature]:+.3f}" in lines[2]


def test_a_version_without_a_background_is_not_explained_and_says_why(served):
    settings, config, client, _ = served
    old = register_version(settings, seed=2)  # as versions were registered before backgrounds were declared
    Tracker(settings).promote(old)
    process.update(settings, config)
    r = post(client, "/explain", 409, json=song())
    assert r["detail"][0]["type"] == "no_declared_background"
    msg = r["detail"][0]["msg"]
    assert f"version {old} of 'hit_model'" in msg and "has no declared background" in msg and "train a new version" in msg
    assert post(client, "/predict", 200, json=song())["model_version"] == old  # served all the same
    assert client.get("/model").json()["explain"] == {"available": False, "reason": msg}
    with pytest.raises(NoDeclaredBackground, match="has no declared background"):
        load_background(Tracker(settings), old)
    p = post(client, "/predict", 200, json=song())
    logged(settings, config, [p["request_id"]])
    assert audit(settings, p["request_id"])["explanation"] == [f"none: {msg}"]
