"""The dashboard in headless Chromium (Debian's, as the Dagster UI test uses it) after a demo-like build
with served traffic: the graph built as `hit-platform demo` builds it (a small world of all 72
countries, the linear family) up to the served champion and the batch predictions, real requests to
the champion, then the monitors and the dashboard asset on that traffic; then `hit-platform dashboard`
serves the page and Chromium loads it.

Every section has its plot or its table, or says why it is empty; each says how old it is; the page says
the champion it shows is the one served now. The screenshot is kept under the repository's git-ignored
warehouse/test-artifacts/ (printed with -s), where a CI run that keeps the work tree keeps it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest
from PIL import Image, ImageOps

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import requests_in_log
from hit_platform.adapters.tracking import Tracker
from hit_platform.cli import build as builder
from hit_platform.definitions import build_definitions
from hit_platform.defs.ml.predictions import BATCH_PREDICTIONS
from hit_platform.defs.ops import DASHBOARD, MONITORS
from hit_platform.defs.resources import LakeResource, ServingResource, TrackingResource, TrainingResource
from hit_platform.defs.serving import DEPLOYMENT
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.serving import ServeConfig, process
from hit_platform.serving.loopback import free_port
from hit_platform.serving.predictor import probe_rows
from hit_platform.settings import REPO_ROOT, Settings
from hit_platform_tests.support.dumps import generate_full

pytestmark = pytest.mark.slow
ARTIFACTS = REPO_ROOT / "warehouse" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# as in defs/test_dagster_ui.py: without the background-networking flags Chromium keeps calling out.
# A tall window: the screenshot holds the whole page. A short virtual time: the page is static (inline
# images), and within 30 s of virtual time its own reload (meta refresh) would start.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1100,7000", "--virtual-time-budget=5000"]
COMMAND = [sys.executable, "-m", "hit_platform.cli.main", "dashboard"]
REQUESTS = 300  # more than HIT_MONITOR_MIN_ROWS (200): the served-drift monitor judges them
SECTIONS = ("Model quality", "Global importance", "Model events", "Shadow", "Performance estimate", "Drift",
            "Serving", "Monitors", "Alerts")


def song(row) -> dict:
    """A feature row as the JSON a client sends: integers and a boolean where the API wants them."""
    values = dict(zip(FEATURE_COLUMNS, row.tolist()))
    return {**values, **{c: int(values[c]) for c in ("key", "mode", "time_signature", "duration_ms")},
            "is_explicit": bool(values["is_explicit"])}


def wait_for(what: str, check, timeout: float, poll: float = 0.5, proc: subprocess.Popen | None = None):
    """`check()` until it is true, or fail saying what was last seen."""
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            seen = check()
            if seen:
                return seen
        except httpx.HTTPError as exc:
            seen = repr(exc)
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited ({proc.returncode}) while waiting for {what}: {proc.communicate()}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {seen!r}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The graph built as the demo builds it, the champion served and asked REQUESTS times, the monitors
    and the dashboard asset run on that traffic. Yields (settings, champion version, timings)."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    root = tmp_path_factory.mktemp("dashboard")
    settings = Settings(warehouse=root / "warehouse")
    serve = ServeConfig(port=free_port())
    timings: dict[str, float] = {}
    t = time.monotonic()
    generate_full(settings, songs=2000, increments=1)
    defs = build_definitions(LakeResource(warehouse=str(settings.warehouse)),
                             tracking=TrackingResource(warehouse=str(settings.warehouse)),
                             training=TrainingResource(families=["linear"], workers=1),
                             serving_config=ServingResource(values_json=json.dumps({"port": serve.port})))
    instance = dg.DagsterInstance.ephemeral()
    try:
        # the demo's build up to the served champion and the batch predictions; the monitors and the dashboard
        # run below, on the traffic
        built = builder.build(defs, instance, upto=[DEPLOYMENT, BATCH_PREDICTIONS])
        assert built.success, [c.description for c in built.checks if not c.passed]
        timings["build"] = time.monotonic() - t
        champion = Tracker(settings).champion_info().version
        t = time.monotonic()
        with httpx.Client(base_url=serve.endpoint, timeout=30) as client:
            ids = [client.post("/predict", json=song(row)).json()["request_id"]
                   for row in probe_rows(REQUESTS, seed=3)]
        wait_for(f"the {REQUESTS} requests in the lake's inference log",
                 lambda: len(requests_in_log(Lake(settings), ids)) == REQUESTS, timeout=60)
        timings["traffic"] = time.monotonic() - t
        t = time.monotonic()
        monitored = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[*MONITORS, DASHBOARD], raise_on_error=False)
        assert monitored.success, [e.message for e in monitored.all_events if e.is_failure]
        timings["monitors"] = time.monotonic() - t
        yield settings, champion, timings
    finally:
        process.stop(settings, serve)


def chromium(root: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    profile = root / f"chromium-{time.monotonic_ns()}"
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                          capture_output=True, timeout=120)


def sections(dom: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"<section[^>]*><h2>([^<]+)</h2>(.*?)</section>", dom, re.S)}


def test_every_section_has_its_plot_or_table_or_says_why_and_the_screenshot_is_kept(demo, tmp_path):
    settings, champion, timings = demo
    port = free_port()
    proc = subprocess.Popen([*COMMAND, "--port", str(port)],
                            cwd=REPO_ROOT, env={**os.environ, "HIT_WAREHOUSE": str(settings.warehouse)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for("the dashboard's /healthz", lambda: httpx.get(url + "healthz", timeout=5).status_code == 200,
                 timeout=90, proc=proc)
        t = time.monotonic()
        dom = chromium(tmp_path, url, "--dump-dom").stdout.decode(errors="replace")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dashboard_after_demo_with_traffic.png"
        shot.unlink(missing_ok=True)
        chromium(tmp_path, url, f"--screenshot={shot}")
        timings["chromium"] = time.monotonic() - t
        with Image.open(shot) as image:  # the window is taller than the page: keep the page only
            bottom = ImageOps.invert(image.convert("L")).getbbox()[3]
            assert bottom < image.height - 20, "the page is taller than Chromium's window: raise --window-size"
            image.crop((0, 0, image.width, bottom + 20)).save(shot)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    print(f"\nscreenshot: {shot}\ntimings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    assert "<h1>hit_platform dashboard</h1>" in dom, dom[:500]
    assert shot.exists() and shot.stat().st_size > 50_000, shot
    found = sections(dom)
    assert tuple(found) == SECTIONS, list(found)
    for title, body in found.items():
        assert re.search(r'<p class="age">[^<]+: (\d+ (s|min|h) ago|just now) \(<time', body) or \
            (title == "Shadow" and '<p class="age">newest shadowed request: none yet</p>' in body), (title, body[:300])
        shows = "<img" in body or "<table" in body
        says_why = re.search(r'<p class="empty">[^<]{10,}</p>', body)
        assert shows or says_why, f"section {title} is empty without saying why: {body[:300]}"
    # a demo with traffic has these to show
    for title in ("Model quality", "Global importance", "Performance estimate", "Drift", "Serving"):
        assert "<img" in found[title], f"{title} has no plot: {found[title][:300]}"
    for title in ("Model events", "Monitors"):
        assert "<table" in found[title], f"{title} has no table: {found[title][:300]}"
    assert f"{REQUESTS} requests (0 answered 5xx), all in one minute: one minute of traffic so far" in found["Serving"]
    assert f"Champion shown: version {champion}," in dom and f"served now: version {champion} (same)" in dom
    # the file the asset wrote is the same page, and it reloads itself too
    written = (settings.warehouse / "reports" / "dashboard.html").read_text()
    assert '<meta http-equiv="refresh" content="30">' in written
    assert "Written by the Dagster asset ops/dashboard" in written and "Rendered <time" in written
    assert f"served now: version {champion} (same)" in written
