"""Ingest throughput on the two lake backends: SQLite catalog + local files vs PostgreSQL + S3.

    .venv/bin/python bench/bench_backends.py [--rows 1000000] [--format csv] [--repeat 1]

Generates one chart dump of about --rows rows (one file, all 73 charts), starts a
throw-away PostgreSQL server and a moto S3 server on 127.0.0.1
(hit_platform_tests/support/servers.py; needs `apt-get install -y postgresql` and
`pip install "moto[server]"`), then times `hit_platform.adapters.lake.ingest.ingest_file` of
that same file into a fresh lake on each backend:
  sqlite+local: catalog warehouse/lake/catalog.sqlite, data warehouse/lake/data/
  postgres+s3:  catalog in PostgreSQL, data in s3://<bucket>/<prefix>/ on moto
and prints rows/s of each and their ratio. moto keeps objects in memory in one
Python process, so the S3 figure is a floor for a real object store's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


from bench_ingest import one_file_dump  # bench/ is on sys.path: the script's folder
from hit_platform.adapters.lake.ingest import ingest_file
from hit_platform.adapters.lake.connection import Lake
from hit_platform.settings import Settings
from hit_platform_tests.support.servers import (create_database, list_objects, postgres_missing_reason,
                                        postgres_server, s3_missing_reason, s3_server)


def timed_ingest(settings: Settings, path: Path, rows: int) -> float:
    lake = Lake(settings)
    lake.connect().close()  # catalog creation is not part of ingest
    t = time.perf_counter()
    result = ingest_file(lake, path)
    elapsed = time.perf_counter() - t
    assert result.status == "ingested" and result.rows_raw == rows, result
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--format", default="csv", choices=("csv", "csv.gz", "parquet"))
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs per backend")
    args = ap.parse_args()
    for reason in (postgres_missing_reason(), s3_missing_reason()):
        if reason:
            sys.exit(f"cannot run: {reason}")
    with tempfile.TemporaryDirectory(prefix="bench_backends_") as tmp:
        tmp = Path(tmp)
        path, rows = one_file_dump(Settings(warehouse=tmp / "source"), args.rows, args.format)

        local = [timed_ingest(Settings(warehouse=tmp / f"local_{i}"), path, rows) for i in range(args.repeat)]

        t = time.perf_counter()
        with postgres_server(tmp / "pg") as dsn, s3_server(tmp / "s3") as (endpoint, bucket, creds):
            print(f"servers: PostgreSQL {dsn.split(' dbname')[0]}, S3 {endpoint} "
                  f"(started in {time.perf_counter() - t:.1f} s)")
            remote = []
            for i in range(args.repeat):
                catalog = create_database(dsn, f"bench_{i}")
                settings = Settings(warehouse=tmp / f"remote_{i}",
                                    lake={"catalog": f"postgres:{catalog}", "data_path": f"s3://{bucket}/bench_{i}"},
                                    s3=creds.settings_section(endpoint))
                remote.append(timed_ingest(settings, path, rows))
                keys = list_objects(endpoint, creds, bucket, f"bench_{i}/")
                assert keys and not (settings.warehouse / "lake").exists()
            print(f"       {len(keys)} object(s) in s3://{bucket}/bench_{args.repeat - 1}/")

    a, b = min(local), min(remote)
    print(f"sqlite catalog + local files     : {a:7.2f} s  {rows / a:>12,.0f} rows/s")
    print(f"postgres catalog + s3 (moto)     : {b:7.2f} s  {rows / b:>12,.0f} rows/s")
    print(f"ratio postgres+s3 / sqlite+local : {a / b:7.2f}")


if __name__ == "__main__":
    main()
