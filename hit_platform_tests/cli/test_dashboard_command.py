"""`hit-platform dashboard`: the page served on 127.0.0.1, rendered from the lake as it is now (at most
every HIT_DASHBOARD_RENDER_SECONDS), stopped by Ctrl-C; a port in use is one line and exit code 2."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import pandas as pd

from hit_platform.adapters.lake.connection import Lake
from hit_platform.cli.dashboard import LivePage
from hit_platform.domain.countries import COUNTRIES
from hit_platform.serving.loopback import free_port
from hit_platform.settings import REPO_ROOT, Settings
from hit_platform.steps import performance_estimates as estimates

COMMAND = [sys.executable, "-m", "hit_platform.cli.main", "dashboard"]


def estimate(lake: Lake, version: str) -> None:
    at = datetime.now(timezone.utc)
    rows = pd.DataFrame({"estimated_at": at, "model_version": version, "source": "batch",
                         "window_start": at - timedelta(hours=1), "window_end": at, "country": COUNTRIES[:2],
                         "metric": "roc_auc", "estimate": [0.8, 0.7], "lower": np.nan, "upper": np.nan,
                         "songs": 50, "reference": 0.75, "dagster_run_id": "r1"})
    lake.write(lambda con: estimates.append(con, rows))


def wait_for(what: str, check, proc: subprocess.Popen, timeout: float = 90.0):
    """`check()` until it returns something true, or fail saying what was seen: the process's exit and output."""
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
            seen = value
        except httpx.HTTPError as exc:
            seen = repr(exc)
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the dashboard exited ({proc.returncode}) while waiting for {what}: {out}{err}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {seen}")


def test_it_serves_the_lake_as_it_is_now_and_stops_on_ctrl_c(tmp_path):
    settings = Settings(warehouse=tmp_path / "warehouse")
    lake = Lake(settings)
    estimate(lake, "7")
    port = free_port()
    env = {**os.environ, "HIT_WAREHOUSE": str(settings.warehouse), "HIT_DASHBOARD_RENDER_SECONDS": "0",
           "HIT_SERVE_PORT": str(free_port())}
    proc = subprocess.Popen([*COMMAND, "--port", str(port)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("/healthz", lambda: httpx.get(url + "/healthz", timeout=5).status_code == 200, proc)
        first = httpx.get(url + "/", timeout=60)
        assert first.status_code == 200 and first.headers["content-type"].startswith("text/html")
        page = first.text
        assert '<meta http-equiv="refresh" content="30">' in page
        assert "Served live by hit-platform dashboard" in page and "not served now" in page
        assert "model version 7" in page.split("<h2>Performance estimate</h2>")[1]
        # what it shows is what is true now: a newer estimate is on the next request's page
        estimate(lake, "8")
        assert "model version 8" in httpx.get(url + "/", timeout=60).text.split("<h2>Performance estimate</h2>")[1]
        assert httpx.get(url + "/nothing", timeout=5).status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.splitlines()[0] == (f"dashboard: {url}/  (rendered from the lake at most every 0 s, the page reloads "
                                   "itself every 30 s; Ctrl-C stops it)")
    assert out.splitlines()[-1] == "dashboard stopped" and "Traceback" not in err, (out, err)


def test_a_port_in_use_is_one_line_and_exit_code_2(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([*COMMAND, "--port", str(port)], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=120, env={**os.environ, "HIT_WAREHOUSE": str(tmp_path / "warehouse")})
    assert out.returncode == 2 and out.stdout == "", out
    assert out.stderr.splitlines() == [f"hit-platform dashboard: error: cannot serve the dashboard on "
                                       f"127.0.0.1:{port}: the port is in use (another dashboard?); choose another "
                                       "with --port or HIT_DASHBOARD_PORT"]


def test_it_renders_at_most_every_render_seconds():
    clock, numbers = [100.0], iter(range(1, 10))
    page = LivePage(lambda: f"page {next(numbers)}", 5.0, clock=lambda: clock[0])
    assert page.get() == b"page 1" and page.get() == b"page 1"
    clock[0] += 4.9
    assert page.get() == b"page 1"
    clock[0] += 0.2
    assert page.get() == b"page 2" and page.renderings == 2
