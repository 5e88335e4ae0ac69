"""`hit-platform`: the project's command line.

    hit-platform demo                 the main job on the embedded defaults
    hit-platform feed                 land the demo world's new daily files (demo's first step)
    hit-platform generate --out DIR   a synthetic chart dump (clean unless faults are asked for)
    hit-platform ingest [FILE ...]    ingest landing files through Dagster
    hit-platform build [--all]        materialize what is stale or missing, with its quality gates
    hit-platform status               what the lake holds
    hit-platform sql [QUERY]          analyst SQL on the lake, read-only
    hit-platform serve | stop         serve the champion on 127.0.0.1:8000 (without Dagster) / stop it
    hit-platform audit ID             where a served or batch prediction came from
    hit-platform alerts               run failures, gate failures and monitor breaches
    hit-platform monitor              the label-free performance estimate per country, worst first
    hit-platform rollback --reason    the champion back to the previous one, served in place
    hit-platform rebuild              refit a version from its lake snapshot, or train from a past one
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path

from hit_platform.adapters.alerts import KINDS as ALERT_KINDS
from hit_platform.settings import Settings, get_settings


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


def _add_generator_args(p: argparse.ArgumentParser, settings: Settings) -> None:
    from hit_platform.generator.feed import DAILY_FILES

    p.add_argument("--seed", type=int, default=42, help="random seed; same seed, same bytes (default 42)")
    p.add_argument("--songs", type=int, default=20_000, help="song catalogue size (default 20000)")
    p.add_argument("--history-days", type=int, default=120, help="days in the historical dump (default 120)")
    p.add_argument("--increments", type=int, default=3, help="daily increment files after it (default 3)")
    p.add_argument("--world-days", type=int, default=None,
                   help=f"days in the world: the history and every daily file it can have (default: history "
                        f"days + {DAILY_FILES}). The same world with more --increments writes only its next days")
    p.add_argument("--start-date", type=date.fromisoformat, default=date(2024, 1, 1),
                   help="first chart day, YYYY-MM-DD (default 2024-01-01)")
    p.add_argument("--format", dest="fmt", choices=("csv", "csv.gz", "parquet"), default="csv.gz")
    p.add_argument("--csv-quoting", choices=("minimal", "all"), default="minimal",
                   help="'all': the public Kaggle file's style (every field quoted, nulls as \"\"); default minimal")
    p.add_argument("--countries", type=int, default=None,
                   help="only the first N of the 72 countries (tiny smoke dumps); default all")
    p.add_argument("--fault", action="append", default=[], metavar="KIND[=COUNT]",
                   help="inject a fault (repeatable); KIND 'all' injects every kind. Row faults are spread "
                        "evenly over the world's files")
    p.add_argument("--taste-shift", metavar="REGION:DAY:STRENGTH[:TOWARD]", default=None,
                   help="a change of taste (a concept shift): from DAY (days after --start-date) the countries of "
                        "REGION judge the songs released from then on by their region's taste moved STRENGTH "
                        "(0-1) of the way toward TOWARD's (another region; default: reversed). Default: none")


def _add_demo_args(p: argparse.ArgumentParser) -> None:
    """The demo's world: given on its first run only; later runs continue the world already there."""
    from hit_platform.generator.feed import DAILY_FILES, DEFAULT_FAULTS, DEFAULTS

    p.add_argument("--seed", type=int, help=f"random seed of the world (default {DEFAULTS['seed']})")
    p.add_argument("--songs", type=int, help=f"song catalogue size (default {DEFAULTS['songs']})")
    p.add_argument("--history-days", type=int,
                   help=f"days in the first run's historical file (default {DEFAULTS['history_days']})")
    p.add_argument("--increments", type=int,
                   help=f"daily files the first run lands after the history (default {DEFAULTS['increments']})")
    p.add_argument("--start-date", type=date.fromisoformat,
                   help="the world's first chart day (default: the first run picks it so that the history and "
                        "its daily files end yesterday; later runs keep it)")
    p.add_argument("--world-days", type=int,
                   help=f"days in the world (default: history days + {DAILY_FILES}: the daily files that can "
                        "still land, one per later day)")
    p.add_argument("--format", dest="fmt", choices=("csv", "csv.gz", "parquet"),
                   help=f"landing file format (default {DEFAULTS['fmt']})")
    p.add_argument("--csv-quoting", choices=("minimal", "all"),
                   help="'all': the public Kaggle file's style (default minimal)")
    p.add_argument("--countries", type=int, help="only the first N of the 72 countries (default all)")
    p.add_argument("--fault", action="append", metavar="KIND[=COUNT]",
                   help="faults of the world, spread over its files (default: "
                        + " ".join(f"{k}={v}" for k, v in DEFAULT_FAULTS.items()) + ")")


