"""The Dagster UI, as `dagster dev` from the repository root shows it, opened in headless Chromium.

Starts `dagster-webserver` on the repository's workspace.yaml (a temp DAGSTER_HOME and
warehouse), then, in Debian's Chromium: screenshots of the global lineage and of each
asset group's graph, and the rendered pages must name every asset of the graph and
every sensor. Screenshots go to the test's temp folder (printed with -s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hit_platform.definitions import defs
from hit_platform.serving.loopback import free_port
from hit_platform.settings import REPO_ROOT

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without the background-networking flags Chromium keeps calling out, and this machine's
# closed network refuses it, many times over.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=2400,1400", "--virtual-time-budget=30000"]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    root = tmp_path_factory.mktemp("ui")
    (root / "home").mkdir()
    (root / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(root / "home"), "HIT_WAREHOUSE": str(root / "warehouse")}
    log = open(root / "webserver.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1",
                             "-p", str(port), "-w", "workspace.yaml"], cwd=REPO_ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                if httpx.get(url + "/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (root / "webserver.log").read_text()
            time.sleep(0.5)
        # The community pop-up (shown once on localhost) would cover the graph.
        httpx.post(url + "/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=30).raise_for_status()
        yield url, root
    finally:
        proc.terminate()
        proc.wait(30)


def chromium(root: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    profile = root / f"chromium-{time.monotonic_ns()}"
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                          capture_output=True, timeout=120)


def rendered_text(root: Path, url: str) -> str:
    dom = chromium(root, url, "--dump-dom").stdout.decode(errors="replace")
    assert "<html" in dom, dom[:500]
    return dom


LOCATION = "hit_platform.definitions"


def test_the_asset_graph_shows_every_asset(webserver):
    url, root = webserver
    shot = root / "asset_graph_global.png"
    chromium(root, url + "/asset-groups", f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 20_000
    groups: dict[str, list[str]] = {}
    for key, spec in ((s.key, s) for s in defs.resolve_all_asset_specs()):
        groups.setdefault(spec.group_name, []).append(key.path[-1])
    assert set(groups) == {"landing", "raw", "quarantine", "core", "ml", "serving", "ops", "maintenance"}
    missing = {}
    for group, names in sorted(groups.items()):
        page = f"{url}/locations/{LOCATION}/asset-groups/{group}"
        dom = rendered_text(root, page)
        gone = [n for n in names if n not in dom]
        if gone:
            missing[group] = gone
        chromium(root, page, f"--screenshot={root / f'asset_graph_{group}.png'}")
    assert not missing, f"assets not on their group's graph page: {missing}"
    print(f"screenshots: {sorted(str(p) for p in root.glob('*.png'))}")


def test_the_automation_page_lists_the_sensors(webserver):
    url, root = webserver
    dom = rendered_text(root, url + "/automation")
    for sensor in ("landing_sensor", "drift_retrain_sensor", "run_failure_alerts", "automation"):
        assert sensor in dom, sensor
