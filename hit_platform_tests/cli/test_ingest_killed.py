"""kill -9 of `hit-platform ingest` at several points, then a rerun: every row once, one record per
file, no data file that no snapshot references."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.domain.schema import CHART_KEYS
from hit_platform.settings import REPO_ROOT, Settings
from hit_platform_tests.support.dumps import small_dump

pytestmark = pytest.mark.slow


def data_files(settings: Settings) -> set[Path]:
    root = Path(settings.data_path)
    return set(root.rglob("*.parquet")) if root.exists() else set()


def ingest(env: dict, kill_when=None) -> tuple[int, float]:
    """`hit-platform ingest` in its own session; with `kill_when(started)`, kill -9 the whole session
    once it returns True. Returns (return code, seconds)."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "hit_platform.cli", "ingest"], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    if kill_when is not None:
        while proc.poll() is None and not kill_when(t0):
            time.sleep(0.002)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert kill_when is not None or proc.returncode == 0, err[-3000:]
    return proc.returncode, time.monotonic() - t0


def test_an_ingest_killed_at_any_point_then_rerun_leaves_each_row_once(tmp_path):
    settings = Settings(warehouse=tmp_path / "warehouse")
    manifest = small_dump(settings, countries=72, history_days=20, increments=2, songs=2500)
    env = {**os.environ, "HIT_WAREHOUSE": str(settings.warehouse), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    (tmp_path / "dagster_home").mkdir()

    kills = []
    # 1. in the middle of a commit: the first data file of the transaction is on disk, the catalog
    #    does not name it yet
    before = data_files(settings)
    kills.append(("mid-commit", ingest(env, lambda t0: bool(data_files(settings) - before))))
    # 2. later in a commit: its second data file is on disk
    before = data_files(settings)
    kills.append(("later in a commit", ingest(env, lambda t0: len(data_files(settings) - before) >= 2)))
    # 3. at a moment chosen by the clock: start-up, staging or commit, whichever it is
    kills.append(("after 4 s", ingest(env, lambda t0: time.monotonic() - t0 > 4)))
    assert all(rc == -signal.SIGKILL for _, (rc, _) in kills), kills
    print("ingest killed:", ", ".join(f"{what} at {s:.1f} s" for what, (_, s) in kills))
    assert len(data_files(settings)) > 0  # the kills left files behind

    # the rerun, by then long after the kills (a grace of 0 s stands for "an hour later")
    rc, _ = ingest({**env, "HIT_LAKE_ORPHAN_GRACE_S": "0"})
    lake = Lake(settings)
    with lake.connection(read_only=True) as con:
        rows, *keys = con.execute("SELECT count(*), " + ", ".join(
            f"count(DISTINCT ({', '.join(key)}))" for key in CHART_KEYS) + " FROM raw.chart_rows").fetchall()[0]
        files = con.execute("SELECT file_name, count(*), sum(rows_raw) FROM raw.landed_files "
                            "GROUP BY ALL ORDER BY 1").fetchall()
        referenced = {Path(r[0]).name for r in con.execute(
            f"SELECT path FROM __ducklake_metadata_{lake.alias}.ducklake_data_file").fetchall()}
    assert rows == manifest["total_rows"] and keys == [rows] * len(CHART_KEYS)
    assert [f[1] for f in files] == [1] * len(files) and len(files) == len(list(settings.landing_dir.iterdir()))
    assert sum(f[2] for f in files) == rows
    on_disk = {p.name for p in data_files(settings)}
    assert on_disk == referenced, f"orphans: {sorted(on_disk - referenced)}"
