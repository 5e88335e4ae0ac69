"""The HTTP API of a real serving process (Ray Serve on 127.0.0.1): answers, refusals, docs, log, loopback.

One serving process for the whole module (starting Ray takes ~12-25 s). Every request's id is
recorded, so the last tests can check that the inference log holds exactly those requests.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pandas as pd
import pyarrow as pa
import pytest
from mlflow.models.utils import load_serving_example

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS, feature_range
from hit_platform.adapters.alerts import list_alerts
from hit_platform.adapters.lake.connection import Lake
from hit_platform.serving import process
from hit_platform.adapters.lake.tables import requests_in_log
from hit_platform.serving.loopback import is_loopback_address, listeners
from hit_platform.adapters.tracking import Tracker
from hit_platform_tests.support.mlflow_serve import mlflow_models_serve
from hit_platform_tests.support.serving import promote_champion, serving_env, song

pytestmark = pytest.mark.slow

ARROW = "application/vnd.apache.arrow.stream"

MAX_BATCH = 50
SENT: dict[str, int] = {}  # request_id -> log rows expected (songs, or 1 for a refusal)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    settings, config = serving_env(tmp_path_factory.mktemp("api"), max_batch=MAX_BATCH, log_buffer_rows=20)
    version = promote_champion(settings, seed=1)
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
    songs = len(body.get("predictions", [])) or 1
    SENT[body["request_id"]] = songs
    return body


def expected(settings, version: str, songs: list[dict]) -> np.ndarray:
    pipeline = Tracker(settings).load_version(version)
    X = pd.DataFrame([[float(s[c]) for c in FEATURE_COLUMNS] for s in songs], columns=list(FEATURE_COLUMNS))
    return pipeline.predict_proba(X)


def test_predict_answers_every_country_and_the_top_k(app):
    settings, _, client, version = app
    body = post(client, "/predict?top_k=3", 200, json=song(spotify_id="4uLU6hMCjMI75M1A2tKUQC", name="x"))
    assert set(body) == {"request_id", "model_version", "probabilities", "top_countries"}
    assert body["model_version"] == version
    assert list(body["probabilities"]) == list(COUNTRIES)
    P = expected(settings, version, [song()])[0]
    assert np.abs(np.array([body["probabilities"][c] for c in COUNTRIES]) - P).max() <= 5e-10
    top = body["top_countries"]
    assert [t["country"] for t in top] == [COUNTRIES[i] for i in np.argsort(-P, kind="stable")[:3]]
    assert len(post(client, "/predict", 200, json=song())["top_countries"]) == 5  # default k


def test_batch_answers_in_order_with_one_model_call_per_request(app):
    settings, _, client, version = app
    songs = [song(energy=e, is_explicit=bool(i % 2)) for i, e in enumerate((0.1, 0.5, 0.9))]
    body = post(client, "/predict/batch?top_k=72", 200, json={"songs": songs})
    assert body["model_version"] == version and len(body["predictions"]) == 3
    P = expected(settings, version, songs)
    for p, row in zip(body["predictions"], P):
        assert p["request_id"] == body["request_id"] and len(p["top_countries"]) == 72
        assert np.abs(np.array([p["probabilities"][c] for c in COUNTRIES]) - row).max() <= 5e-10
    full = post(client, "/predict/batch", 200, json={"songs": [song()] * MAX_BATCH})
    assert len(full["predictions"]) == MAX_BATCH


def test_batch_in_arrow_answers_what_json_answers(app):
    settings, _, client, version = app
    songs = [song(energy=e, spotify_id=f"arrow{i}") for i, e in enumerate((0.2, 0.4, 0.6, 0.8))]
    sink = pa.BufferOutputStream()
    table = pa.table({c: [s[c] for s in songs] for c in songs[0]})
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    arrow = {"content-type": ARROW, "accept": ARROW}
    r = client.post("/predict/batch?top_k=4", content=sink.getvalue().to_pybytes(), headers=arrow)
    assert r.status_code == 200 and r.headers["content-type"] == ARROW, r.text[:300]
    out = pa.ipc.open_stream(r.content).read_all()
    SENT[out.schema.metadata[b"request_id"].decode()] = out.num_rows
    assert out.schema.metadata[b"model_version"].decode() == version == r.headers["x-model-version"]
    as_json = post(client, "/predict/batch?top_k=4", 200, json={"songs": songs})
    for i, p in enumerate(as_json["predictions"]):
        assert [out.column(c)[i].as_py() for c in COUNTRIES] == [p["probabilities"][c] for c in COUNTRIES]
        assert out.column("top_countries")[i].as_py() == p["top_countries"]
    # Arrow in, JSON out (no Accept)
    body = post(client, "/predict/batch", 200, content=sink.getvalue().to_pybytes(), headers={"content-type": ARROW})
    assert len(body["predictions"]) == 4
    # a bad Arrow body: 422 naming the row and field, in JSON
    bad = pa.table({**{c: table.column(c) for c in table.column_names}, "valence": [0.5, 0.5, 7.0, 0.5]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, bad.schema) as w:
        w.write_table(bad)
    refused = post(client, "/predict/batch", 422, content=sink.getvalue().to_pybytes(), headers=arrow)
    assert ("body", "songs", 2, "valence") in _loc_names(refused)
    assert post(client, "/predict/batch", 400, content=b"not arrow", headers=arrow)["detail"][0]["type"] == \
        "arrow_invalid"


def _loc_names(body: dict) -> list:
    return [tuple(d["loc"]) for d in body["detail"]]


def test_an_integer_field_takes_a_whole_number_written_as_a_float(app):
    """JSON Schema's integer: 3.0 is one (what schemathesis and many JSON encoders send), 5.5 is not."""
    _, _, client, _ = app
    as_int = post(client, "/predict", 200, json=song(key=3, time_signature=0, duration_ms=200_000))
    as_float = post(client, "/predict", 200, json=song(key=3.0, time_signature=0.0, duration_ms=200_000.0))
    assert as_float["probabilities"] == as_int["probabilities"]
    refused = post(client, "/predict", 422, json=song(key=5.5))
    assert refused["detail"][0]["loc"] == ["body", "key"] and "multiple of 1" in refused["detail"][0]["msg"]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Song"]["properties"]
    assert schema["key"]["type"] == "integer" and "multipleOf" not in schema["key"]