def _generator_config(args: argparse.Namespace, out: Path, truth: Path):
    from hit_platform.generator import GeneratorConfig
    from hit_platform.generator.feed import DAILY_FILES

    world_days = args.world_days if args.world_days is not None else args.history_days + DAILY_FILES
    return GeneratorConfig(out_dir=out, truth_dir=truth, seed=args.seed, songs=args.songs,
                           history_days=args.history_days, increments=args.increments, world_days=world_days,
                           start_date=args.start_date, fmt=args.fmt, csv_quoting=args.csv_quoting,
                           countries=args.countries, faults=_parse_faults(args.fault),
                           taste_shift=getattr(args, "taste_shift", None))


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


def _materialize_ingest(settings: Settings, files: list[str] | None = None):
    import dagster as dg

    from hit_platform.cli.dagster_instance import persistent_instance
    from hit_platform.defs.raw import ingest_chart_files
    from hit_platform.defs.resources import LakeResource

    run_config = {"ops": {"ingest_chart_files": {"config": {"files": files or []}}}}
    result = dg.materialize([ingest_chart_files], instance=persistent_instance(),
                            resources={"lake": LakeResource(warehouse=str(settings.warehouse))},
                            run_config=run_config, raise_on_error=True)
    return result


def _definitions(settings: Settings):
    from hit_platform.definitions import build_definitions

    return build_definitions(settings=settings)


def _build(settings: Settings, everything: bool = False) -> bool:
    """Build what is stale; True when every run succeeded and no failed gate holds anything back."""
    from hit_platform.cli.build import build, report
    from hit_platform.cli.dagster_instance import persistent_instance

    return report(build(_definitions(settings), persistent_instance(), everything=everything,
                        log_level="WARNING"))


def cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    print("== building what is stale or missing" if not args.all else "== building every asset")
    ok = _build(settings, everything=args.all)
    _print_summary(settings)
    return 0 if ok else 1


def _print_summary(settings: Settings) -> None:
    from hit_platform.steps.ingest import lake_summary
    from hit_platform.adapters.lake.connection import Lake

    lake = Lake(settings)
    with lake.connection(read_only=True) as con:
        s = lake_summary(lake, con)
    print(f"\nlake snapshot id: {s['snapshot_id']}")
    print("rows per table:")
    for table, n in s["rows"].items():
        print(f"  {table:<28} {n:>12,}")
    if s.get("files_by_status"):
        print("landed files: " + ", ".join(f"{k}={v}" for k, v in s["files_by_status"].items()))
    print("quarantined rows by reason:" + ("" if s.get("quarantined_by_reason") else " none"))
    for reason, n in s.get("quarantined_by_reason", {}).items():
        print(f"  {reason:<28} {n:>12,}")
    for f in s.get("rejected_files", []):
        print(f"rejected file {f['file']}: {f['reason']}")


