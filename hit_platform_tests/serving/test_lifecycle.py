"""The serving process's life: start over a stale pid file, no second process, champion swap under load
with zero failed requests, clean stop that flushes the inference log."""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.serving import process
from hit_platform.adapters.lake.tables import requests_in_log
from hit_platform_tests.support.serving import promote_champion, serving_env, song

pytestmark = pytest.mark.slow


def dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
            pid += 1
        except ProcessLookupError:
            return pid
        except PermissionError:
            pid += 1


@pytest.fixture(scope="module")
def life(tmp_path_factory):
    # a long flush interval: whatever reaches the lake before `stop` got there by the shutdown flush
    settings, config = serving_env(tmp_path_factory.mktemp("life"), log_flush_seconds=600, log_batch_rows=10**6)
    v1 = promote_champion(settings, seed=1)
    stale = process.pid_file(settings, config)
    process.write_pid_file(stale, {"pid": dead_pid(), "endpoint": config.endpoint, "state": "running"})
    assert process.status(settings, config).state == "stopped"
    endpoint = process.start(settings, config)
    try:
        yield settings, config, endpoint, v1
    finally:
        process.stop(settings, config)


def test_start_replaced_the_stale_pid_file_and_does_not_start_twice(life):
    settings, config, endpoint, v1 = life
    first = json.loads(process.pid_file(settings, config).read_text())
    assert first["state"] == "running" and first["model_version"] == v1
    assert process.start(settings, config) == endpoint
    again = json.loads(process.pid_file(settings, config).read_text())
    assert again["pid"] == first["pid"] and again["start_id"] == first["start_id"]
    st = process.status(settings, config)
    assert (st.running, st.state, st.endpoint, st.model_version, st.pid) == (True, "running", endpoint, v1,
                                                                             first["pid"])


def test_champion_swap_under_load_drops_no_request(life):
    settings, config, endpoint, v1 = life
    v2 = promote_champion(settings, seed=2)
    stop = threading.Event()
    results: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def hammer():
        with httpx.Client(base_url=endpoint, timeout=30) as client:
            while not stop.is_set():
                try:
                    r = client.post("/predict", json=song())
                    outcome = (r.status_code, r.json().get("model_version") if r.status_code == 200 else r.text)
                except httpx.HTTPError as exc:
                    outcome = (0, repr(exc))
                with lock:
                    results.append(outcome)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    st = process.update(settings, config)
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()
    assert st.model_version == v2
    failed = [r for r in results if r[0] != 200]
    assert failed == [], f"{len(failed)} of {len(results)} requests failed during the swap: {failed[:5]}"
    versions = [v for _, v in results]
    assert set(versions) == {v1, v2}
    last_v1 = max(i for i, v in enumerate(versions) if v == v1)
    assert all(v == v2 for v in versions[last_v1 + 1:])  # no flapping back once swapped
    assert process.update(settings, config).model_version == v2  # already serving it: a no-op


def test_stop_flushes_the_log_and_removes_the_pid_file(life):
    settings, config, endpoint, _ = life
    ids = []
    with httpx.Client(base_url=endpoint, timeout=30) as client:
        for i in range(5):
            ids.append(client.post("/predict", json=song(spotify_id=f"stop{i}")).json()["request_id"])
        ids.append(client.post("/predict/batch", json={"songs": [song()] * 3}).json()["request_id"])
    assert process.stop(settings, config) is True
    assert not process.pid_file(settings, config).exists()
    assert process.status(settings, config).state == "stopped"
    assert process.stop(settings, config) is False
    with pytest.raises(httpx.HTTPError):
        httpx.get(endpoint + "/healthz", timeout=2)
    logged = requests_in_log(Lake(settings), ids)
    assert logged == {**{i: 1 for i in ids[:5]}, ids[5]: 3}
    with pytest.raises(process.ServingError, match="no serving process runs"):
        process.update(settings, config)