def test_mlflow_models_serve_answers_the_digits_predict_answers(app, tmp_path):
    """The registered champion served by MLflow itself (`mlflow models serve`, a client no one here wrote):
    /invocations takes the dump's rows (other columns ignored) and answers each song's 72 probabilities as
    /predict prints them, to the last digit; its own input example is served; a bad value is a 400 naming it."""
    settings, _, client, _ = app
    songs = [song(spotify_id="invocations-1", name="one"),
             song(energy=0.95, key=11, mode=0, time_signature=3, duration_ms=95_000, is_explicit=True),
             song(danceability=0.05, key=-1, time_signature=0, tempo=0.0, duration_ms=3_600_000)]
    dump_rows = [{**s, "country": "AR", "snapshot_date": "2024-08-16", "daily_rank": 3, "popularity": 80}
                 for s in songs]
    with mlflow_models_serve(settings, tmp_path) as url:
        invocations = httpx.post(f"{url}/invocations", json={"dataframe_records": dump_rows}, timeout=60)
        example = httpx.post(f"{url}/invocations", content=load_serving_example("models:/hit_model@champion"),
                             headers={"content-type": "application/json"}, timeout=60)
        refused = httpx.post(f"{url}/invocations", json={"dataframe_records": [song(key=2.5)]}, timeout=60)
    assert invocations.status_code == 200, invocations.text[:500]
    answers = invocations.json()["predictions"]
    for s, answer in zip(songs, answers, strict=True):
        served = post(client, "/predict", 200, json=s)["probabilities"]
        assert list(answer) == list(served) == list(COUNTRIES)
        assert answer == served  # the JSON numbers, compared exactly
    assert example.status_code == 200 and len(example.json()["predictions"]) == 3, example.text[:500]
    assert refused.status_code == 400 and "column 'key': not a whole number" in refused.json()["message"]


