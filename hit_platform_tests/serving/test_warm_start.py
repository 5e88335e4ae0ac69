"""A serving process started warm, before there is a champion (the demo starts it so while the model trains):
Ray and Serve come up, no lake is touched and no model answers; the first champion promoted is deployed, at
once when `process.update` asks as `serving/deployment` does; stopped while warm, it leaves nothing behind."""

from __future__ import annotations

import time

import httpx
import pytest

from hit_platform.serving import process
from hit_platform_tests.support.serving import promote_champion, serving_env, song

pytestmark = pytest.mark.slow  # one embedded Ray per test, ~25 s each


def wait_for_state(settings, config, state: str, timeout: float = 150.0) -> process.ServingStatus:
    deadline, st = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        st = process.status(settings, config)
        if st.state == state:
            return st
        time.sleep(0.5)
    log = process.state_dir(settings, config) / process.LOG_FILE
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise AssertionError(f"serving never reached {state!r} in {timeout:.0f} s; last status {st}; log:\n{tail}")


def test_a_warm_process_touches_no_lake_then_serves_the_first_champion_promoted(tmp_path):
    settings, config = serving_env(tmp_path)
    process.start(settings, config, warm=True)
    try:
        warm = wait_for_state(settings, config, "warm")
        assert warm.running and warm.model_version is None and "no champion yet" in warm.detail
        assert not (settings.warehouse / "lake").exists()  # no committer yet: the build creates the lake
        assert httpx.post(f"{config.endpoint}/predict", json=song(), timeout=10).status_code != 200
        assert process.start(settings, config, warm=True) == config.endpoint  # no second process

        version = promote_champion(settings, seed=1)
        asked = time.monotonic()
        after = process.update(settings, config)  # what serving/deployment does with a running process
        assert (after.state, after.model_version) == ("running", version), after
        assert time.monotonic() - asked < 60  # deployed on the SIGHUP, not after a slow start
        answer = httpx.post(f"{config.endpoint}/predict", json=song(), timeout=30)
        assert answer.status_code == 200 and str(answer.json()["model_version"]) == version, answer.text
    finally:
        process.stop(settings, config)
    assert not process.pid_file(settings, config).exists()


def test_a_warm_process_stopped_before_any_champion_leaves_nothing_running(tmp_path):
    settings, config = serving_env(tmp_path)
    process.start(settings, config, warm=True)
    try:
        wait_for_state(settings, config, "warm")
        info = process.read_pid_file(process.pid_file(settings, config))
    finally:
        stopped = process.stop(settings, config)
    assert stopped and process.status(settings, config).state == "stopped"
    assert process.leftovers(info) == []  # no Ray worker, replica or HAProxy of its session
    assert not (settings.warehouse / "lake").exists()
