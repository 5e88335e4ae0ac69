"""`hit-platform generate`, `feed` and `demo`: the synthetic world (a chart dump with a hidden
truth), its daily files landed up to yesterday, and the demo that lands them, builds what they make new and
shows the lake, the champion and one real prediction."""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from datetime import date
from pathlib import Path

from hit_platform.cli.operations import print_champion
from hit_platform.cli.pipeline import build_pending, print_lake_summary
from hit_platform.cli.serving import print_prediction
from hit_platform.settings import Settings


def _parse_faults(items: list[str]) -> dict[str, int]:
    from hit_platform.generator import FAULT_KINDS

    faults: dict[str, int] = {}
    for item in items:
        kind, _, count = item.partition("=")
        if kind == "all":
            faults.update({k: int(count or 1) for k in FAULT_KINDS})
            continue
        if kind not in FAULT_KINDS:
            raise SystemExit(f"--fault {item}: unknown fault kind {kind!r}; known: all, {', '.join(FAULT_KINDS)}")
        try:
            faults[kind] = int(count or 1)
        except ValueError:
            raise SystemExit(f"--fault {item}: count must be an integer, e.g. {kind}=5") from None
        if faults[kind] < 0:
            raise SystemExit(f"--fault {item}: count must be >= 0")
    return faults


def _generator_config(args: argparse.Namespace, out: Path, truth: Path):
    from hit_platform.generator import GeneratorConfig
    from hit_platform.generator.feed import DAILY_FILES

    world_days = args.world_days if args.world_days is not None else args.history_days + DAILY_FILES
    return GeneratorConfig(out_dir=out, truth_dir=truth, seed=args.seed, songs=args.songs,
                           history_days=args.history_days, increments=args.increments, world_days=world_days,
                           start_date=args.start_date, fmt=args.fmt, csv_quoting=args.csv_quoting,
                           countries=args.countries, faults=_parse_faults(args.fault),
                           taste_shift=getattr(args, "taste_shift", None), world_name=args.world_name)


def _print_files(manifest: dict) -> None:
    data = [f for f in manifest["files"] if f["kind"] != "fault"]
    new = [f for f in data if f.get("status") == "new"]
    kept = len(data) - len(new)
    print(f"   {len(new)} new file(s), {sum(f['rows'] for f in new):,} rows"
          + (f"; {kept} already in place with the same bytes, left as they were" if kept else "")
          + f"; the world runs {manifest['window']['start_date']} .. {manifest['world']['end_date']}, "
            f"landed up to {manifest['window']['end_date']}")


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    out = Path(args.out) if args.out else settings.landing_dir
    truth = Path(args.truth_dir) if args.truth_dir else out.parent / "generator"
    from hit_platform.generator import generate

    from hit_platform.generator.dump import OtherWorld

    try:
        config = _generator_config(args, out, truth)
        manifest = generate(config)
    except (OtherWorld, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"generated into {out}:")
    _print_files(manifest)
    print(f"oracle and manifest (never read by the pipeline): {truth}")
    injected = {k: v["count"] for k, v in manifest.get("faults", {}).items() if v.get("count")}
    if injected:
        print("faults injected: " + ", ".join(f"{k}={v}" for k, v in injected.items()))
    return 0


