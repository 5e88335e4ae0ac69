"""What one maintenance run does to a lake that served a while (issue 28): snapshots, data files, inlined
rows and the catalog's size before and after.

    HIT_WAREHOUSE=DIR .venv/bin/python bench/bench_maintenance.py [--load-seconds 60] [--keep-days 0]

DIR is a warehouse `hit-platform demo` built and serves (HIT_SERVE_PORT). With --load-seconds, wrk first
sends /predict for that long (2 threads, 16 connections), and the serving process is stopped so its
committer commits the journal. Then `maintenance_job` runs on the warehouse's own Dagster instance, with
the settings of the environment, or with every snapshot past the retention (--keep-days 0: as if a week
had passed; the snapshots a model version or a latest materialization needs are still kept).
"""

from __future__ import annotations

import argparse
import time

from hit_platform.adapters.lake import maintenance as upkeep
from hit_platform.adapters.lake.connection import Lake
from hit_platform.cli.dagster_instance import persistent_instance
from hit_platform.definitions import build_definitions
from hit_platform.serving import process
from hit_platform.settings import get_settings
from hit_platform_tests.support.load import wrk
from hit_platform_tests.support.serving import song


def footprint(lake: Lake) -> upkeep.Footprint:
    with lake.connection(read_only=True) as con:
        return upkeep.footprint(lake, con)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load-seconds", type=float, default=0.0)
    parser.add_argument("--keep-days", type=float, default=None, help="HIT_LAKE_KEEP_SNAPSHOTS_DAYS for this run")
    args = parser.parse_args()
    settings = get_settings()
    if args.keep_days is not None:
        settings = settings.override(maintenance={"keep_snapshots_days": max(args.keep_days, 1e-9),
                                                  "cleanup_grace_s": 0})
    lake = Lake(settings)
    rows = [("after the demo" if args.load_seconds else "before", footprint(lake))]
    if args.load_seconds:
        done = wrk(f"{settings.serving.endpoint}/predict", song(), args.load_seconds)
        print(f"load: {done.line()}")
        process.stop(settings)
        rows.append((f"+ {args.load_seconds:g} s of load", footprint(lake)))
    defs = build_definitions(settings=settings)
    started = time.perf_counter()
    run = defs.resolve_job_def("maintenance_job").execute_in_process(instance=persistent_instance())
    seconds = time.perf_counter() - started
    rows.append((f"after one maintenance run ({seconds:.0f} s)", footprint(lake)))
    print(f"maintenance_job: {'success' if run.success else 'FAILED'}; checks: "
          + ", ".join(f"{e.check_name} {'ok' if e.passed else 'FAILED'}" for e in run.get_asset_check_evaluations()))
    print(f"{'':34} {'snapshots':>9} {'data files':>10} {'delete files':>12} {'inlined rows':>12} "
          f"{'most files (table)':>30} {'catalog KiB':>11} {'data MiB':>8}")
    for label, f in rows:
        print(f"{label:34} {f.snapshots:9,} {f.data_files:10,} {f.delete_files:12,} {f.inlined_rows:12,} "
              f"{f'{f.most_files} ({f.most_files_table})':>30} "
              f"{(f.catalog_bytes or 0) / 1024:11,.0f} {f.data_bytes / 2**20:8.1f}")
    first, last = rows[-2][1], rows[-1][1]
    catalog = (last.catalog_bytes or 0) / max(first.catalog_bytes or 1, 1)
    print(f"ratios after/before the run: snapshots {last.snapshots / first.snapshots:.2f}, data files "
          f"{last.data_files / max(first.data_files, 1):.2f}, catalog {catalog:.2f}")


if __name__ == "__main__":
    main()