@pytest.mark.parametrize("path, kwargs, status, loc", [
    ("/predict", {"json": song(energy="high")}, 422, ("body", "energy")),
    ("/predict", {"json": song(key=2.5)}, 422, ("body", "key")),
    ("/predict", {"json": song(key="3")}, 422, ("body", "key")),
    ("/predict", {"json": song(mode=True)}, 422, ("body", "mode")),
    ("/predict", {"json": song(is_explicit="yes")}, 422, ("body", "is_explicit")),
    ("/predict", {"json": {k: v for k, v in song().items() if k != "tempo"}}, 422, ("body", "tempo")),
    ("/predict", {"json": song(loudness=-61.0)}, 422, ("body", "loudness")),
    ("/predict", {"json": song(duration_ms=10**9)}, 422, ("body", "duration_ms")),
    ("/predict", {"json": song(popularity=80)}, 422, ("body", "popularity")),
    ("/predict", {"json": [song()]}, 422, ("body",)),
    ("/predict", {"content": b'{"energy": 0.5,', "headers": {"content-type": "application/json"}}, 400,
     ("body",)),
    ("/predict", {"content": b"energy=0.5", "headers": {"content-type": "application/x-www-form-urlencoded"}},
     415, ("header", "content-type")),
    ("/predict?top_k=0", {"json": song()}, 422, ("query", "top_k")),
    ("/predict?top_k=73", {"json": song()}, 422, ("query", "top_k")),
    ("/predict/batch", {"json": {"songs": []}}, 422, ("body", "songs")),
    ("/predict/batch", {"json": {"songs": [song(), song(valence=2.0)]}}, 422, ("body", "songs", 1, "valence")),
    ("/predict/batch", {"json": {"tracks": [song()]}}, 422, ("body", "tracks")),
    ("/predict/batch", {"json": {"songs": [song()] * (MAX_BATCH + 1)}}, 413, ("body", "songs")),
])
def test_bad_input_is_a_4xx_naming_the_field(app, path, kwargs, status, loc):
    _, _, client, _ = app
    body = post(client, path, status, **kwargs)
    assert loc in _loc_names(body), body
    assert all({"loc", "msg", "type"} <= set(d) for d in body["detail"])


def test_invalid_json_names_the_position(app):
    _, _, client, _ = app
    body = post(client, "/predict", 400, content=b'{"energy": 0.5,\n "key": }',
                headers={"content-type": "application/json"})
    assert body["detail"][0]["ctx"] == {"line": 2, "column": 9} and "line 2 column 9" in body["detail"][0]["msg"]


def test_the_lean_predict_path_answers_what_fastapi_answers(app):
    """/predict with no query or a plain top_k is answered by PredictFastPath; any other query goes through
    FastAPI's route (an unknown parameter is ignored there). Both give the same status, content type and
    bytes but for the request id, answers and refusals alike, and both log the request."""
    _, config, client, _ = app
    big = json.dumps(song()).encode() + b" " * config.max_body_bytes()
    cases = [({"json": song(energy=0.33, spotify_id="lean0000000000000000")}, 200),
             ({"json": song(energy="high")}, 422),
             ({"content": b'{"energy": 0.5,', "headers": {"content-type": "application/json"}}, 400),
             ({"content": b"energy=0.5", "headers": {"content-type": "text/plain"}}, 415),
             ({"content": big, "headers": {"content-type": "application/json"}}, 413)]
    for query in ("", "?top_k=7"):
        for kwargs, status in cases:
            lean = post(client, f"/predict{query}", status, **kwargs)
            routed = post(client, f"/predict{query}{'&' if query else '?'}via=fastapi", status, **kwargs)
            assert lean["request_id"] != routed["request_id"]
            assert {**lean, "request_id": ""} == {**routed, "request_id": ""}, (query, status)
            if status == 200:
                assert len(lean["top_countries"]) == (7 if query else 5)
    seen = [client.get("/healthz").json().get("fast_path_requests", 0) for _ in range(10)]
    assert max(seen) > 0, seen  # the lean path did answer (each replica counts its own)


