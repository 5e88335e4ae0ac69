"""The demo is a daily feed of one fixed world: run again the same day, nothing new lands; run the
next day (under faketime, as a user's clock would be), one new daily file lands and ingests cleanly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date, timedelta

import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.generator.feed import feed_day
from hit_platform.generator.dump import OtherWorld
from hit_platform.settings import REPO_ROOT
from hit_platform.adapters.lake.ingest import ingest_landing
from hit_platform.steps.ingest import landing_files

FAKETIME = shutil.which("faketime")
DAY = date(2026, 3, 10)
# A small world: 72 countries (as the model needs), few songs, a short history.
WORLD = ["--songs", "1500", "--history-days", "8", "--increments", "2", "--world-days", "14", "--fault",
         "key_duplicates=14", "--fault", "missing_values=14"]


def feed(settings, day: date, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HIT_WAREHOUSE": str(settings.warehouse)}
    return subprocess.run([FAKETIME, f"{day.isoformat()} 09:30:00", sys.executable, "-m", "hit_platform.cli", "feed",
                           *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def files(settings) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in landing_files(settings.landing_dir)}


@pytest.mark.skipif(FAKETIME is None, reason="needs faketime (Debian package)")
def test_the_next_day_lands_one_new_file_and_rewrites_none(settings):
    first = feed(settings, DAY, *WORLD)
    assert first.returncode == 0, first.stderr
    assert "a new world (seed 42, 2026-02-28 .. 2026-03-13)" in first.stdout
    day0 = files(settings)
    assert sorted(day0) == ["charts_2026-03-08.csv.gz", "charts_2026-03-09.csv.gz", "charts_history.csv.gz"]
    lake = Lake(settings)
    assert all(r.status == "ingested" for r in ingest_landing(lake, landing_files(settings.landing_dir)))

    again = feed(settings, DAY)  # the same day again, without repeating the options: the world is known
    assert again.returncode == 0, again.stderr
    assert "no new day since the last run (landed up to 2026-03-09)" in again.stdout
    assert files(settings) == day0

    tomorrow = feed(settings, DAY + timedelta(days=1))
    assert tomorrow.returncode == 0, tomorrow.stderr
    assert "1 new daily file(s)" in tomorrow.stdout
    day1 = files(settings)
    assert {k: day1[k] for k in day0} == day0 and set(day1) - set(day0) == {"charts_2026-03-10.csv.gz"}
    results = {r.file_name: r for r in ingest_landing(lake, landing_files(settings.landing_dir))}
    assert {n: r.status for n, r in results.items()} == {**dict.fromkeys(day0, "already_landed"),
                                                         "charts_2026-03-10.csv.gz": "ingested"}
    new = results["charts_2026-03-10.csv.gz"]
    # the new day's own injected faults only: nothing of the history comes back as a key duplicate
    assert new.rows_raw > 3000 and new.quarantined_by_reason.get("key_duplicate", 0) <= 2

    other = feed(settings, DAY + timedelta(days=1), "--seed", "7")
    assert other.returncode == 2 and "seed 42 (asked 7)" in other.stderr
    assert files(settings) == day1


def test_a_world_ends_and_a_clock_set_back_takes_nothing_away(tmp_path):
    landing, truth = tmp_path / "landing", tmp_path / "generator"
    from hit_platform.generator import generate

    kw = dict(songs=800, countries=3, history_days=5, increments=1, world_days=8)
    first = feed_day(landing, truth, DAY, {}, **kw)
    assert first.first_run and first.new_files == 2 and first.config.end_date == DAY - timedelta(days=1)
    generate(first.config)
    late = feed_day(landing, truth, DAY + timedelta(days=10), {})
    assert late.new_files == 2 and late.ended  # the world's last two days; then no more
    assert late.config.end_date == late.config.world_end_date == DAY + timedelta(days=1)
    generate(late.config)
    back = feed_day(landing, truth, DAY - timedelta(days=3), {})
    assert back.new_files == 0 and back.config.increments == 3
    with pytest.raises(OtherWorld, match="faults"):
        feed_day(landing, truth, DAY, {"missing_values": 3})


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hit_platform.cli", *args], env={**os.environ, **(env or {})},
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_generate_into_a_folder_with_files_adds_only_the_next_days(tmp_path):
    out = tmp_path / "landing"
    small = ["generate", "--out", str(out), "--songs", "800", "--countries", "3", "--history-days", "5",
             "--format", "csv"]
    first = cli(*small, "--increments", "1")
    assert first.returncode == 0, first.stderr
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    more = cli(*small, "--increments", "3")
    assert more.returncode == 0, more.stderr
    assert "2 new file(s)" in more.stdout and "2 already in place with the same bytes" in more.stdout
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert {k: after[k] for k in before} == before and len(after) == len(before) + 2
    other = cli(*small, "--increments", "3", "--seed", "9")
    assert other.returncode == 2 and "another generated world (seed 42 -> 9)" in other.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == after


def test_demo_help_states_its_real_defaults():
    out = cli("demo", "--help").stdout
    assert "2024-01-01" not in out
    assert "the first run picks it so that the history and its daily files end yesterday" in " ".join(out.split())
    for default in ("(default 42)", "(default 20000)", "(default 120)", "(default 3)", "history days + 30"):
        assert default in " ".join(out.split()), default
