"""Ingest throughput: the platform (validation + quarantine + DuckLake commit) vs bare DuckDB.

    .venv/bin/python bench/bench_ingest.py [--rows 1000000] [--format csv]

Generates one chart dump of about --rows rows (one file, all 73 charts), then times
  bare:     DuckDB read_csv(...) -> Parquet file (COPY), the engine alone
  platform: hit_platform.steps.ingest.ingest_file into a fresh DuckLake
on the same file, and prints rows/s of each and their ratio (target >= 0.5).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb

from hit_platform.generator import GeneratorConfig, generate
from hit_platform.steps.ingest import ingest_file, landing_files
from hit_platform.adapters.lake.connection import Lake
from hit_platform.settings import Settings


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--format", default="csv", choices=("csv", "csv.gz", "parquet"))
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        path, rows = one_file_dump(Settings(warehouse=Path(tmp) / "warehouse"), args.rows, args.format)

        bare = []
        for i in range(args.repeat):
            out = Path(tmp) / f"bare_{i}.parquet"
            reader = (f"read_parquet('{path}')" if args.format == "parquet" else f"read_csv('{path}')")
            t = time.perf_counter()
            duckdb.connect().execute(f"COPY (SELECT * FROM {reader}) TO '{out}' (FORMAT parquet)")
            bare.append(time.perf_counter() - t)

        platform = []
        for i in range(args.repeat):
            s = Settings(warehouse=Path(tmp) / f"wh_{i}")
            lake = Lake(s)
            lake.connect().close()  # catalog creation is not part of ingest
            t = time.perf_counter()
            result = ingest_file(lake, path)
            platform.append(time.perf_counter() - t)
            assert result.status == "ingested" and result.rows_raw == rows, result

    b, p = min(bare), min(platform)
    print(f"bare duckdb read_csv -> parquet : {b:7.2f} s  {rows / b:>12,.0f} rows/s")
    print(f"platform ingest (checks+lake)   : {p:7.2f} s  {rows / p:>12,.0f} rows/s")
    print(f"ratio platform / bare           : {b / p:7.2f}   (target >= 0.5)")


if __name__ == "__main__":
    main()
