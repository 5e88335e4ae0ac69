"""A year in minutes (issue 28, part 3): a compressed calendar of simulated days on one generated world,
run through the platform's own entry points, with the figures that tell whether day 365 costs what day 1 did.

    .venv/bin/python bench/bench_year.py [--days 365] [--maintenance on|off] [--out DIR] [--retrain-every 1]
        [--songs 3000] [--history-days 30] [--taste-shift latam:120:0.5:anglo] [--requests-per-day 300]
        [--commits-per-day 48] [--monitor-every 1] [--maintenance-every 1] [--seed 42]
    .venv/bin/python bench/bench_year.py --report DIR      # the table, ratios and plot of a run (also partial)

The clock. The platform reads the time in Python (`datetime.now`: retention cutoffs, Dagster's run times,
MLflow's) and in DuckDB (`now()`: the monitors' window, DuckLake's snapshot times, cleanup's grace); it takes no
injected clock. So the bench runs itself under libfaketime (the Debian `faketime` package), which moves both:
the offset is a file (`FAKETIME_TIMESTAMP_FILE`) re-read on every clock call (`FAKETIME_NO_CACHE=1`), so
replacing it jumps the process to any simulated instant, and the clock runs on in real time from there. Not the
`FAKETIME` variable: rewriting the environment while other threads read it through libfaketime's `getenv` is
a use-after-free (CI met it: "free(): invalid pointer", the bench killed by SIGABRT). The monotonic clock is left real
(`FAKETIME_DONT_FAKE_MONOTONIC=1`: timeouts and the measured seconds are real ones); libfaketime 0.9.10 then
fails Python's `time.sleep` with EINVAL (its `clock_nanosleep` with an absolute monotonic deadline), so this
process sleeps on an `Event` instead, and its children run on the real clock (LD_PRELOAD is not passed on).

The calendar. The world (`GeneratorConfig`: --songs, --history-days, a start date, world days enough for the
run, and the generator's own `TasteShift` given as --taste-shift REGION:DAY:STRENGTH[:TOWARD], DAY counted in
soak days) is generated once into a staging folder. Day 0 lands its history and builds everything (the
first champion). Simulated day d (the morning after the file's date) then:
  00:05  lands the day's daily file in landing/ and ingests it as `hit-platform ingest FILE` does (the ingest
         asset and the raw gates, through Dagster), then runs `hit-platform build`'s own `build()`: what the
         automation conditions ask for (a new raw version asks for a retrain through the gates, a new champion
         and its batch predictions). --retrain-every N evaluates the automation every N days only (a daemon
         evaluating rarely: the files landed between are ingested each day, and one retrain takes them all).
  00:10 .. 23:40  a day's served requests (--requests-per-day songs, one /predict each, answered by the
         champion's predictor over the songs of the days around their first chart) journaled by the replica's
         `InferenceLogger` and committed by the serving process's `JournalCommitter` in --commits-per-day
         rounds: the logger seals its segment, the committer commits it (one lake transaction, one snapshot).
  23:45  the five monitors (group `ops`) materialized through Dagster: their 15-minute cron compressed to one
         run a day, over the same 24-hour window.
  23:50  a typical log query: the audit lookup of a request served that morning (`requests_in_log`).
  23:55  `maintenance_job` through Dagster (unless --maintenance off): hourly in reality, compressed to one
         run at the day's end. Its retentions are whole days (snapshots 7, raw log rows 30, runs 30, ...), so a
         daily run expires what 24 hourly runs would, a day later at most; what it merges and flushes is the
         day's 24 hours of work at once, and the inlined rows wait a day for it instead of an hour.

Strides. --monitor-every N runs the 23:45 and 23:50 parts every N days and --maintenance-every N the 23:55
one, always on the table's days (1, 30, 90, 180, 365) and the last, whose rows stay whole; the other days' rows
leave those columns empty. A year at a day's full cost (15-40 s on two shared cores) takes two to four hours;
strided, its days still land, serve and commit every day. What a stride changes: maintenance every N days
leaves N days of commits to merge and expire at once (the bound then saw-tooths N days wide), and an alert can
fire only on a monitored day.

Commits per day. The serving process's committer commits the journal every HIT_SERVE_LOG_COMMIT_SECONDS (5 s)
when the replicas sealed something since (`JournalCommitter.start`: nothing sealed, no transaction). A real
day therefore has min(86,400 / 5, the 5-second windows with a request) commits: 17,280 under a steady
trickle, and about one per request when requests are rarer than one per 5 s. Each is one lake snapshot,
inlined in the catalog up to HIT_MAINTENANCE_LOG_INLINE_ROWS rows (else a Parquet file). The bench commits
--commits-per-day rounds (48 by default, one every 30 minutes, each holding the requests of its half-hour):
a simulated commit stands for 17,280 / 48 = 360 real ones of a busy day, or for the --requests-per-day / 48
a trickle of that many requests would make. What a round costs (the table's committer round) and what it
leaves (one snapshot, a few inlined rows) is the real one; what scales with the cadence is the count, so a
busy real day leaves 360x the snapshots, and the 7-day retention keeps about 121,000 of them, against some
340 here. --commits-per-day = --requests-per-day is the real count for the bench's own traffic; 17,280 is
the busy day's, for a short --days.

Recorded per simulated day (one CSV row, appended as the day ends, under --out, default
warehouse/bench/year-<maintenance>): ingest seconds (the ingest run's own duration in Dagster), build seconds
(with the retrain when there was one), monitors' seconds, the log query's seconds, the committer's mean and
worst round, lake snapshots, data files, inlined rows, catalog bytes (pages in use, and the file on disk), disk
use of the warehouse, Dagster runs, registered model versions, and what the delayed-label monitor and the
label-free estimate said. At the end: the table for days 1, 30, 90, 180, 365, the ratios day N / day 1, a plot
(year.png), the day the regional shift begins, the day the per-region delayed-label alert fires, and the
90% intervals' coverage of the truth (each day's estimate window of served songs against the ROC AUC the
generator's own labels give those songs, countries with enough expected hits).
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARK = "HIT_BENCH_YEAR_FAKETIME"
_OFFSET_FILE: Path | None = None  # under libfaketime: the file holding the clock's offset
SHOWN_DAYS = (1, 30, 90, 180, 365)
COLUMNS = ("day", "date", "retrained", "champion", "ingest_s", "ingest_cpu_s", "retrain_s", "monitors_s",
           "monitors_cpu_s", "log_query_s", "log_query_cpu_s", "commit_mean_s", "commit_max_s", "commit_cpu_s", "commits", "log_rows", "snapshots_before", "data_files_before",
           "inlined_rows_before", "snapshots", "data_files", "inlined_rows",
           "catalog_bytes", "catalog_file_bytes", "disk_bytes", "dagster_runs", "model_versions",
           "maintenance_s", "maintenance_cpu_s", "maintenance_ok", "delayed_label_regions", "delayed_label_summary",
           "estimate_covered", "estimate_judged", "estimate_covered_shifted", "estimate_judged_shifted")
TARGETS = {"ingest_s": 1.2, "ingest_cpu_s": 1.2, "monitors_s": 1.2, "monitors_cpu_s": 1.2, "commit_mean_s": 1.2,
           "commit_cpu_s": 1.2}


# -- the clock ----------------------------------------------------------------------------------------------

def _libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1") + glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    if not found:
        sys.exit("bench_year: error: libfaketime not found (apt-get install faketime)")
    return found[0]


def under_faketime() -> None:
    """Run this script again under libfaketime (once); in the faked process, sleep without clock_nanosleep and
    keep LD_PRELOAD from the children."""
    if os.environ.get(MARK) != "1":
        offset_file = Path(tempfile.mkdtemp(prefix="bench_year_clock_")) / "faketime.rc"
        offset_file.write_text("+0\n")
        env = {k: v for k, v in os.environ.items() if k != "FAKETIME"}  # the variable would win over the file
        env.update({MARK: "1", "LD_PRELOAD": _libfaketime(), "FAKETIME_TIMESTAMP_FILE": str(offset_file),
                    "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    global _OFFSET_FILE
    _OFFSET_FILE = Path(os.environ["FAKETIME_TIMESTAMP_FILE"])
    # children (mlflow gc) on the real clock: libfaketime is loaded here already. The file's name stays in the
    # environment: libfaketime looks it up on every clock call, and without LD_PRELOAD a child ignores it.
    os.environ.pop("LD_PRELOAD", None)

    def sleep(seconds: float) -> None:
        if seconds > 0:
            threading.Event().wait(seconds)

    time.sleep = sleep


class SimClock:
    """Moves this process's wall clock (Python's and DuckDB's) to a simulated instant; it runs on from there."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.file = _OFFSET_FILE

    def set(self, when: datetime) -> None:
        real = time.time() - self.offset
        self.offset = round(when.timestamp() - real)
        if self.file is None:
            raise RuntimeError("bench_year: the clock moves only under libfaketime (run through under_faketime)")
        fresh = self.file.with_suffix(".new")
        fresh.write_text(f"{self.offset:+d}\n")
        os.replace(fresh, self.file)  # a reader sees the old offset or the new one, never half a line
        if abs(time.time() - when.timestamp()) > 60:
            raise RuntimeError(f"bench_year: libfaketime did not move the clock to {when} (it reads {self.file})")

    @staticmethod
    def now() -> datetime:
        return datetime.now(timezone.utc)


