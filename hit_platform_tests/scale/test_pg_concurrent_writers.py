"""Several writer processes on one PostgreSQL-catalog lake at once: nothing lost, nothing doubled.

Two processes ingest the same landing folder (in opposite orders) while a third
appends batches to `ops.inference_log` in a loop, standing in for the serving
process logging its predictions. All three start on a fresh catalog, so they
also race to create it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from hit_platform.steps.ingest import landing_files
from hit_platform_tests.support.dumps import small_dump

pytestmark = pytest.mark.slow

INGESTER = textwrap.dedent("""
    import json, sys
    from hit_platform.adapters.lake.ingest import ingest_landing
    from hit_platform.steps.ingest import landing_files
    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.settings import Settings
    settings = Settings(lake={"retries": 40})  # everything else from the HIT_* environment
    files = landing_files(settings.landing_dir)
    if sys.argv[1] == "reverse":
        files = files[::-1]
    results = ingest_landing(Lake(settings), files)
    print(json.dumps([r.status for r in results]))
""")

APPENDER = textwrap.dedent("""
    import json, sys
    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.settings import Settings
    batches, size = int(sys.argv[1]), int(sys.argv[2])
    lake = Lake(Settings(lake={"retries": 40}))
    with lake.connection() as con:
        lake.write(lambda c: c.execute(
            "CREATE TABLE IF NOT EXISTS ops.inference_log (request_id VARCHAR, batch INTEGER, "
            "model_version VARCHAR, logged_at TIMESTAMPTZ)"), con=con, what="create log")
        for b in range(batches):
            def append(c, b=b):
                # idempotent: a retried batch is written once
                if c.execute("SELECT count(*) FROM ops.inference_log WHERE batch = ?", [b]).fetchall()[0][0]:
                    return
                c.execute("INSERT INTO ops.inference_log SELECT 'req-' || ? || '-' || range, ?, 'v1', now() "
                          "FROM range(?)", [b, b, size])
            lake.write(append, con=con, what=f"log batch {b}")
    print(json.dumps({"batches": batches}))
""")


def test_two_ingesters_and_a_logger_on_postgres(pg_s3_lake):
    settings = pg_s3_lake.settings
    manifest = small_dump(settings, increments=6, countries=3)
    files = landing_files(settings.landing_dir)
    assert len(files) == 7
    env = {**os.environ, **pg_s3_lake.env}
    batches, size = 40, 25
    procs = [subprocess.Popen([sys.executable, "-c", INGESTER, order], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for order in ("forward", "reverse")]
    procs.append(subprocess.Popen([sys.executable, "-c", APPENDER, str(batches), str(size)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    statuses = [s for out, _ in outs[:2] for s in json.loads(out.strip().splitlines()[-1])]
    # every file ingested exactly once, by one of the two writers
    assert statuses.count("ingested") == 7 and statuses.count("already_landed") == 7
    expected_rows = sum(f["rows"] for f in manifest["files"])
    lake = pg_s3_lake.lake
    with lake.connection(read_only=True) as con:
        n_raw, n_distinct = con.execute(
            "SELECT count(*), count(DISTINCT (file_sha256, source_row)) FROM raw.chart_rows").fetchall()[0]
        n_files = con.execute("SELECT count(*), count(DISTINCT file_sha256) FROM raw.landed_files").fetchall()[0]
        n_q = con.execute("SELECT count(*) FROM quarantine.chart_rows").fetchall()[0][0]
        seq = con.execute("SELECT n FROM raw.ingest_sequence").fetchall()
        log_rows, log_ids, log_batches = con.execute(
            "SELECT count(*), count(DISTINCT request_id), count(DISTINCT batch) FROM ops.inference_log"
        ).fetchall()[0]
    assert n_files == (7, 7)
    assert n_q == 0
    assert n_raw == n_distinct == expected_rows
    # one sequence row, bumped by every committed ingest transaction (7 ingested + the
    # already_landed answers that got as far as the transaction)
    assert len(seq) == 1 and seq[0][0] >= 7
    assert (log_rows, log_ids, log_batches) == (batches * size, batches * size, batches)
    assert any("/raw/chart_rows/" in k for k in pg_s3_lake.data_keys())
    assert not (settings.warehouse / "lake").exists()
