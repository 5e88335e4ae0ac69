"""The data half (ingest -> gates -> songs, labels, features, splits) at scale.

    .venv/bin/python bench/bench_data_half.py [--rows 1000000 10000000]

For each size, in a fresh process: generate a dump (one history file + 2 daily
increments, csv.gz), build the whole data half in an ephemeral Dagster instance,
then build again with nothing changed. Prints wall time, rows/s, the process's
peak RSS (DuckDB included), and the no-change re-run as a fraction of the full
build (target <= 0.1x; memory should not grow in proportion to rows).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path


def one_size(rows: int) -> dict:
    import dagster as dg

    from hit_platform.cli.build import build
    from hit_platform.defs.ml.features import SPLITS_KEY
    from hit_platform.definitions import build_definitions
    from hit_platform.defs.resources import LakeResource
    from hit_platform.generator import GeneratorConfig, generate
    from hit_platform.settings import Settings

    days = max(3, math.ceil(rows / (73 * 50)))
    songs = max(20_000, days * 60)
    with tempfile.TemporaryDirectory(prefix="bench_data_half_") as tmp:
        settings = Settings(warehouse=Path(tmp) / "warehouse")
        t = time.perf_counter()
        manifest = generate(GeneratorConfig(
            out_dir=settings.landing_dir, truth_dir=settings.generator_dir, seed=3, songs=songs,
            history_days=days - 2, increments=2, start_date=date.today() - timedelta(days=days), fmt="csv.gz"))
        gen_s = time.perf_counter() - t
        defs = build_definitions(LakeResource(warehouse=str(settings.warehouse)))
        instance = dg.DagsterInstance.ephemeral()
        t = time.perf_counter()
        full = build(defs, instance, upto=[SPLITS_KEY], log_level="ERROR")
        full_s = time.perf_counter() - t
        assert full.success, [c.description for c in full.checks if not c.passed]
        t = time.perf_counter()
        again = build(defs, instance, upto=[SPLITS_KEY], log_level="ERROR")
        rerun_s = time.perf_counter() - t
        assert again.selected == []
    return {"rows": manifest["total_rows"], "songs": manifest["songs_in_dump"], "generate_s": gen_s,
            "full_build_s": full_s, "rerun_s": rerun_s,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_size(args.child)))
        return
    print(f"{'rows':>12} {'songs':>8} {'generate s':>10} {'full build s':>12} {'rows/s':>10} "
          f"{'re-run s':>9} {'re-run/full':>11} {'peak RSS GiB':>12}")
    for rows in args.rows:
        out = subprocess.run([sys.executable, __file__, "--child", str(rows)], capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-3000:])
            raise SystemExit(f"size {rows} failed")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['rows']:>12,} {r['songs']:>8,} {r['generate_s']:>10.1f} {r['full_build_s']:>12.1f} "
              f"{r['rows'] / r['full_build_s']:>10,.0f} {r['rerun_s']:>9.2f} {r['rerun_s'] / r['full_build_s']:>11.3f} "
              f"{r['peak_rss_gib']:>12.2f}")


if __name__ == "__main__":
    main()