class Timer:
    """Wall seconds and this process's CPU seconds (all its threads, DuckDB's too) of a block: on a machine
    shared with other work the CPU seconds are the steadier figure of what a step costs."""

    def __enter__(self) -> "Timer":
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu

    @classmethod
    def nan(cls) -> "Timer":
        """A part that did not run on this day."""
        t = cls()
        t.wall = t.cpu = float("nan")
        return t


# -- the world ----------------------------------------------------------------------------------------------

@dataclass
class Songs:
    """The world's songs as the daily files show them: features, extras, first chart day, truth labels."""

    ids: list
    X: "object"          # (n, 14) features in FEATURE_COLUMNS order
    extras: list         # per song: SONG_EXTRAS values
    first_day: "object"  # (n,) date of its first chart
    labels: dict         # spotify_id -> (72,) bool: the world's labels (the truth, never read by the platform)


def make_world(args, staging: Path, truth_dir: Path):
    from hit_platform.generator import generate
    from hit_platform.generator.config import GeneratorConfig
    from hit_platform.generator.taste import TasteShift

    region, day, strength, *toward = args.taste_shift.split(":")
    start = date(2025, 1, 1)
    cfg = GeneratorConfig(out_dir=staging, truth_dir=truth_dir, seed=args.seed, songs=args.songs,
                          history_days=args.history_days, increments=args.days, start_date=start,
                          world_days=args.history_days + args.days + 30, fmt="csv.gz",
                          taste_shift=TasteShift(region, args.history_days - 1 + int(day), float(strength),
                                                 toward[0] if toward else None))
    generate(cfg)
    return cfg