def test_a_huge_body_is_refused_before_it_is_read(app):
    _, config, client, _ = app
    big = b'{"songs": [' + b" " * (config.max_body_bytes() + 10) + b"]}"
    body = post(client, "/predict/batch", 413, content=big, headers={"content-type": "application/json"})
    assert "HIT_SERVE_MAX_BATCH" in body["detail"][0]["msg"]


def test_healthz_and_model_carry_version_and_lineage(app):
    settings, _, client, version = app
    assert client.get("/healthz").json()["model_version"] == version
    card = client.get("/model").json()
    mv = Tracker(settings).champion_info()
    assert card["version"] == version and card["mlflow_run_id"] == mv.run_id
    assert card["lake_snapshot_id"] == "42" and card["dagster_run_id"] == "dagster-run-test"
    assert card["code_version"] == {"git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": "false"}
    assert card["trained_at"].startswith("20") and card["family"] == "linear-test"
    assert card["mlflow_tracking_uri"] == settings.tracking_uri and card["countries"] == list(COUNTRIES)


def test_openapi_documents_routes_and_field_ranges(app):
    _, _, client, _ = app
    doc = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/healthz", "/model"} <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    for c in FEATURE_COLUMNS:
        if c != "is_explicit":
            assert (schemas["Song"]["properties"][c]["minimum"],
                    schemas["Song"]["properties"][c]["maximum"]) == feature_range(c)
    assert set(schemas["Song"]["required"]) == set(FEATURE_COLUMNS)
    assert schemas["SongBatch"]["properties"]["songs"]["maxItems"] == MAX_BATCH
    assert doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Song"}
    assert client.get("/docs").status_code == 200


def test_a_journal_that_cannot_be_written_buffers_then_answers_503_then_recovers(app):
    """The journal folder replaced by a file (as a full or read-only disk would refuse): each replica keeps
    up to HIT_SERVE_LOG_BUFFER_ROWS rows in memory, then answers 503 with Retry-After, /healthz says why,
    ops.alerts records it; once the disk takes writes again the buffered answers are written, each once."""
    settings, config, client, _ = app
    journal = config.journal(settings)
    away = journal.with_name("journal.away")
    journal.rename(away)
    journal.write_text("not a folder")
    refused = None
    try:
        for _ in range(200):
            r = client.post("/predict", json=song())
            if r.status_code == 503:
                refused = r
                break
            assert r.status_code == 200, r.text[:300]
            SENT[r.json()["request_id"]] = 1
            time.sleep(0.02)
        assert refused is not None, "never refused while nothing could be logged"
        assert int(refused.headers["retry-after"]) >= 1
        detail = refused.json()["detail"][0]
        assert detail["type"] == "log_unavailable" and "HIT_SERVE_LOG_BUFFER_ROWS=20" in detail["msg"]
        health = [client.get("/healthz") for _ in range(20)]
        down = [h for h in health if h.status_code == 503]
        assert down and down[0].json()["status"] == "unavailable" and "refusing" in down[0].json()["reason"]
    finally:
        journal.unlink()
        away.rename(journal)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # both replicas write their buffers on their next round
        if all(client.get("/healthz").json()["inference_log"]["state"] == "ok" for _ in range(10)):
            break
        time.sleep(0.5)
    post(client, "/predict", 200, json=song())
    lake = Lake(settings)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any("answers 503" in a["what"] for a in list_alerts(lake)):
        time.sleep(0.5)
    assert any("answers 503" in a["what"] and a["kind"] == "inference_log" for a in list_alerts(lake))


