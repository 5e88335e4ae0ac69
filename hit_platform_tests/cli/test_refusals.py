"""Every refusal of the command line is one line that says what and where, with exit code 2: a bad
option, a bad setting, no lake yet, a write in analyst SQL, an unknown id, a missing landing file. A bug
keeps its traceback. Walked in process through `main`, as the `hit-platform` script calls it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.cli import main as cli
from hit_platform.settings import Settings, get_settings


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    """An empty warehouse as HIT_WAREHOUSE; the root logger and MLflow's logging switch as they were."""
    monkeypatch.setenv("HIT_WAREHOUSE", str(tmp_path / "warehouse"))
    monkeypatch.setenv("MLFLOW_CONFIGURE_LOGGING", os.environ.get("MLFLOW_CONFIGURE_LOGGING", "true"))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    get_settings.cache_clear()  # main reads the settings once per process: here, once per test
    yield tmp_path / "warehouse"
    get_settings.cache_clear()
    for h in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(h)
        h.close()
    root.setLevel(level)
    logging.captureWarnings(False)


def refused(capsys, *argv: str) -> str:
    """Run the command; it must exit 2 with one line on stderr, which is returned."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse exits
        code = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (argv, code, out, err)
    assert len(lines) == 1, f"{argv}: not one line:\n{err}"
    assert "Traceback" not in err
    return lines[0]


def test_no_lake_yet(warehouse, capsys):
    line = refused(capsys, "status")
    assert line.startswith("hit-platform status: error: no lake at ") and str(warehouse) in line
    assert refused(capsys, "sql", "SELECT 1").startswith("hit-platform sql: error: no lake at ")
    assert refused(capsys, "alerts").startswith("hit-platform alerts: error: no lake at ")


def test_analyst_sql_that_writes_or_does_not_parse(warehouse, capsys):
    lake = Lake(Settings(warehouse=warehouse))
    lake.write(lambda con: con.execute("CREATE TABLE raw.t AS SELECT 1 AS x"))
    line = refused(capsys, "sql", "DELETE FROM raw.t")
    assert line.startswith("hit-platform sql: error: ") and "read-only" in line.lower(), line
    line = refused(capsys, "sql", "SELEC x FROM raw.t")
    assert "syntax error" in line.lower() and "SELEC" in line, line
    line = refused(capsys, "sql", "SELECT nope FROM raw.t")
    assert "nope" in line, line
    assert cli.main(["sql", "SELECT x FROM raw.t"]) == 0  # the lake is as it was
    assert "1" in capsys.readouterr().out


def test_unknown_ids_and_versions(warehouse, capsys):
    lake = Lake(Settings(warehouse=warehouse))
    lake.write(lambda con: con.execute("CREATE TABLE raw.t AS SELECT 1 AS x"))
    assert "no-such-request" in refused(capsys, "audit", "no-such-request")
    assert refused(capsys, "rollback", "--reason", "test").startswith("hit-platform rollback: error: no champion")
    assert "99" in refused(capsys, "rebuild", "--model-version", "99")
    assert "snapshot 999" in refused(capsys, "rebuild", "--snapshot", "999")


def test_bad_options_files_and_settings(warehouse, capsys, monkeypatch):
    line = refused(capsys, "build", "--bogus")
    assert line.startswith("hit-platform build: error: unrecognized arguments: --bogus"), line
    assert "invalid choice: 'nope'" in refused(capsys, "monitor", "--source", "nope")
    assert "invalid int value: 'x'" in refused(capsys, "alerts", "--limit", "x")
    assert refused(capsys, "nosuchcommand").startswith("hit-platform: error: argument command: invalid choice")
    line = refused(capsys, "generate", "--out", str(warehouse / "g"), "--fault", "bogus")
    assert "--fault bogus: unknown fault kind 'bogus'" in line, line
    line = refused(capsys, "ingest", "missing.csv")
    assert "missing.csv" in line and "landing" in line, line
    monkeypatch.setenv("HIT_SERVE_PORT", "eighty")
    get_settings.cache_clear()
    line = refused(capsys, "status")
    assert "HIT_SERVE_PORT" in line and "eighty" in line, line


def test_ingest_takes_only_files_directly_in_landing(warehouse, capsys, tmp_path):
    """Issue 27, hole 10: `hit-platform ingest ../../outside/<file>` landed a file from outside landing/ and
    exited 0. A path, '..' or a link that leads outside is refused in one line, before anything runs."""
    from hit_platform_tests.steps.test_ingest import row, write_csv

    outside = write_csv(tmp_path / "outside" / "other.csv", [row()])
    (warehouse / "landing").mkdir(parents=True)
    (warehouse / "landing" / "link.csv").symlink_to(outside)
    for name, why in (("../../outside/other.csv", "not a file name in the landing folder"),
                      (str(outside), "not a file name in the landing folder"),
                      ("link.csv", "a link that leads outside the landing folder")):
        line = refused(capsys, "ingest", name)
        assert line.startswith("hit-platform ingest: error: ") and why in line, line
    assert not (warehouse / "lake").exists()  # nothing ran


def test_a_bug_keeps_its_traceback(warehouse, monkeypatch):
    def broken(args, settings):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "cmd_status", broken)
    with pytest.raises(KeyError):
        cli.main(["status"])


def test_analyst_sql_reaches_nothing_outside_the_lake(warehouse, capsys, tmp_path):
    """Issue 27, hole 9: `COPY ... TO` wrote a file and `ATTACH` of the catalog without READ_ONLY could
    write the lake, both with exit 0."""
    settings = Settings(warehouse=warehouse)
    lake = Lake(settings)
    lake.write(lambda con: con.execute("CREATE TABLE raw.t AS SELECT 1 AS x"))
    outside = tmp_path / "outside.csv"
    catalog = settings.lake.catalog.removeprefix("sqlite:") if settings.lake.catalog else str(
        warehouse / "lake" / "catalog.sqlite")
    for statement in (f"COPY (SELECT 42) TO '{outside}'",
                      f"ATTACH 'ducklake:sqlite:{catalog}' AS again (DATA_PATH '{settings.data_path}')",
                      f"ATTACH '{tmp_path / 'other.duckdb'}' AS other",
                      "INSTALL httpfs", "LOAD httpfs",
                      "SET enable_external_access = true",
                      "SELECT * FROM read_csv('/etc/passwd')",
                      "CREATE TABLE raw.u AS SELECT 2 AS y",
                      f"ATTACH 'sqlite:{catalog}' AS meta",
                      "CALL ducklake_expire_snapshots('lake', older_than => now())",
                      f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{outside}'",
                      f"SELECT 1; COPY (SELECT 42) TO '{outside}'"):
        line = refused(capsys, "sql", statement)
        assert line.startswith("hit-platform sql: error: "), line
    assert not outside.exists() and not (tmp_path / "other.duckdb").exists()
    assert cli.main(["sql", "--json", "SELECT count(*) AS n FROM raw.t"]) == 0
    assert '"n": 1' in capsys.readouterr().out
    for query in ("DESCRIBE raw.t", "SHOW TABLES", "EXPLAIN SELECT * FROM raw.t", "FROM raw.t",
                  "SELECT count(*) FROM lake.snapshots()"):  # what an analyst reads with stays open
        assert cli.main(["sql", query]) == 0, query
    capsys.readouterr()

    # the duckdb CLI `hit-platform sql` opens: the same switches, after the lake is attached read-only (the
    # CLI itself is the analyst's own process: its dot commands act with the analyst's own rights)
    from hit_platform.adapters.lake.analyst import write_analyst_init

    init = write_analyst_init(lake)
    duckdb_cli = Path(sys.executable).parent / "duckdb"
    shell = subprocess.run([str(duckdb_cli), "-init", str(init)], capture_output=True, text=True,
                           input=f"COPY (SELECT 42) TO '{outside}';\nSELECT count(*) AS n FROM raw.t;\n", timeout=60)
    assert not outside.exists(), shell.stdout + shell.stderr
    assert "file system operations are disabled" in shell.stdout + shell.stderr
    assert "│ 1 │" in shell.stdout.replace(" ", " ") or "1" in shell.stdout, shell.stdout
