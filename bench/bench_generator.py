"""Benchmark the chart-dump generator: rows/s and peak memory per dump size.

    .venv/bin/python bench/bench_generator.py                       # 1M and 10M rows, csv.gz
    .venv/bin/python bench/bench_generator.py --rows 1000000 --fmt parquet

Each size is generated in its own child process (into a temporary folder that
is removed afterwards); the parent reads the child's peak RSS from os.wait4,
so the figure is that one run's, not the benchmark's.
Targets: peak RSS under 2 GiB at 10M rows, >= 300k rows/s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from hit_platform.domain.countries import CHART_SIZE, COUNTRIES

CHARTS = len(COUNTRIES) + 1  # + the global chart
INCREMENTS = 7


def dump_shape(rows: int) -> dict:
    """Days and songs for a dump of about `rows` rows with all 73 charts."""
    days = max(1, math.ceil(rows / (CHARTS * CHART_SIZE)))
    increments = INCREMENTS if days > 2 * INCREMENTS else 0
    return {"history_days": days - increments, "increments": increments,
            "songs": max(20_000, rows // 200)}


def child(rows: int, fmt: str, out: Path, songs: int | None) -> None:
    """Generate one dump and print what was written as JSON."""
    from hit_platform.generator import GeneratorConfig, generate

    shape = dump_shape(rows)
    if songs:
        shape["songs"] = songs
    start = time.perf_counter()
    manifest = generate(GeneratorConfig(out_dir=out / "landing", truth_dir=out / "generator", seed=7,
                                        fmt=fmt, **shape))
    seconds = time.perf_counter() - start
    size = sum(f["bytes"] for f in manifest["files"])
    print(json.dumps({"rows": manifest["total_rows"], "seconds": seconds, "bytes": size,
                      "songs_in_dump": manifest["songs_in_dump"], **shape}))


def run(rows: int, fmt: str, songs: int | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_generator_") as tmp:
        cmd = [sys.executable, __file__, "--child", "--rows", str(rows), "--fmt", fmt, "--out", tmp]
        if songs:
            cmd += ["--songs", str(songs)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"generating {rows} rows failed (exit {proc.returncode})")
        result = json.loads(out.strip().splitlines()[-1])
        result["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux reports KiB
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--fmt", default="csv.gz", choices=["csv", "csv.gz", "parquet"])
    parser.add_argument("--songs", type=int, default=None, help="catalogue size (default: max(20k, rows/200))")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.rows[0], args.fmt, args.out, args.songs)
        return
    print(f"{'rows':>12} {'fmt':>7} {'songs':>7} {'seconds':>8} {'rows/s':>10} {'MB':>8} {'peak RSS MiB':>13}")
    for rows in args.rows:
        r = run(rows, args.fmt, args.songs)
        print(f"{r['rows']:>12,} {args.fmt:>7} {r['songs']:>7,} {r['seconds']:>8.1f} "
              f"{r['rows'] / r['seconds']:>10,.0f} {r['bytes'] / 1e6:>8.0f} {r['peak_rss_mib']:>13.0f}", flush=True)


if __name__ == "__main__":
    main()
