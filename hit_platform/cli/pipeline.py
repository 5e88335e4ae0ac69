"""`hit-platform ingest`, `build`, `status` and `sql`: the asset graph run through Dagster, and what
the lake holds afterwards."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hit_platform.settings import Settings


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


def build_pending(settings: Settings, everything: bool = False) -> bool:
    """Build what the rules ask for; True when every run succeeded and no failed gate holds anything back."""
    from hit_platform.cli.build import build, report
    from hit_platform.cli.dagster_instance import persistent_instance

    return report(build(_definitions(settings), persistent_instance(), everything=everything,
                        log_level="WARNING"))


def cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    print("== building what the rules ask for (new files, new data, new code)" if not args.all else "== building every asset")
    ok = build_pending(settings, everything=args.all)
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
    result = _materialize_ingest(settings, args.files)
    print(f"dagster run {result.run_id}: {'success' if result.success else 'failed'}")
    print_lake_summary(settings)
    return 0 if result.success else 1


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    print_lake_summary(settings)
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