def test_inference_log_holds_exactly_the_requests_sent(app):
    settings, config, client, _ = app
    post(client, "/predict", 200, json=song())
    post(client, "/predict/batch", 200, json={"songs": [song()] * 7})
    post(client, "/predict", 422, json=song(mode=2))
    lake = Lake(settings)
    deadline = time.monotonic() + 30 + 3 * config.log_flush_seconds
    logged: dict[str, int] = {}
    while time.monotonic() < deadline:
        logged = requests_in_log(lake)
        if set(SENT) <= set(logged):
            break
        time.sleep(0.5)
    time.sleep(config.log_flush_seconds + config.log_commit_seconds)  # nothing more may arrive
    assert requests_in_log(lake) == SENT
    with lake.connection(read_only=True) as con:
        statuses = dict(con.execute("SELECT status, count(DISTINCT request_id) FROM ops.inference_log "
                                    "GROUP BY ALL").fetchall())
        assert {200, 400, 413, 415, 422} <= set(statuses)
        n = con.execute("SELECT count(*) FROM ops.inference_log WHERE status = 200 AND "
                        "(energy IS NULL OR probabilities.US IS NULL OR model_version IS NULL)").fetchall()[0][0]
        assert n == 0
        named = con.execute("SELECT count(*) FROM ops.inference_log WHERE spotify_id = '4uLU6hMCjMI75M1A2tKUQC'"
                            ).fetchall()[0][0]
        assert named == 1


def test_the_ingress_names_each_request_and_retries_it_once_on_another_replica(app):
    """HAProxy sets x-hit-request-id (a client cannot choose it: a reused id would be taken for a retry),
    and retries a request whose replica died before answering, once, on another replica."""
    settings, config, client, _ = app
    a = post(client, "/predict", 200, json=song(), headers={"x-hit-request-id": "chosen-by-the-client"})
    b = post(client, "/predict", 200, json=song(), headers={"x-hit-request-id": "chosen-by-the-client"})
    assert a["request_id"] != b["request_id"] and "chosen-by-the-client" not in (a["request_id"], b["request_id"])
    assert len(a["request_id"]) == 36  # a UUID
    info = json.loads(process.pid_file(settings, config).read_text())
    haproxy = [p for p in psutil.Process(info["pid"]).children(recursive=True) if p.name() == "haproxy"]
    cfg = haproxy[0].cmdline()[haproxy[0].cmdline().index("-f") + 1]
    text = Path(cfg).read_text()
    assert "http-request set-header x-hit-request-id %[uuid]" in text
    assert "http-request set-header x-request-disconnect-disabled ?1" in text  # no watcher tasks per request
    assert "retry-on conn-failure empty-response junk-response" in text and "retries 1" in text
    assert 'http-request set-header x-hit-ingress "${HIT_INGRESS_SECRET}"' in text  # our ids, known by it
    # a replica takes the id HAProxy set only with the secret in HAProxy's environment: straight to a replica
    secret = haproxy[0].environ()["HIT_INGRESS_SECRET"]
    replica = re.search(r"^\s*server \S+ (127\.0\.0\.1:\d+) check", text, re.M).group(1)
    stamped = {"x-hit-request-id": "set-by-the-ingress", "x-hit-ingress": secret}
    for headers, taken in ((stamped, True), ({**stamped, "x-hit-ingress": "guessed"}, False),
                           ({"x-hit-request-id": "set-by-the-ingress"}, False)):
        rid = post(client, f"http://{replica}/predict", 200, json=song(), headers=headers)["request_id"]
        assert (rid == "set-by-the-ingress") == taken, (headers, rid)
    assert "option redispatch 1" in text


def test_everything_listens_on_loopback_only(app):
    settings, config, _, _ = app
    info = json.loads(process.pid_file(settings, config).read_text())
    found = listeners(info["pid"])
    assert any(port == config.port for _, port, _ in found), found
    outside = [x for x in found if not is_loopback_address(x[0])]
    assert outside == [], f"listening beyond loopback: {outside}"