def read_songs(staging: Path) -> Songs:
    import duckdb
    import numpy as np

    from hit_platform.domain.columns import SONG_EXTRAS
    from hit_platform.domain.countries import COUNTRIES
    from hit_platform.domain.features import FEATURE_COLUMNS

    con = duckdb.connect()
    con.execute(f"""CREATE TABLE r AS SELECT * FROM read_csv('{staging}/*.csv.gz', union_by_name = true,
                    all_varchar = true)""")
    feats = ", ".join(f"any_value(try_cast({c} AS DOUBLE)) FILTER (WHERE {c} IS NOT NULL) AS {c}"
                      if c != "is_explicit" else "any_value(lower(is_explicit) = 'true') AS is_explicit"
                      for c in FEATURE_COLUMNS)
    extras = ", ".join(f"any_value({c}) AS {c}" for c in SONG_EXTRAS if c != "spotify_id")
    df = con.execute(f"""SELECT spotify_id, {feats}, {extras}, min(snapshot_date::DATE) AS first_day
                         FROM r WHERE spotify_id IS NOT NULL AND spotify_id <> '' GROUP BY spotify_id
                         ORDER BY spotify_id""").df()
    lab = con.execute("SELECT DISTINCT spotify_id, country FROM r WHERE country IS NOT NULL AND country <> ''").df()
    df = df.dropna(subset=list(FEATURE_COLUMNS)).reset_index(drop=True)
    col = {c: i for i, c in enumerate(COUNTRIES)}
    labels = {i: np.zeros(len(COUNTRIES), bool) for i in df["spotify_id"]}
    for sid, c in zip(lab["spotify_id"], lab["country"]):
        if sid in labels and c in col:
            labels[sid][col[c]] = True
    X = df[list(FEATURE_COLUMNS)].astype(float).to_numpy()
    return Songs(list(df["spotify_id"]), X, [tuple(r) for r in df[list(SONG_EXTRAS)].itertuples(index=False)],
                 df["first_day"].to_numpy(), labels)


# -- the soak -----------------------------------------------------------------------------------------------

