"""Ingest throughput: the platform (validation + quarantine + DuckLake commit) vs bare DuckDB.

    .venv/bin/python bench/bench_ingest.py [--rows 1000000] [--format csv] [--rounds 3]

Generates one chart dump of about --rows rows (one file, all 73 charts), then times, in
alternating rounds on the same file (bare, platform, bare, platform, ...),
  bare:     DuckDB read_csv(...) (read_parquet for --format parquet) -> Parquet file (COPY),
            the engine alone
  platform: hit_platform.adapters.lake.ingest.ingest_file into a fresh DuckLake, opening its own
            lake connection as a one-file ingest does
and, as a second anchor, what a user would run instead to get the file into the lake unchecked
(open the same DuckLake, CREATE TABLE AS read_csv). It prints each round's rows/s and ratios,
then the median ratio to bare (target >= 0.7, issue #15). On a shared
machine the rounds' spread says how far one figure can be trusted. "lake open s" is one more
Lake.connect of the same lake, timed apart: the share of platform s that is opening the lake
(loading the DuckDB extensions, which checks their signatures, and attaching the catalog).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb

from hit_platform.generator import GeneratorConfig, generate
from hit_platform.adapters.lake.ingest import ingest_file
from hit_platform.steps.ingest import landing_files
from hit_platform.adapters.lake.connection import Lake
from hit_platform.settings import Settings

TARGET = 0.7  # platform rows/s over bare rows/s, each round (issue #15)


def one_file_dump(settings: Settings, rows: int, fmt: str) -> tuple[Path, int]:
    """A one-file chart dump of about `rows` rows in `settings.landing_dir` (also used by bench_backends)."""
    days = max(1, math.ceil(rows / (73 * 50)))
    t = time.perf_counter()
    manifest = generate(GeneratorConfig(out_dir=settings.landing_dir, truth_dir=settings.generator_dir,
                                        seed=1, songs=max(20_000, days * 150), history_days=days,
                                        increments=0, start_date=date(2020, 1, 1), fmt=fmt))
    path = landing_files(settings.landing_dir)[0]
    print(f"file: {path.name}, {manifest['total_rows']:,} rows, {path.stat().st_size / 1e6:.0f} MB "
          f"(generated in {time.perf_counter() - t:.1f} s)")
    return path, manifest["total_rows"]


def time_bare(path: Path, fmt: str, out: Path) -> float:
    reader = f"read_parquet('{path}')" if fmt == "parquet" else f"read_csv('{path}')"
    t = time.perf_counter()
    duckdb.connect().execute(f"COPY (SELECT * FROM {reader}) TO '{out}' (FORMAT parquet)")
    return time.perf_counter() - t


def time_bare_lake(path: Path, fmt: str, warehouse: Path) -> float:
    """What a user would run instead to get the file into a DuckLake: open the lake (the same
    extensions, the same attach) and CREATE TABLE AS the reader's rows, unchecked."""
    lake = Lake(Settings(warehouse=warehouse))
    lake.connect().close()  # catalog creation is not part of it
    reader = f"read_parquet('{path}')" if fmt == "parquet" else f"read_csv('{path}')"
    t = time.perf_counter()
    con = lake.connect()
    con.execute(f"CREATE TABLE raw.bare AS SELECT * FROM {reader}")
    con.close()
    return time.perf_counter() - t


def time_platform(path: Path, rows: int, warehouse: Path) -> tuple[float, float]:
    """Seconds of one ingest_file into a fresh lake, and of opening a lake connection (part of it)."""
    lake = Lake(Settings(warehouse=warehouse))
    lake.connect().close()  # catalog creation is not part of ingest
    t = time.perf_counter()
    lake.connect().close()
    connect = time.perf_counter() - t
    t = time.perf_counter()
    result = ingest_file(lake, path)
    seconds = time.perf_counter() - t
    assert result.status == "ingested" and result.rows_raw == rows, result
    return seconds, connect


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--format", default="csv", choices=("csv", "csv.gz", "parquet"))
    ap.add_argument("--rounds", type=int, default=3, help="alternating bare/platform rounds")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        path, rows = one_file_dump(Settings(warehouse=Path(tmp) / "warehouse"), args.rows, args.format)
        print(f"{'round':>5}  {'bare s':>7} {'bare rows/s':>12}  {'platform s':>10} {'platform rows/s':>15}  "
              f"{'ratio':>5}  {'lake open s':>11}  {'bare->lake s':>12} {'ratio':>5}")
        bare, platform, ratios, lake_ratios = [], [], [], []
        for i in range(args.rounds):
            b = time_bare(path, args.format, Path(tmp) / f"bare_{i}.parquet")
            p, connect = time_platform(path, rows, Path(tmp) / f"wh_{i}")
            bl = time_bare_lake(path, args.format, Path(tmp) / f"bare_wh_{i}")
            bare.append(b)
            platform.append(p)
            ratios.append(b / p)
            lake_ratios.append(bl / p)
            print(f"{i + 1:>5}  {b:7.2f} {rows / b:>12,.0f}  {p:10.2f} {rows / p:>15,.0f}  {b / p:5.2f}  "
                  f"{connect:11.2f}  {bl:12.2f} {bl / p:5.2f}")

    median = statistics.median(ratios)
    print(f"bare duckdb read -> parquet   : best {min(bare):.2f} s  {rows / min(bare):>10,.0f} rows/s "
          f"(rounds {min(bare):.2f}-{max(bare):.2f} s)")
    print(f"platform ingest (checks+lake) : best {min(platform):.2f} s  {rows / min(platform):>10,.0f} rows/s "
          f"(rounds {min(platform):.2f}-{max(platform):.2f} s)")
    print(f"ratio platform / bare         : median {median:.2f} (rounds {min(ratios):.2f}-{max(ratios):.2f}); "
          f"target >= {TARGET}: {'met' if median >= TARGET else 'NOT met'}")
    print(f"ratio platform / bare into DuckLake (lake opened, no checks): median {statistics.median(lake_ratios):.2f} "
          f"(rounds {min(lake_ratios):.2f}-{max(lake_ratios):.2f})")


if __name__ == "__main__":
    main()
