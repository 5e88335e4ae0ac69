"""Two writer processes ingesting the same landing folder at once: nothing lost, nothing doubled."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from hit_platform.steps.ingest import landing_files
from hit_platform.adapters.lake.connection import Lake
from hit_platform_tests.support.dumps import small_dump

WRITER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from hit_platform.adapters.lake.ingest import ingest_landing
    from hit_platform.steps.ingest import landing_files
    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.settings import Settings
    settings = Settings(warehouse=Path(sys.argv[1]), lake={"retries": 40})
    files = landing_files(settings.landing_dir)
    if sys.argv[2] == "reverse":
        files = files[::-1]
    results = ingest_landing(Lake(settings), files)
    print(json.dumps([r.status for r in results]))
""")


def test_two_writer_processes_on_one_lake(settings, lake: Lake):
    manifest = small_dump(settings, increments=6, countries=3)
    files = landing_files(settings.landing_dir)
    assert len(files) == 7
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(settings.warehouse), order],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for order in ("forward", "reverse")]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    statuses = [s for out, _ in outs for s in json.loads(out.strip().splitlines()[-1])]
    # every file ingested exactly once, by one of the two writers
    assert statuses.count("ingested") == 7 and statuses.count("already_landed") == 7
    expected_rows = sum(f["rows"] for f in manifest["files"])
    with lake.connection(read_only=True) as con:
        n_raw, n_distinct = con.execute(
            "SELECT count(*), count(DISTINCT (file_sha256, source_row)) FROM raw.chart_rows").fetchall()[0]
        n_files = con.execute("SELECT count(*), count(DISTINCT file_sha256) FROM raw.landed_files").fetchall()[0]
        n_q = con.execute("SELECT count(*) FROM quarantine.chart_rows").fetchall()[0][0]
    assert n_files == (7, 7)
    assert n_q == 0
    assert n_raw == n_distinct == expected_rows