class Soak:
    def __init__(self, args, root: Path):
        os.environ.pop("DAGSTER_HOME", None)
        # a fresh lake each run; the world's files (outside the warehouse) are kept and continued, never rewritten
        shutil.rmtree(root / "warehouse", ignore_errors=True)
        os.environ["HIT_WAREHOUSE"] = str(root / "warehouse")
        os.environ.setdefault("HIT_TRAIN_FAMILIES", '["linear"]')
        from hit_platform.cli.dagster_instance import persistent_instance
        from hit_platform.adapters.lake.connection import Lake
        from hit_platform.definitions import build_definitions
        from hit_platform.settings import get_settings

        self.args, self.root, self.clock = args, root, SimClock()
        self.settings = get_settings()
        self.lake = Lake(self.settings)
        self.defs = build_definitions(settings=self.settings)
        self.instance = persistent_instance()
        self.journal = self.settings.warehouse / "bench_journal"
        self.predictor = None
        self.rng = __import__("numpy").random.default_rng(args.seed)
        self.day_now = 0

    # the calendar: day d is the morning after the d-th daily file's date
    def date_of(self, d: int) -> date:
        return self.cfg.start_date + timedelta(days=self.args.history_days + d)

    def at(self, d: int, hh: int, mm: int, ss: int = 0) -> datetime:
        t = datetime.combine(self.date_of(d), datetime.min.time(), timezone.utc) + timedelta(hours=hh, minutes=mm,
                                                                                             seconds=ss)
        self.clock.set(t)
        return t

    def setup(self) -> None:
        staging, truth = self.root / "staging", self.root / "truth"
        self.clock.set(datetime(2025, 1, 1, tzinfo=timezone.utc))
        started = time.perf_counter()
        self.cfg = make_world(self.args, staging, truth)
        self.songs = read_songs(staging)
        print(f"world: seed {self.cfg.seed}, {self.cfg.songs} songs, {self.cfg.history_days} days of history from "
              f"{self.cfg.start_date}, {self.args.days} daily files; taste shift {self.args.taste_shift} "
              f"(soak day {self.shift_day}, {self.date_of(self.shift_day) - timedelta(days=1)}); "
              f"{len(self.songs.ids)} songs charted; {time.perf_counter() - started:.0f} s", flush=True)

    @property
    def shift_day(self) -> int:
        return int(self.args.taste_shift.split(":")[1])

    def land(self, name: str) -> None:
        landing = self.settings.landing_dir
        landing.mkdir(parents=True, exist_ok=True)
        tmp = landing / f".{name}.part"
        shutil.copyfile(self.root / "staging" / name, tmp)
        os.replace(tmp, landing / name)

    def build(self, name: str, retrain: bool) -> tuple[dict, bool]:
        """The day's file ingested as `hit-platform ingest FILE` ingests it (the ingest asset with the raw gates,
        through Dagster; timed alone), then, when the automation is evaluated today, `hit-platform build`'s own
        `build()`: what the automation conditions ask for after that new raw version (a retrain through the
        gates, a champion, its batch predictions). On the other days `build(upto=core/song_labels)`: the songs
        and their labels as the automation asks (each build scope keeps its own cursor, so the wider build later
        still asks for the retrain), so the monitors judge the labels the daily files revealed, as a daemon's
        would, and not the labels of the last retrain."""
        from hit_platform.cli import build as builder
        from hit_platform.cli.pipeline import _materialize_ingest
        from hit_platform.cli.progress import Progress
        from hit_platform.defs.ml.predictions import BATCH_PREDICTIONS

        with Timer() as ingest:
            run = _materialize_ingest(self.settings, Progress("quiet"), [name])
        if not run.success or not all(e.passed for e in run.get_asset_check_evaluations()):
            raise RuntimeError(f"ingest of {name} failed or a raw gate failed on {SimClock.now():%Y-%m-%d}")
        retrained, figures = False, {"ingest_s": ingest.wall, "ingest_cpu_s": ingest.cpu, "retrain_s": float("nan")}
        if not retrain:
            from hit_platform.defs.core import SONG_LABELS

            result = builder.build(self.defs, self.instance, upto=[SONG_LABELS], log_level="CRITICAL")
            if not result.success:
                raise RuntimeError(f"the labels' build failed on {SimClock.now():%Y-%m-%d}: held {result.held}")
        if retrain:
            with Timer() as automation:
                result = builder.build(self.defs, self.instance, upto=[BATCH_PREDICTIONS], log_level="CRITICAL")
            if not result.success:
                raise RuntimeError(f"build failed on {SimClock.now():%Y-%m-%d}: held {result.held}")
            retrained = any(k.to_user_string() == "ml/champion_model" for k in result.materialized)
            figures["retrain_s"] = automation.wall
        return figures, retrained

    def load_champion(self) -> None:
        from hit_platform.adapters.tracking import Tracker
        from hit_platform.serving.predictor import load_predictor

        self.predictor = load_predictor(Tracker(self.settings))

    def start_serving_log(self) -> None:
        from hit_platform.serving.inference_log import InferenceLogger, JournalCommitter

        self.logger = InferenceLogger(self.journal, flush_seconds=self.settings.serving.log_flush_seconds)
        # the committer as the serving process starts it (the log table, the inlining option), its own rounds
        # left to the calendar: every round below is the one its thread would run every 5 s
        self.committer = JournalCommitter(self.lake, self.journal).start(every_seconds=10 * 365 * 86400.0)
        deadline = time.monotonic() + 120
        while self.committer._thread is not None and time.monotonic() < deadline:
            with self.lake.connection(read_only=True) as con:
                if self.lake.table_exists(con, "ops", "inference_log"):
                    break
            time.sleep(0.2)

    def serve_day(self, d: int) -> dict:
        """The day's requests, journaled and committed in --commits-per-day rounds; returns round figures."""
        import numpy as np

        from hit_platform.serving.inference_log import Served

        # the songs whose first chart is nearest the next few days (a label's client asks about the songs it is
        # releasing): distinct songs, so the label-free estimate has its window of served songs to judge
        soon = np.datetime64(self.date_of(d)) + np.timedelta64(3, "D")
        distance = np.abs((self.songs.first_day - soon).astype("timedelta64[D]").astype(int))
        nearest = np.argsort(distance, kind="stable")[: self.args.requests_per_day]
        pick = self.rng.permutation(nearest)
        P = self.predictor.predict(self.songs.X[pick])
        rounds = np.array_split(np.arange(len(pick)), self.args.commits_per_day)
        span = (23 * 60 + 30) * 60 / self.args.commits_per_day
        seconds, cpu, first_id = [], [], None
        for r, part in enumerate(rounds):
            t = self.at(d, 0, 10, int(r * span))
            for j in part:
                rid = uuid.uuid4().hex
                first_id = first_id or rid
                self.logger.log(Served(request_id=rid, received_at=t - timedelta(seconds=float(self.rng.uniform(0, 5))),
                                       endpoint="/predict", status=200, latency_ms=float(self.rng.gamma(4, 1.5)),
                                       model_version=self.predictor.version, X=self.songs.X[pick[j]][None, :],
                                       P=P[j][None, :], extras=[self.songs.extras[pick[j]]]))
            self.logger.flush()
            with Timer() as commit:
                self.committer.commit()
            seconds.append(commit.wall)
            cpu.append(commit.cpu)
        if self.committer.last_error:
            raise RuntimeError(f"the committer failed: {self.committer.last_error}")
        return {"commit_mean_s": float(np.mean(seconds)), "commit_max_s": float(np.max(seconds)),
                "commit_cpu_s": float(np.mean(cpu)),
                "commits": len(seconds), "first_request": first_id}

    def monitors(self) -> tuple[Timer, dict]:
        from hit_platform.defs.ops import (DELAYED_LABELS, PERFORMANCE_ESTIMATE, PREDICTION_DRIFT,
                                           SERVED_FEATURE_DRIFT, SERVING_HEALTH)

        keys = [SERVED_FEATURE_DRIFT, PREDICTION_DRIFT, DELAYED_LABELS, SERVING_HEALTH, PERFORMANCE_ESTIMATE]
        with Timer() as seconds:
            run = self.defs.resolve_implicit_global_asset_job_def().execute_in_process(
                instance=self.instance, asset_selection=keys, raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})
        if not run.success:
            raise RuntimeError(f"the monitors' run failed on {SimClock.now():%Y-%m-%d}")
        event = self.instance.get_latest_materialization_event(DELAYED_LABELS)
        meta = {k: v.value for k, v in event.asset_materialization.metadata.items()} if event else {}
        return seconds, meta

    def coverage(self) -> tuple[int, int]:
        """The newest served estimate's 90% ROC AUC intervals against the AUC the world's labels give the same
        songs, over the countries with enough expected hits: (covered, judged) of the countries whose taste has not
        changed, and (covered, judged) of the shifted region's countries from the shift's day on, apart: a change
        of taste leaves the probabilities as they were, so no label-free estimate can see it (the delayed-label
        monitor's job)."""
        import numpy as np

        from hit_platform.domain.models import evaluate
        from hit_platform.steps import performance_estimates as pe

        with self.lake.connection(read_only=True) as con:
            rows = pe.latest(con, "served")
            if rows.empty or rows["estimated_at"].max() < SimClock.now() - timedelta(hours=1):
                return 0, 0, 0, 0
            head = rows.iloc[0]
            pop = pe.served_population(con, head["model_version"], head["window_start"], head["window_end"])
        keep = [i for i, s in enumerate(pop.spotify_ids) if s in self.songs.labels]
        if len(keep) < 2:
            return 0, 0, 0, 0
        Y = np.array([self.songs.labels[pop.spotify_ids[i]] for i in keep])
        P = pop.P[keep]
        real = evaluate(Y, P)["roc_auc"]
        judged = P.sum(axis=0) >= self.settings.monitors.min_expected_positives
        by = rows.set_index("country")
        from hit_platform.domain.countries import COUNTRIES

        from hit_platform.domain.countries import REGIONS

        region = self.args.taste_shift.split(":")[0]
        moved = set(REGIONS.get(region, ())) if self.day_now >= int(self.args.taste_shift.split(":")[1]) else set()
        counts = [0, 0, 0, 0]
        for j, c in enumerate(COUNTRIES):
            v = real[c]
            if judged[j] and np.isfinite(v) and c in by.index:
                k = 2 if c in moved else 0
                counts[k + 1] += 1
                counts[k] += int(by.loc[c, "lower"] <= v <= by.loc[c, "upper"])
        return tuple(counts)

    def log_query(self, request_id: str) -> Timer:
        from hit_platform.adapters.lake.tables import requests_in_log

        with Timer() as seconds:
            found = requests_in_log(self.lake, [request_id])
        if not found:
            raise RuntimeError(f"request {request_id} served this morning is not in the log")
        return seconds

    def maintenance(self) -> tuple[Timer, bool]:
        with Timer() as seconds:
            run = self.defs.resolve_job_def("maintenance_job").execute_in_process(
                instance=self.instance, raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})
        return seconds, run.success and all(e.passed for e in run.get_asset_check_evaluations())

    def footprint(self) -> dict:
        from hit_platform.adapters.lake import maintenance as upkeep
        from hit_platform.adapters.tracking import Tracker

        with self.lake.connection(read_only=True) as con:
            f = upkeep.footprint(self.lake, con)
            rows = con.execute("SELECT count(*) FROM ops.inference_log").fetchall()[0][0]
        catalog = Path(self.settings.catalog.removeprefix("sqlite:"))
        disk = sum(p.stat().st_size for p in self.settings.warehouse.rglob("*") if p.is_file())
        versions = len(Tracker(self.settings).client.search_model_versions(
            f"name = '{self.settings.mlflow.model_name}'"))
        return {"log_rows": rows, "snapshots": f.snapshots, "data_files": f.data_files,
                "inlined_rows": f.inlined_rows, "catalog_bytes": f.catalog_bytes or 0,
                "catalog_file_bytes": catalog.stat().st_size if catalog.exists() else 0, "disk_bytes": disk,
                "dagster_runs": self.instance.get_runs_count(), "model_versions": versions}

    def day0(self) -> None:
        self.at(0, 0, 5)
        self.land("charts_history.csv.gz")
        started = time.perf_counter()
        self.build("charts_history.csv.gz", retrain=True)
        seconds = time.perf_counter() - started
        self.load_champion()
        self.start_serving_log()
        print(f"day 0 ({self.date_of(0)}): history ingested and the first champion built ({self.predictor.version}) "
              f"in {seconds:.0f} s", flush=True)

    def due(self, d: int, every: int) -> bool:
        """Whether a strided part runs on day d: every `every` days from day 1, and always on the table's days
        and the last one, so the table's rows are whole."""
        return (d - 1) % every == 0 or d in SHOWN_DAYS or d == self.args.days

    def day(self, d: int) -> dict:
        file_date = self.date_of(d) - timedelta(days=1)
        self.at(d, 0, 5)
        name = f"charts_{file_date.isoformat()}.csv.gz"
        self.land(name)
        built, retrained = self.build(name, retrain=(d - 1) % self.args.retrain_every == 0)
        if retrained:
            self.load_champion()
        served = self.serve_day(d)
        first_request = served.pop("first_request")
        nan = Timer.nan()
        monitors, delayed, covered, query = nan, {}, (0, 0, 0, 0), nan
        self.day_now = d
        if self.due(d, self.args.monitor_every):
            self.at(d, 23, 45)
            monitors, delayed = self.monitors()
            covered = self.coverage()
            self.at(d, 23, 50)
            query = self.log_query(first_request)
        maint_s = maint_cpu = float("nan")
        maint_ok = ""
        before = self.footprint()
        before = {f"{k}_before": before[k] for k in ("snapshots", "data_files", "inlined_rows")}
        if self.args.maintenance == "on" and self.due(d, self.args.maintenance_every):
            self.at(d, 23, 55)
            maint, maint_ok = self.maintenance()
            maint_s, maint_cpu = maint.wall, maint.cpu
        summary = str(delayed.get("summary", ""))
        regions = " ".join(re.findall(r"region (\w+): ", summary)) if delayed.get("breached") else ""
        return {"day": d, "date": file_date.isoformat(), "retrained": int(retrained),
                "champion": self.predictor.version, **built, "monitors_s": monitors.wall,
                "monitors_cpu_s": monitors.cpu, "log_query_s": query.wall, "log_query_cpu_s": query.cpu, **served,
                **before, **self.footprint(), "maintenance_s": maint_s, "maintenance_cpu_s": maint_cpu,
                "maintenance_ok": maint_ok, "delayed_label_regions": regions,
                "delayed_label_summary": summary[:300], "estimate_covered": covered[0], "estimate_judged": covered[1],
                "estimate_covered_shifted": covered[2], "estimate_judged_shifted": covered[3]}


