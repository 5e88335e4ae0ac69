"""Process management without Ray: refusals that must be fast and clear, the pid file, the child's settings."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from hit_platform.serving import ServeConfig, process
from hit_platform.serving.ingress import haproxy_wrapper
from hit_platform.serving.ray_env import ray_env
from hit_platform.settings import Settings
from hit_platform.adapters.tracking import ChampionUnavailable
from hit_platform_tests.support.serving import promote_champion


def test_start_without_a_champion_is_a_clear_error(settings: Settings):
    with pytest.raises(ChampionUnavailable, match="no 'champion' alias"):
        process.start(settings, ServeConfig(port=1))
    assert not process.pid_file(settings).exists()


def test_start_on_a_busy_port_names_it(settings: Settings):
    promote_champion(settings, seed=1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(process.ServingError, match=f"127.0.0.1:{port} is already in use"):
            process.start(settings, ServeConfig(port=port))


def test_stale_or_garbled_pid_files_mean_stopped(settings: Settings):
    path = process.pid_file(settings)
    process.write_pid_file(path, {"pid": os.getpid(), "endpoint": "http://127.0.0.1:1"})  # alive, not serving
    st = process.status(settings)
    assert (st.running, st.state) == (False, "stopped") and "stale pid file" in st.detail
    path.write_text("{not json")
    assert process.status(settings).running is False
    assert process.stop(settings) is False and not path.exists()
    with pytest.raises(process.ServingError, match="no serving process runs"):
        process.update(settings)


def test_the_child_rebuilds_the_same_settings(settings: Settings):
    config = ServeConfig(port=8123, max_batch=77, log_flush_seconds=0.5, fast_proxy=False)
    env = {k: v for k, v in process.child_env(settings, config).items()}
    code = ("from hit_platform.settings import Settings; from hit_platform.serving import ServeConfig; "
            "import json; print(json.dumps([Settings().model_dump(mode='json'), ServeConfig().model_dump(mode='json')]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    s, c = json.loads(out)
    assert s == settings.model_copy(update={"serving": config}).model_dump(mode="json")
    assert c == config.model_dump(mode="json")


def test_ray_env_keeps_everything_on_loopback_unless_joining_a_cluster(tmp_path, monkeypatch):
    for k in list(os.environ):
        if k.startswith("RAY_"):
            monkeypatch.delenv(k)
    env = ray_env(host="127.0.0.1", fast_proxy=True, state_dir=tmp_path, joining_cluster=False)
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0" and env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1" and os.access(env["RAY_SERVE_HAPROXY_BINARY_PATH"], os.X_OK)
    assert env["RAY_worker_niceness"] == "0"  # replicas at normal priority, not Ray's default 15
    joined = ray_env(host="127.0.0.1", fast_proxy=False, state_dir=tmp_path, joining_cluster=True)
    assert joined == {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30"}  # a cold proxy on a busy node
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "0")  # an operator's choice wins
    assert ray_env(host="127.0.0.1", fast_proxy=True, state_dir=tmp_path,
                   joining_cluster=False)["RAY_SERVE_ENABLE_HA_PROXY"] == "0"


def test_haproxy_wrapper_moves_only_the_given_ports_to_loopback(tmp_path):
    wrapper = haproxy_wrapper(tmp_path, [8404, 9101])
    fake = tmp_path / "fake-haproxy"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("global\n    log 127.0.0.1:514 local0 info\n"
                   "frontend prometheus\n    bind :9101\nfrontend http\n    bind 127.0.0.1:8000\n    log global\n"
                   "listen stats\n  bind *:8404\n  bind *:84040\n")
    text = wrapper.read_text()
    real = text.split("HIT_HAPROXY_REAL=", 1)[1].split("\n", 1)[0]
    fake.write_text("#!/bin/sh\necho ran \"$@\"\n")
    fake.chmod(0o755)
    wrapper.write_text(text.replace(f"HIT_HAPROXY_REAL={real}", f"HIT_HAPROXY_REAL={fake}"))
    out = subprocess.run([str(wrapper), "-db", "-f", str(cfg)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"ran -db -f {cfg}"
    # the syslog target nobody listens on is gone ("log global" then logs nowhere)
    assert cfg.read_text() == ("global\n"
                               "frontend prometheus\n    bind 127.0.0.1:9101\nfrontend http\n    bind 127.0.0.1:8000\n"
                               "    log global\nlisten stats\n  bind 127.0.0.1:8404\n  bind *:84040\n")