def _land_feed(args: argparse.Namespace, settings: Settings, step: str = ""):
    """Land the demo world's daily files up to yesterday and return what landed (`feed.FeedDay`); None (after
    saying why) when it cannot."""
    from hit_platform.generator import generate
    from hit_platform.generator.dump import OtherWorld
    from hit_platform.generator.feed import feed_day

    asked = {k: getattr(args, k) for k in ("seed", "songs", "history_days", "increments", "start_date",
                                           "world_days", "fmt", "csv_quoting", "countries", "world_name")}
    try:
        day = feed_day(settings.landing_dir, settings.generator_dir, date.today(),
                       _parse_faults(args.fault) if args.fault is not None else None, **asked)
        cfg = day.config
        if day.first_run:
            print(f"{step}a new world (seed {cfg.seed}, {cfg.start_date} .. {cfg.world_end_date}): its history and "
                  f"daily files up to yesterday into {settings.landing_dir}")
        elif day.new_files:
            print(f"{step}the world of seed {cfg.seed} ({cfg.start_date} .. {cfg.world_end_date}): "
                  f"{day.new_files} new daily file(s) since the last run")
        else:
            print(f"{step}the world of seed {cfg.seed}: no new day since the last run (landed up to {cfg.end_date})")
        if day.new_files:
            _print_files(generate(cfg))
    except (OtherWorld, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    if day.ended:
        print(f"   the world ended on {cfg.world_end_date}: it has no more daily files, so the data grows old and "
              "the freshness gate will fail. Start a new world in an empty warehouse (HIT_WAREHOUSE=...)")
    return day


def cmd_feed(args: argparse.Namespace, settings: Settings) -> int:
    return 0 if _land_feed(args, settings) is not None else 2


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.adapters.tracking import prepare_store
    from hit_platform.defs.serving import DEPLOYMENT

    p = args.progress
    # MLflow makes a new store's tables in ~5 s: here, beside the world's generation and the ingest, not
    # at the start of the training (adapters.tracking makes them once, under a lock)
    multiprocessing.get_context("spawn").Process(target=prepare_store, args=(settings,), daemon=True).start()
    day = _land_feed(args, settings, step="== 1/2 ")
    if day is None:
        return 2
    if day.first_run:  # Ray and Serve start beside the build, not after its training (~20 s off the prediction)
        _warm_serving(settings, p)
    p.say("== 2/2 building the asset graph through Dagster (what the daemon's rules ask for: new files, new data, "
          "new code); the prediction comes as soon as the champion is served")
    shown = []

    def show_the_served_champion() -> None:  # while the build goes on to the monitors and the dashboard
        shown.append(_show_served(settings, p))
        p.say("   (the build goes on: the monitors and the dashboard)")

    p.when_done(DEPLOYMENT.to_user_string(), show_the_served_champion)
    try:
        ok = build_pending(settings, p)
    finally:
        _end_warm_serving(settings, p)
    if not shown:  # nothing new to serve: the champion already served
        _show_served(settings, p)
    print_lake_summary(settings)
    from hit_platform.adapters.lake.connection import Lake

    init = Lake(settings).write_init_file()
    p.say(f"\nopen the lake: .venv/bin/duckdb -init {init}    or: .venv/bin/hit-platform sql \"SELECT ...\"")
    p.say("see the assets: .venv/bin/dagster dev   (from the repository root; its daemon runs the sensors and "
          "automation)")
    board = settings.warehouse / "reports" / "dashboard.html"
    if board.exists():
        p.say(f"dashboard: {board}    or live: .venv/bin/hit-platform dashboard")
    return 0 if ok else 1


def _warm_serving(settings: Settings, p) -> None:
    """Start the serving process before there is a champion (it deploys the first one `serving/deployment`
    asks for); a port already taken is left for that asset to report."""
    from hit_platform.serving import process

    try:
        if not process.status(settings).running:
            process.start(settings, warm=True)
    except process.ServingError as exc:
        p.line(f"   serving not started ahead of the champion: {exc}")


def _end_warm_serving(settings: Settings, p) -> None:
    """A build that ended with no champion served (a failed gate) leaves no warm process behind."""
    from hit_platform.serving import process

    if process.status(settings).state == "warm":
        process.stop(settings)
        p.say("   serving stopped: no champion was deployed")


def _show_served(settings: Settings, p) -> bool:
    """The champion and one real prediction from the serving process, if it runs."""
    from hit_platform.serving import process

    print_champion(settings)
    st = process.status(settings)
    if not st.running:
        return False
    print_prediction(st.endpoint)
    p.say("stop serving: .venv/bin/hit-platform stop")
    return True