# -- the report ---------------------------------------------------------------------------------------------

def read_rows(out: Path) -> list[dict]:
    with open(out / "year.csv") as f:
        return [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _num(v: str):
    try:
        return float(v) if any(ch in v for ch in ".en") else int(v)
    except ValueError:
        return v


def _fmt(col: str, v) -> str:
    if isinstance(v, str):
        return v
    if col.endswith("_bytes"):
        return f"{v / 2**20:,.1f}M"
    if col.endswith("_s"):
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return f"{v:,.0f}"


def report(out: Path, meta: dict) -> dict:
    rows = read_rows(out)
    if not rows:
        print("no day recorded yet")
        return {}
    by_day = {int(r["day"]): r for r in rows}
    last = max(by_day)
    shown = [d for d in SHOWN_DAYS if d in by_day] + ([last] if last not in SHOWN_DAYS else [])
    cols = ("ingest_s", "ingest_cpu_s", "monitors_s", "monitors_cpu_s", "log_query_s", "log_query_cpu_s",
            "commit_mean_s", "commit_cpu_s", "commit_max_s", "maintenance_s", "maintenance_cpu_s", "retrain_s",
            "snapshots", "data_files", "inlined_rows_before", "catalog_bytes", "catalog_file_bytes", "disk_bytes",
            "log_rows", "dagster_runs", "model_versions")
    print(f"\nbench_year: maintenance {meta.get('maintenance')}, {len(rows)} days recorded ({out / 'year.csv'})")
    # a single day's seconds move with whatever else shares the machine: the target is judged on the median of
    # the first week's days against the last week's (the days each part ran)
    # and once every window is full (the log's 30 days, the estimates realized over 60): days 61-67 against
    # the last week, what a platform in service pays as its days go on
    full = range(61, 68) if last >= 74 else None
    print(f"{'':20}" + "".join(f"{'day ' + str(d):>11}" for d in shown) + f"{'ratio':>9}{'weeks':>9}"
          + (f"{'full':>9}" if full else ""))
    first = by_day[min(by_day)]
    ratios = {}

    def week(c: str, days: range) -> float:
        v = [by_day[d][c] for d in days if d in by_day and isinstance(by_day[d][c], (int, float))]
        v = [x for x in v if x == x]
        return float(statistics.median(v)) if v else float("nan")

    for c in [c for c in cols if c in first]:
        a, b = first[c], by_day[last][c]
        ratio = b / a if isinstance(a, (int, float)) and a and isinstance(b, (int, float)) else float("nan")
        a7, b7 = week(c, range(min(by_day), min(by_day) + 7)), week(c, range(last - 6, last + 1))
        weekly = b7 / a7 if a7 else float("nan")
        ratios[c] = weekly
        mark = "" if c not in TARGETS else ("  ok" if weekly <= TARGETS[c] else f"  > {TARGETS[c]}x")
        steady = b7 / week(c, full) if full and week(c, full) else float("nan")
        print(f"{c:20}" + "".join(f"{_fmt(c, by_day[d][c]):>11}" for d in shown) + f"{ratio:8.2f}x{weekly:8.2f}x"
              + (f"{steady:8.2f}x" if full else "") + mark)
    _plot(rows, out)
    fired = next((int(r["day"]) for r in rows if r["delayed_label_regions"]), None)
    region = meta.get("taste_shift", "").split(":")[0]
    fired_region = next((int(r["day"]) for r in rows if region and region in str(r["delayed_label_regions"])), None)
    covered, judged = (sum(int(r.get(k) or 0) for r in rows) for k in ("estimate_covered", "estimate_judged"))
    moved, moved_judged = (sum(int(r.get(k) or 0) for r in rows)
                           for k in ("estimate_covered_shifted", "estimate_judged_shifted"))
    print(f"regional taste shift ({meta.get('taste_shift')}): begins on day {meta.get('shift_day')}; the per-region "
          f"delayed-label alert fires on day {fired_region if fired_region else 'never'}"
          + (f" (first region alert of any region: day {fired})" if fired and fired != fired_region else ""))
    print(f"label-free estimate, 90% ROC AUC intervals: covered the truth in {covered / max(judged, 1):.1%} of "
          f"{judged} country-windows ({sum(1 for r in rows if int(r['estimate_judged']))} daily windows; "
          f"target >= 88%); the shifted region after the shift, which no label-free estimate can see: "
          f"{moved / max(moved_judged, 1):.1%} of {moved_judged}")
    print(f"plot: {out / 'year.png'}")
    return {"ratios": ratios, "alert_day": fired_region, "coverage": covered / max(judged, 1)}


def _plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [r["day"] for r in rows]
    panels = [("CPU seconds", ("ingest_cpu_s", "monitors_cpu_s", "log_query_cpu_s", "commit_cpu_s",
                               "maintenance_cpu_s")),
              ("count", ("snapshots", "data_files", "dagster_runs")),
              ("MiB", ("catalog_bytes", "catalog_file_bytes", "disk_bytes"))]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 9), sharex=True)
    for ax, (unit, cols) in zip(axes, panels):
        for c in cols:
            ys = [r[c] if isinstance(r.get(c), (int, float)) else float("nan") for r in rows]
            ax.plot(days, [y / 2**20 for y in ys] if unit == "MiB" else ys, label=c)
        ax.set_ylabel(unit)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("simulated day")
    fig.suptitle(f"bench_year: {out.name}")
    fig.tight_layout()
    fig.savefig(out / "year.png", dpi=90)
    plt.close(fig)