def _print_champion(settings: Settings) -> None:
    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.adapters.lake.tables import evaluations
    from hit_platform.adapters.tracking import Tracker

    tracker = Tracker(settings)
    info = tracker.champion_info()
    if info is None:
        print("\nno champion model yet")
        return
    lake = Lake(settings)
    with lake.connection(read_only=True) as con:
        judged = evaluations(con, candidate_version=info.version, promoted_only=True)
    print(f"\nchampion: {info.name} version {info.version} (MLflow run {info.run_id})")
    if judged:
        e = judged[-1]
        print(f"  family {e.candidate_family}; on {e.test_songs:,} test songs: mean ROC AUC "
              f"{e.candidate_mean_roc_auc:.4f} (baseline {e.baseline_mean_roc_auc:.4f}), "
              f"mean log loss {e.candidate_mean_log_loss:.4f}")
        if e.oracle_mean_roc_auc is not None:
            print(f"  vs the oracle (the best possible): AUC {e.candidate_mean_roc_auc:.4f} / "
                  f"{e.oracle_mean_roc_auc:.4f} = {e.auc_ratio_to_oracle:.3f}, "
                  f"log loss ratio {e.log_loss_ratio_to_oracle:.3f}")
    store = settings.tracking_uri
    print(f"  open it in MLflow: .venv/bin/mlflow ui --backend-store-uri {store} "
          f"--default-artifact-root {settings.mlflow_artifacts} --host 127.0.0.1 --port 5000")


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    result = _materialize_ingest(settings, args.files)
    print(f"dagster run {result.run_id}: {'success' if result.success else 'failed'}")
    _print_summary(settings)
    return 0 if result.success else 1


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    _print_summary(settings)
    return 0


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.adapters.lake.connection import Lake

    lake = Lake(settings)
    if not args.query:
        init = lake.write_init_file()
        duckdb_cli = Path(sys.executable).parent / "duckdb"
        os.execv(str(duckdb_cli), [str(duckdb_cli), "-init", str(init)])
    with lake.connection(read_only=True) as con:
        rel = con.sql(args.query)
        if rel is None:
            return 0
        if args.json:
            cols = rel.columns
            for row in rel.fetchall():
                print(json.dumps(dict(zip(cols, row)), default=str))
        else:
            rel.show(max_rows=args.max_rows)
    return 0


def _land_feed(args: argparse.Namespace, settings: Settings, step: str = "") -> bool:
    """Land the demo world's daily files up to yesterday; False (after saying why) when it cannot."""
    from hit_platform.generator import generate
    from hit_platform.generator.dump import OtherWorld
    from hit_platform.generator.feed import feed_day

    asked = {k: getattr(args, k) for k in ("seed", "songs", "history_days", "increments", "start_date",
                                           "world_days", "fmt", "csv_quoting", "countries")}
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
        return False
    if day.ended:
        print(f"   the world ended on {cfg.world_end_date}: it has no more daily files, so the data grows old and "
              "the freshness gate will fail. Start a new world in an empty warehouse (HIT_WAREHOUSE=...)")
    return True


def cmd_feed(args: argparse.Namespace, settings: Settings) -> int:
    return 0 if _land_feed(args, settings) else 2


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    if not _land_feed(args, settings, step="== 1/2 "):
        return 2
    print("== 2/2 building the asset graph through Dagster (only what is stale or missing)")
    ok = _build(settings)
    _print_summary(settings)
    from hit_platform.adapters.lake.connection import Lake

    _print_champion(settings)
    if ok:
        from hit_platform.serving import process

        st = process.status(settings)
        if st.running:
            _print_prediction(st.endpoint)
            print("stop serving: .venv/bin/hit-platform stop")
    init = Lake(settings).write_init_file()
    print(f"\nopen the lake: .venv/bin/duckdb -init {init}    or: .venv/bin/hit-platform sql \"SELECT ...\"")
    print("see the assets: .venv/bin/dagster dev   (from the repository root; its daemon runs the sensors and automation)")
    board = settings.warehouse / "reports" / "dashboard.html"
    if board.exists():
        print(f"dashboard: {board}")
    return 0 if ok else 1


SAMPLE_SONG = {"danceability": 0.72, "energy": 0.81, "key": 5, "loudness": -5.2, "mode": 1, "speechiness": 0.06,
               "acousticness": 0.12, "instrumentalness": 0.0, "liveness": 0.11, "valence": 0.64, "tempo": 122.0,
               "time_signature": 4, "duration_ms": 201000, "is_explicit": False}


def _curl(endpoint: str) -> str:
    return (f"curl -s -X POST '{endpoint}/predict?top_k=5' -H 'content-type: application/json' "
            f"-d '{json.dumps(SAMPLE_SONG)}'")


