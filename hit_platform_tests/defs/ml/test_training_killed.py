"""kill -9 of a training run between registering a model version and moving the champion alias: the
registry and ml.evaluations stay consistent, and the next build repairs (marks the orphan version
abandoned, trains, evaluates and promotes a recorded version)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from hit_platform.adapters.tracking import ABANDONED, Tracker
from hit_platform.settings import REPO_ROOT, Settings
from hit_platform_tests.support.dumps import generate_full

pytestmark = pytest.mark.slow

BUILD = """
import sys
import dagster as dg
from hit_platform.cli import build as builder
from hit_platform.definitions import build_definitions
from hit_platform.defs.ml.evaluation import CHAMPION
from hit_platform.defs.resources import LakeResource, TrackingResource, TrainingResource
warehouse, home = sys.argv[1:3]
defs = build_definitions(LakeResource(warehouse=warehouse), tracking=TrackingResource(warehouse=warehouse),
                         training=TrainingResource(families=["linear"]))
instance = dg.DagsterInstance.from_config(home)
result = builder.build(defs, instance, upto=[CHAMPION])
print("BUILD", "ok" if result.success else "failed", flush=True)
"""


def versions(settings: Settings) -> int:
    db = settings.warehouse / "mlflow" / "mlflow.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as con:
            return con.execute("SELECT count(*) FROM model_versions").fetchone()[0]
    except sqlite3.OperationalError:  # the tables are not there yet, or locked for a moment
        return 0


def build(settings: Settings, home, *, kill_at_new_version: bool = False) -> subprocess.CompletedProcess | int:
    proc = subprocess.Popen([sys.executable, "-c", BUILD, str(settings.warehouse), str(home)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if not kill_at_new_version:
        out, _ = proc.communicate(timeout=600)
        assert "BUILD ok" in out, out[-4000:]
        return out
    before = versions(settings)
    while proc.poll() is None and versions(settings) == before:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def test_a_training_run_killed_after_registering_leaves_no_unexplained_version(tmp_path):
    settings = Settings(warehouse=tmp_path / "warehouse")
    generate_full(settings, songs=2000, increments=1)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    assert build(settings, home, kill_at_new_version=True) == -signal.SIGKILL
    tracker = Tracker(settings)
    registered = tracker.client.search_model_versions(f"name = '{tracker.model_name}'")
    assert [str(v.version) for v in registered] == ["1"]  # registered; the run died before recording it
    assert tracker.champion_info() is None  # the alias never moved

    out = build(settings, home)  # the next build: repairs, trains anew, promotes what it recorded
    champion = tracker.champion_info()
    orphan = tracker.client.get_model_version(tracker.model_name, "1")
    assert champion is not None and champion.version != "1"
    assert "died before recording it" in orphan.tags[ABANDONED]
    assert ABANDONED not in champion.tags and champion.tags.get("promoted_by_dagster_run")
    assert "model version 1 marked abandoned" in out
    from hit_platform.adapters.lake.connection import Lake
    with Lake(settings).connection(read_only=True) as con:
        rows = con.execute("SELECT candidate_version, promote FROM ml.evaluations ORDER BY evaluated_at").fetchall()
    assert rows == [(champion.version, True)]  # every evaluation names a recorded version; the champion's says promote
