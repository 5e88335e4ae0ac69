"""`hit-platform`: the project's command line.

    hit-platform demo                 the main job on the embedded defaults
    hit-platform feed                 land the demo world's new daily files (demo's first step)
    hit-platform generate --out DIR   a synthetic chart dump (clean unless faults are asked for)
    hit-platform ingest [FILE ...]    ingest landing files through Dagster
    hit-platform build [--all]        run what the daemon's rules ask for (new files, new data, new code), with its quality gates
    hit-platform status               what the lake holds
    hit-platform sql [QUERY]          analyst SQL on the lake, read-only
    hit-platform serve | stop         serve the champion on 127.0.0.1:8000 (without Dagster) / stop it
    hit-platform audit ID             where a served or batch prediction came from
    hit-platform alerts               run failures, gate failures and monitor breaches
    hit-platform monitor              the label-free performance estimate per country, worst first
    hit-platform dashboard            the dashboard on 127.0.0.1:8050, live from the lake (Ctrl-C stops it)
    hit-platform rollback --reason    the champion back to the previous one, served in place
    hit-platform rebuild              refit a version from its lake snapshot, or train from a past one
    hit-platform backup | restore     a consistent backup of the warehouse / put one back into an empty one
    hit-platform cluster up | down    a Ray cluster on this machine, each node in a network namespace (root)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import date

from hit_platform.adapters.alerts import KINDS as ALERT_KINDS
from hit_platform.cli.cluster import add_cluster_command
from hit_platform.cli.backup import add_backup_commands
from hit_platform.cli.dashboard import add_dashboard_command
from hit_platform.cli.demo import cmd_demo, cmd_feed, cmd_generate
from hit_platform.cli.errors import OneLineParser, bad_settings, run_refusing, say_refused
from hit_platform.cli.logs import route_logs
from hit_platform.cli.operations import cmd_alerts, cmd_monitor, cmd_rebuild, cmd_rollback
from hit_platform.cli.pipeline import cmd_build, cmd_ingest, cmd_sql, cmd_status
from hit_platform.cli.progress import Progress
from hit_platform.cli.serving import cmd_audit, cmd_serve, cmd_stop
from hit_platform.settings import Settings, get_settings

# The commands' bodies live by what they do: demo (the synthetic world and the demo), pipeline (the asset
# graph and the lake), serving (the HTTP endpoint and a prediction's trace), operations (the champion's
# alerts, estimates, rollback and rebuild). Their heavy imports wait inside them, so --help stays fast.


def _add_generator_args(p: argparse.ArgumentParser, settings: Settings) -> None:
    from hit_platform.generator.feed import DAILY_FILES
    from hit_platform.generator.worlds import WORLDS

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
    p.add_argument("--world", dest="world_name", choices=list(WORLDS), default="additive",
                   help="the structure of the countries' hidden tastes (docs/generator.md); default additive, "
                        "the demo's")
    p.add_argument("--taste-shift", metavar="REGION:DAY:STRENGTH[:TOWARD]", default=None,
                   help="a change of taste (a concept shift): from DAY (days after --start-date) the countries of "
                        "REGION judge the songs released from then on by their region's taste moved STRENGTH "
                        "(0-1) of the way toward TOWARD's (another region; default: reversed). Default: none")


def _add_demo_args(p: argparse.ArgumentParser) -> None:
    """The demo's world: given on its first run only; later runs continue the world already there."""
    from hit_platform.generator.feed import DAILY_FILES, DEFAULT_FAULTS, DEFAULTS
    from hit_platform.generator.worlds import WORLDS

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
    p.add_argument("--world", dest="world_name", choices=list(WORLDS),
                   help="the structure of the countries' hidden tastes (docs/generator.md; default additive)")
    p.add_argument("--fault", action="append", metavar="KIND[=COUNT]",
                   help="faults of the world, spread over its files (default: "
                        + " ".join(f"{k}={v}" for k, v in DEFAULT_FAULTS.items()) + ")")


# Every command logs what the libraries say to a file under warehouse/logs/; the long ones tell their progress.
LONG_COMMANDS = ("demo", "feed", "ingest", "build", "rebuild", "backup", "restore")


def _add_output_flags(p: argparse.ArgumentParser, long: bool) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="also show the libraries' INFO lines and warnings (always in warehouse/logs/)")
    if long:
        shown = p.add_mutually_exclusive_group()
        shown.add_argument("--quiet", action="store_true", help="no progress lines or bar: only the result")
        shown.add_argument("--json", dest="json_progress", action="store_true",
                           help="progress as one JSON object a line on stdout, ending with the result")


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = OneLineParser(prog="hit-platform", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    parser.commands = sub.choices

    p = sub.add_parser("demo", help="land the demo world's days up to yesterday, build, serve, predict",
                       description="The main job. The first run makes a world (a chart dump with a hidden truth) "
                                   "whose history and first daily files end yesterday; each later run lands the "
                                   "daily files of the days since, never rewriting one, and builds what they make new.")
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

    p = sub.add_parser("build", help="run what the daemon's rules ask for (new files, new data, new code), with its quality gates; --all: every asset")
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

    p = sub.add_parser("status", help="rows per table, quarantine by reason, snapshot id; the serving process "
                                      "and, on a Ray cluster, its replicas per node")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("sql", help="run SQL on the lake read-only (no query: open the duckdb CLI)")
    p.add_argument("query", nargs="?")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    p.add_argument("--max-rows", type=int, default=40)
    p.set_defaults(func=cmd_sql)
    add_dashboard_command(sub)
    add_cluster_command(sub)
    add_backup_commands(sub)
    for name, p in sub.choices.items():
        _add_output_flags(p, name in LONG_COMMANDS)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    try:
        settings = get_settings()
    except ValidationError as exc:
        return say_refused(argv[0] if argv else (sys.argv[1] if len(sys.argv) > 1 else ""), bad_settings(exc))
    parser = build_parser(settings)
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser, so the line names the command
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    log = route_logs(settings.warehouse / "logs", args.command, verbose=args.verbose)
    long = args.command in LONG_COMMANDS
    mode = "json" if getattr(args, "json_progress", False) else "quiet" if getattr(args, "quiet", False) else "auto"
    args.progress = Progress(mode if long else "quiet", verbose=args.verbose)
    if mode != "json":
        if long and mode != "quiet":
            args.progress.line(f"(the libraries' logs: {log})")
        return run_refusing(args.command, lambda: args.func(args, settings))
    # --json: the command's own lines go to its log file; stdout carries the JSON events alone
    args.progress.event("started", command=args.command, log=str(log))
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as human, contextlib.redirect_stdout(human):
        code = run_refusing(args.command, lambda: args.func(args, settings))
    args.progress.event("result", command=args.command, exit_code=code, ok=code == 0, log=str(log))
    return code


if __name__ == "__main__":
    sys.exit(main())