def _print_prediction(endpoint: str) -> None:
    import httpx

    r = httpx.post(f"{endpoint}/predict", params={"top_k": 5}, json=SAMPLE_SONG, timeout=30)
    r.raise_for_status()
    body = r.json()
    print(f"\none real prediction over HTTP (request {body['request_id']}, model version {body['model_version']}):")
    for t in body["top_countries"]:
        print(f"  {t['country']}  {t['probability']:.3f}")
    print(f"repeat it:  {_curl(endpoint)}")
    print(f"trace it:   .venv/bin/hit-platform audit {body['request_id']}")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.serving import process

    endpoint = process.start(settings)
    st = process.status(settings)
    print(f"serving model version {st.model_version} at {endpoint} (pid {st.pid}; log {st.log_file})")
    print(f"try it:  {_curl(endpoint)}")
    return 0


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.serving import process

    print("stopped" if process.stop(settings) else "was not running")
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.adapters.reports.audit import AuditError, audit

    try:
        report = audit(settings, args.id)
    except AuditError as exc:  # not found, or the log holds inconsistent rows for it
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        width = max(len(k) for k in report)
        for k, v in report.items():
            print(f"{k:<{width}}  {v}")
    return 0


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.cli.rebuild import rebuild_version, train_from_snapshot

    if args.snapshot is not None:
        return train_from_snapshot(settings, args.snapshot)
    return rebuild_version(settings, args.model_version, allow_code_change=args.allow_code_change)


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.adapters.alerts import list_alerts
    from hit_platform.adapters.lake.connection import Lake

    alerts = list_alerts(Lake(settings), limit=args.limit, kind=args.kind)
    if not alerts:
        print("no alerts")
    for a in alerts:
        print(f"{a['raised_at']:%Y-%m-%d %H:%M:%S}  {a['severity']:<7}  {a['kind']:<15}  {a['where']}  "
              f"{a['what']}" + (f"  (run {a['dagster_run_id']})" if a["dagster_run_id"] else ""))
    return 0



def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.cli.dagster_instance import persistent_instance
    from hit_platform.cli.rollback import RollbackRefused, rollback
    from hit_platform.serving.process import ServingError

    try:
        result = rollback(settings, reason=args.reason, to=args.to, instance=persistent_instance())
    except RollbackRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except ServingError as exc:  # the alias moved and is recorded; the running process did not follow
        print(f"rolled back in the registry, but serving did not follow: {exc}", file=sys.stderr)
        return 1
    if result.event is None:
        print(result.serving)
        return 0
    e = result.event
    print(f"rolled back: champion version {result.from_version} -> {result.to_version} by {e.who} "
          f"({e.event_at:%Y-%m-%d %H:%M:%S} UTC): {e.reason}")
    print(f"serving: {result.serving}")
    return 0