# -- main ---------------------------------------------------------------------------------------------------

def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--maintenance", choices=("on", "off"), default="on")
    ap.add_argument("--out", type=Path, default=None, help="default warehouse/bench/year-<maintenance>")
    ap.add_argument("--songs", type=int, default=3000)
    ap.add_argument("--history-days", type=int, default=30)
    ap.add_argument("--taste-shift", default="latam:120:0.5:anglo", help="REGION:DAY:STRENGTH[:TOWARD], DAY a soak day")
    ap.add_argument("--requests-per-day", type=int, default=300, help="distinct songs served a day, one request each "
                    "(the monitors judge from HIT_MONITOR_MIN_ROWS, 200, songs in their 24-hour window)")
    ap.add_argument("--commits-per-day", type=int, default=48)
    ap.add_argument("--retrain-every", type=int, default=1, help="evaluate the automation every N days")
    ap.add_argument("--monitor-every", type=int, default=1, help="the monitors, the estimate's coverage and the log "
                    "query every N days (and on days 1, 30, 90, 180, 365 and the last): a shorter run of a long year")
    ap.add_argument("--maintenance-every", type=int, default=1, help="maintenance_job every N days (same days kept)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--report", type=Path, default=None, help="print the report of a run's folder and stop")
    args = ap.parse_args(argv)
    for name in ("days", "songs", "history_days", "requests_per_day", "commits_per_day", "retrain_every",
                 "monitor_every", "maintenance_every"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    parts = args.taste_shift.split(":")
    if len(parts) not in (3, 4) or not parts[1].isdigit():
        ap.error(f"--taste-shift {args.taste_shift!r}: expected REGION:DAY:STRENGTH[:TOWARD]")
    if args.requests_per_day < args.commits_per_day:
        ap.error("--requests-per-day must be at least --commits-per-day (a round commits at least one request)")
    return args


def main(argv=None) -> None:
    args = parse(argv)
    if args.report is not None:
        report(args.report, json.loads((args.report / "meta.json").read_text()))
        return
    under_faketime()
    out = (args.out or REPO / "warehouse" / "bench" / f"year-{args.maintenance}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    meta = {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "shift_day": int(args.taste_shift.split(":")[1]), "started": datetime.now().isoformat()}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    soak = Soak(args, out)
    soak.setup()
    soak.day0()
    with open(out / "year.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for d in range(1, args.days + 1):
            started = time.perf_counter()
            row = soak.day(d)
            writer.writerow(row)
            f.flush()
            print(f"day {d:3d} {row['date']}: {time.perf_counter() - started:5.1f} s; ingest {row['ingest_s']:.2f} s, "
                  f"monitors {row['monitors_s']:.2f} s, commit {row['commit_mean_s'] * 1000:.0f} ms, "
                  f"{row['snapshots']} snapshots, {row['data_files']} files, catalog "
                  f"{row['catalog_bytes'] / 2**20:.1f} MiB, disk {row['disk_bytes'] / 2**20:.0f} MiB"
                  + (f", retrained -> {row['champion']}" if row["retrained"] else "")
                  + (f"; ALERT {row['delayed_label_regions']}" if row["delayed_label_regions"] else ""), flush=True)
    soak.committer.close()
    report(out, meta)


if __name__ == "__main__":
    main()
