"""A real Dagster daemon over a temp platform: drop files into landing/, watch what runs by itself.

Used by the end-to-end automation test and by bench/bench_automation.py. Everything is
real: `dagster-daemon run` (sensors, declarative automation, queued run coordinator,
runs in subprocesses), a DuckLake lake, an MLflow store and the serving process, all
under one temp folder and a free port.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import httpx

from hit_platform.generator import GeneratorConfig, generate
from hit_platform.private_apis import instance_from_dir
from hit_platform.serving import ServeConfig, process
from hit_platform.serving.loopback import free_port
from hit_platform.settings import REPO_ROOT, Settings

INSTANCE_YAML = """storage:
  sqlite:
    base_dir: {home}/storage
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
telemetry:
  enabled: false
"""
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


class Drill:
    def __init__(self, root: Path, *, songs: int = 3000, history_days: int = 24, increments: int = 4,
                 families: str = '["linear"]', env: dict | None = None):
        self.root = root
        self.settings = Settings(warehouse=root / "warehouse")
        self.staging = root / "staging"
        self.home = root / "dagster_home"
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(INSTANCE_YAML.format(home=self.home))
        self.serve = ServeConfig(port=free_port())
        self.env = {**os.environ, "DAGSTER_HOME": str(self.home), "HIT_WAREHOUSE": str(self.settings.warehouse),
                    "HIT_SERVE_PORT": str(self.serve.port), "HIT_TRAIN_FAMILIES": families,
                    "PYTHONPATH": str(REPO_ROOT), **(env or {})}
        start = date.today() - timedelta(days=history_days + increments)
        self.manifest = generate(GeneratorConfig(
            out_dir=self.staging, truth_dir=self.settings.generator_dir, seed=5, songs=songs,
            history_days=history_days, increments=increments, start_date=start, fmt="csv.gz"))
        self.increments = sorted(p for p in self.staging.iterdir() if p.name != "charts_history.csv.gz")
        self.daemon: subprocess.Popen | None = None
        self.instance = instance_from_dir(self.home, self.home)

    # -- files --------------------------------------------------------------------------------------
    def land(self, path: Path, name: str | None = None) -> float:
        """Move a file into landing/ atomically (as a producer should); returns the time it landed."""
        landing = self.settings.landing_dir
        landing.mkdir(parents=True, exist_ok=True)
        tmp = landing / f".{name or path.name}.part"
        shutil.copyfile(path, tmp)
        tmp.rename(landing / (name or path.name))
        return time.time()

    def rewritten(self, path: Path, name: str, select: str, where: str = "true") -> Path:
        """A copy of a staging file with its rows rewritten by SQL (e.g. shifted features)."""
        out = self.staging / name
        con = duckdb.connect()
        con.execute(f"COPY (SELECT {select} FROM read_csv('{path}', all_varchar=true) WHERE {where}) "
                    f"TO '{out}' (HEADER, COMPRESSION gzip)")
        con.close()
        return out

    # -- the daemon ---------------------------------------------------------------------------------
    def start_daemon(self, module: str = "hit_platform.definitions", env: dict | None = None) -> None:
        """`dagster-daemon run` on the code location `module` (the platform's own by default)."""
        self.daemon_log = open(self.root / "daemon.log", "ab")
        self.daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", module],
            env={**self.env, **(env or {})}, cwd=self.root, stdout=self.daemon_log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def stop_daemon(self) -> None:
        if self.daemon and self.daemon.poll() is None:
            os.killpg(self.daemon.pid, signal.SIGTERM)
            try:
                self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.daemon.pid, signal.SIGKILL)
                self.daemon.wait(10)

    def stop(self) -> None:
        self.stop_daemon()
        process.stop(self.settings, self.serve)

    def daemon_tail(self, lines: int = 40) -> str:
        text = (self.root / "daemon.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    # -- what happened ------------------------------------------------------------------------------
    def runs(self) -> list[dg.DagsterRun]:
        return list(reversed(self.instance.get_runs()))

    def materializations(self, key: dg.AssetKey) -> list:
        return self.instance.fetch_materializations(key, limit=1000).records

    def wait(self, predicate, timeout: float, what: str, poll: float = 2.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            if self.daemon and self.daemon.poll() is not None:
                raise AssertionError(f"the daemon exited while waiting for {what}:\n{self.daemon_tail()}")
            time.sleep(poll)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.diagnosis()}")

    def diagnosis(self) -> str:
        """What a timeout needs to be understood: every run (what started it, its assets, how it ended and
        which step failed why), the automation daemon's last ticks and the daemon log's tail."""
        lines = ["runs:"]
        for r in self.runs():
            stats = self.instance.get_run_stats(r.run_id)
            started = time.strftime("%H:%M:%S", time.localtime(stats.start_time)) if stats.start_time else "-"
            assets = sorted("/".join(k.path) for k in (r.asset_selection or []))
            lines.append(f"  {started} {r.job_name} {r.status.value} by {r.tags.get('dagster/sensor_name', 'hand')}: "
                         f"{', '.join(assets) or 'its job'}")
            if r.status == dg.DagsterRunStatus.FAILURE:
                for e in self.instance.all_logs(r.run_id, of_type={dg.DagsterEventType.STEP_FAILURE,
                                                                   dg.DagsterEventType.RUN_FAILURE}):
                    lines.append(f"    {e.step_key or 'run'}: {(e.message or '').splitlines()[0][:300]}")
        log = (self.root / "daemon.log").read_text(errors="replace").splitlines()
        ticks = [line for line in log if "AssetDaemon" in line and ("Tick produced" in line or "Error" in line)]
        return "\n".join(lines + ["automation ticks (last 5):", *ticks[-5:], "daemon log:", *log[-40:]])

    def idle(self) -> bool:
        """No run queued or running."""
        return all(r.status in FINISHED for r in self.instance.get_runs())

    def settled(self, quiet_s: float = 75.0, timeout: float = 900.0) -> None:
        """Wait until no run has been active for `quiet_s` (more than two automation ticks)."""
        deadline = time.time() + timeout
        quiet_since = None
        while time.time() < deadline:
            if self.idle():
                quiet_since = quiet_since or time.time()
                if time.time() - quiet_since >= quiet_s:
                    return
            else:
                quiet_since = None
            time.sleep(2)
        raise AssertionError(f"runs still active after {timeout:.0f} s:\n{self.daemon_tail()}")

    def served_version(self) -> str | None:
        try:
            return httpx.get(self.serve.endpoint + "/model", timeout=5).json()["version"]
        except (httpx.HTTPError, KeyError, ValueError):
            return None

    def run_report(self, since: float) -> list[str]:
        lines = []
        for r in self.runs():
            stats = self.instance.get_run_stats(r.run_id)
            if (stats.start_time or 0) < since:
                continue
            why = r.tags.get("dagster/sensor_name") or r.tags.get("trigger") or "manual"
            took = (stats.end_time or time.time()) - (stats.start_time or time.time())
            lines.append(f"{time.strftime('%H:%M:%S', time.localtime(stats.start_time))} {why:>22} "
                         f"{r.status.value:>8} {took:6.1f} s  {len(r.asset_selection or [])} assets")
        return lines