def cmd_monitor(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.steps.performance_estimates import latest

    df = latest(Lake(settings), source=args.source, metric=args.metric)
    if df.empty:
        print("no performance estimates yet: ops/performance_estimate makes them (it runs with the monitors: "
              "`hit-platform build`, or `dagster dev`'s automation)")
        return 0
    df = df.head(args.limit) if args.limit else df
    if args.json:
        for r in df.to_dict("records"):
            print(json.dumps({k: (v.isoformat() if hasattr(v, "isoformat") else None if v != v else v)
                              for k, v in r.items()}, default=str))
        return 0
    first = df.iloc[0]
    name = "ROC AUC" if args.metric == "roc_auc" else "log loss"
    span = ("" if first["source"] == "batch" else
            f" of {first['window_start']:%Y-%m-%d %H:%M} - {first['window_end']:%Y-%m-%d %H:%M} UTC")
    print(f"estimated {name} of model version {first['model_version']} without labels: {first['songs']:,} "
          f"{first['source']} songs{span} (estimated {first['estimated_at']:%Y-%m-%d %H:%M:%S} UTC), worst first")
    print(f"{'country':<8} {'estimate':>8}  {'90% interval':<16} {'test':>6} {'change':>7}  realized (songs)")
    for r in df.itertuples():
        real = "" if r.realized is None or r.realized != r.realized else f"{r.realized:.3f} ({int(r.realized_songs):,})"
        print(f"{r.country:<8} {r.estimate:8.3f}  [{r.lower:.3f}, {r.upper:.3f}]   {r.reference:6.3f} "
              f"{r.estimate - r.reference:+7.3f}  {real}")
    return 0


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hit-platform", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="land the demo world's days up to yesterday, build, serve, predict",
                       description="The main job. The first run makes a world (a chart dump with a hidden truth) "
                                   "whose history and first daily files end yesterday; each later run lands the "
                                   "daily files of the days since, never rewriting one, and builds what is stale.")
    _add_demo_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("feed", help="land the demo world's new daily files up to yesterday (demo's first step)",
                       description="What `demo` does before it builds: the first run makes the world, each later "
                                   "run writes the daily files of the days since into the landing folder (the "
                                   "landing sensor of `dagster dev` ingests them). Files already there are never "
                                   "rewritten.")
    _add_demo_args(p)
    p.set_defaults(func=cmd_feed)

    p = sub.add_parser("generate", help="write a synthetic chart dump (clean unless --fault)")
    p.add_argument("--out", help=f"landing folder (default {settings.landing_dir})")
    p.add_argument("--truth-dir", help="oracle + manifest folder (default: OUT/../generator)")
    _add_generator_args(p, settings)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("ingest", help="ingest landing files (all new ones by default) through Dagster")
    p.add_argument("files", nargs="*", help="file names in the landing folder")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("build", help="materialize every stale or missing asset, with its quality gates")
    p.add_argument("--all", action="store_true", help="materialize every asset, stale or not")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("serve", help="serve the current champion on 127.0.0.1 (HIT_SERVE_PORT, default 8000)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("stop", help="stop the serving process (flushes the inference log)")
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser("audit", help="model version, MLflow run, Dagster run, lake snapshot of a prediction")
    p.add_argument("id", help="a request_id from the HTTP API or a prediction_id of ml.batch_predictions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("rebuild", help="refit a model version from its lake snapshot and compare it byte for byte, "
                                      "or train candidates from a past snapshot",
                       description="--model-version V: refit V from what the registry says it was built from (lake "
                                   "snapshot by time travel, splits, family, parameters, seed) and compare the "
                                   "prediction bytes with the registered model; exit 0 identical, 1 differs, 2 "
                                   "cannot (unknown version, expired snapshot, no lake, other code unless "
                                   "--allow-code-change). --snapshot N: train candidates from lake snapshot N and "
                                   "send them through evaluation and the promotion gate like any candidate.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model-version", metavar="V", help="a registered version of the model")
    what.add_argument("--snapshot", metavar="N", type=int, help="a lake snapshot id to train candidates from")
    p.add_argument("--allow-code-change", action="store_true",
                   help="rebuild V even when this checkout's git commit is not the one V was built from")
    p.set_defaults(func=cmd_rebuild)
    p = sub.add_parser("alerts", help="the latest alerts (ops.alerts)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--kind", choices=ALERT_KINDS)
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("rollback", help="the champion back to the previous one (or --to a former champion)",
                       description="Moves the registry's champion alias back to the champion the current one "
                                   "replaced, or to --to VERSION if that version was champion before (a version "
                                   "never promoted goes through the gates instead); records who, when, from, to "
                                   "and why in ops.model_events; swaps the running serving process in place.")
    p.add_argument("--to", metavar="VERSION", help="a model version that was champion before")
    p.add_argument("--reason", required=True, help="why (kept in ops.model_events)")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("monitor", help="the latest label-free performance estimate per country, worst first",
                       description="ROC AUC (or log loss) per country of the serving model on the songs it served "
                                   "in the monitoring window (or its latest batch), estimated from its own "
                                   "probabilities before labels arrive, with 90%% intervals, the value on its test "
                                   "split, and the realized value once the labels are in the lake.")
    p.add_argument("--source", choices=("served", "batch"), help="default: the newest estimate, served first")
    p.add_argument("--metric", choices=("roc_auc", "log_loss"), default="roc_auc")
    p.add_argument("--limit", type=int, default=0, help="show the N worst countries (default: all 72)")
    p.add_argument("--json", action="store_true", help="one JSON object per country")
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("status", help="rows per table, quarantine by reason, snapshot id")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("sql", help="run SQL on the lake read-only (no query: open the duckdb CLI)")
    p.add_argument("query", nargs="?")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    p.add_argument("--max-rows", type=int, default=40)
    p.set_defaults(func=cmd_sql)
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    return args.func(args, settings)


if __name__ == "__main__":
    sys.exit(main())
