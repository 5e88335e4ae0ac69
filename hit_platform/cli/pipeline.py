"""`hit-platform ingest`, `build`, `status` and `sql`: the asset graph run through Dagster, and what
the lake holds afterwards."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hit_platform.settings import Settings


def _materialize_ingest(settings: Settings, progress, files: list[str] | None = None):
    import uuid

    import dagster as dg

    from hit_platform.cli.dagster_instance import persistent_instance
    from hit_platform.cli.progress import steps_of_defs
    from hit_platform.defs.raw import ingest_chart_files
    from hit_platform.defs.resources import LakeResource

    instance, run_id = persistent_instance(), str(uuid.uuid4())
    lake = LakeResource(warehouse=str(settings.warehouse))
    defs = dg.Definitions(assets=[ingest_chart_files], resources={"lake": lake})
    steps, job = steps_of_defs(defs), defs.resolve_implicit_global_asset_job_def()
    progress.plan(len(steps.assets))
    run_config = {"ops": {"ingest_chart_files": {"config": {"files": files or []}}},
                  **_console(progress)}
    with progress.bar(), progress.following(instance, run_id, steps):
        return job.execute_in_process(instance=instance, run_config=run_config, run_id=run_id, raise_on_error=True)


def _console(progress) -> dict:
    """Dagster's console logger: what the run logs goes to the progress lines (and the UI); `--verbose`
    also shows it as Dagster prints it."""
    return {"loggers": {"console": {"config": {"log_level": "INFO" if progress.verbose else "CRITICAL"}}}}


def _definitions(settings: Settings):
    from hit_platform.definitions import build_definitions

    return build_definitions(settings=settings)


def build_pending(settings: Settings, progress, everything: bool = False, upto=None) -> bool:
    """Build what the rules ask for (only `upto` and what it needs, when given); True when every run
    succeeded and no failed gate holds anything back."""
    from hit_platform.cli.build import build, report
    from hit_platform.cli.dagster_instance import persistent_instance

    with progress.bar():
        result = build(_definitions(settings), persistent_instance(), everything=everything, upto=upto,
                       log_level=_console(progress)["loggers"]["console"]["config"]["log_level"], progress=progress)
    return report(result, out=progress.say)


def cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    p = args.progress
    p.say("== building what the rules ask for (new files, new data, new code)" if not args.all
          else "== building every asset")
    ok = build_pending(settings, p, everything=args.all)
    print_lake_summary(settings)
    return 0 if ok else 1


def print_lake_summary(settings: Settings) -> None:
    """Rows per table, landed files by status, quarantined rows by reason, rejected files, snapshot id."""
    from hit_platform.steps.ingest import lake_summary
    from hit_platform.adapters.lake.connection import Lake

    lake = Lake(settings)
    with lake.connection(read_only=True) as con:
        s = lake_summary(con)
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


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.cli.errors import Refused
    from hit_platform.steps.ingest import landing_file

    for name in args.files:  # plain files directly in landing/: no path, no '..', no link leading outside
        try:
            landing_file(settings.landing_dir, name)
        except ValueError as exc:
            raise Refused(str(exc)) from None
    result = _materialize_ingest(settings, args.progress, args.files)
    print(f"dagster run {result.run_id}: {'success' if result.success else 'failed'}")
    print_lake_summary(settings)
    return 0 if result.success else 1


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.cli.serving import print_serving_status

    print_lake_summary(settings)
    print_serving_status(settings)
    return 0


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    import duckdb

    from hit_platform.adapters.lake.analyst import analyst_connection, read_only_refusal, write_analyst_init
    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.cli.errors import Refused

    lake = Lake(settings)
    if not args.query:
        init = write_analyst_init(lake)
        duckdb_cli = Path(sys.executable).parent / "duckdb"
        os.execv(str(duckdb_cli), [str(duckdb_cli), "-init", str(init)])
    if why := read_only_refusal(args.query):
        raise Refused(why)
    with analyst_connection(lake) as con:
        try:  # the analyst's statement, refused by DuckDB (binding, or running it): its message says where
            rel = con.sql(args.query)
            if rel is None:
                return 0
            if args.json:
                cols = rel.columns
                for row in rel.fetchall():
                    print(json.dumps(dict(zip(cols, row)), default=str))
            else:
                rel.show(max_rows=args.max_rows)
        except duckdb.Error as exc:
            raise Refused(f"{type(exc).__name__}: {exc}") from None
    return 0
