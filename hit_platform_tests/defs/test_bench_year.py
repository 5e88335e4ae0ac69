"""bench/bench_year.py's day loop on a tiny world for four simulated days (issue 28, part 3), so the soak drill
cannot rot unseen: one row per day, the log and the lake grow, and the maintenance job bounds them. The
retentions are shortened (raw log rows and snapshots 1 day) so four days reach the steady state."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAYS, REQUESTS, COMMITS, KEEP_DAYS = 4, 20, 4, 1

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("faketime") is None, reason="needs faketime (Debian package)")]


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    out = tmp_path_factory.mktemp("year")
    env = {**os.environ, "HIT_LAKE_KEEP_SNAPSHOTS_DAYS": str(KEEP_DAYS), "HIT_MAINTENANCE_LOG_KEEP_DAYS": str(KEEP_DAYS),
           "HIT_TRAIN_FAMILIES": '["linear"]'}
    env.pop("DAGSTER_HOME", None)
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_year.py"), "--days", str(DAYS), "--out", str(out),
                           "--songs", "1500", "--history-days", "14", "--taste-shift", "latam:2:0.5:anglo",
                           "--requests-per-day", str(REQUESTS), "--commits-per-day", str(COMMITS),
                           "--retrain-every", "7"],
                          capture_output=True, text=True, timeout=1500, env=env, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(out / "year.csv") as f:
        rows = list(csv.DictReader(f))
    return out, rows, done.stdout


def test_one_row_per_simulated_day_on_consecutive_dates(soak):
    _, rows, _ = soak
    assert [int(r["day"]) for r in rows] == list(range(1, DAYS + 1))
    dates = [date.fromisoformat(r["date"]) for r in rows]
    assert dates == [dates[0] + timedelta(days=i) for i in range(DAYS)]
    assert all(int(r["commits"]) == COMMITS for r in rows)
    for col in ("ingest_s", "ingest_cpu_s", "monitors_s", "log_query_s", "commit_mean_s", "maintenance_s"):
        assert all(0 < float(r[col]) < 600 for r in rows), (col, [r[col] for r in rows])
    assert all(r["maintenance_ok"] == "True" for r in rows), [r["maintenance_ok"] for r in rows]
    assert int(rows[0]["retrained"]) == 1, "a new daily file asks the automation for a retrain"


def test_the_log_grows_until_its_retention_then_stays(soak):
    _, rows, _ = soak
    # raw rows of the days before (today - KEEP_DAYS) 00:00 are folded: at most KEEP_DAYS + 1 days stay raw
    expected = [REQUESTS * min(d, KEEP_DAYS + 1) for d in range(1, DAYS + 1)]
    assert [int(r["log_rows"]) for r in rows] == expected


def test_the_lake_grows_then_maintenance_bounds_it(soak):
    _, rows, _ = soak
    snaps = [int(r["snapshots"]) for r in rows]
    files = [int(r["data_files"]) for r in rows]
    # each day's rounds are inlined in the catalog (a few rows each), and flushed by the night's run
    assert all(int(r["inlined_rows_before"]) > 0 for r in rows), [r["inlined_rows_before"] for r in rows]
    assert all(int(r["inlined_rows"]) == 0 for r in rows), [r["inlined_rows"] for r in rows]
    # once snapshots are older than the retention, each night's run leaves fewer than the day brought ...
    late = rows[KEEP_DAYS:]
    assert all(int(r["snapshots"]) < int(r["snapshots_before"]) for r in late), \
        [(r["snapshots_before"], r["snapshots"]) for r in rows]
    # ... and the lake stops growing: snapshots and files no more than in the days before
    assert snaps[-1] <= max(snaps[KEEP_DAYS:-1]) + 2, snaps
    assert files[-1] <= max(files[KEEP_DAYS:-1]) + 2, files


def test_the_report_prints_the_table_and_ratios(soak):
    out, _, stdout = soak
    assert "ratio" in stdout and "ingest_s" in stdout and (out / "year.png").stat().st_size > 0
    again = subprocess.run([sys.executable, str(REPO / "bench" / "bench_year.py"), "--report", str(out)],
                           capture_output=True, text=True, timeout=120, cwd=REPO)
    assert again.returncode == 0 and "commit_mean_s" in again.stdout, again.stdout + again.stderr
    assert "regional taste shift" in again.stdout and "covered the truth" in again.stdout
