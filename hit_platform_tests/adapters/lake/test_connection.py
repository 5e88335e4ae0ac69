"""The lake helper: extensions from their packages, read-only access, retried writes."""

from __future__ import annotations

import sqlite3

import duckdb
import pytest

from hit_platform.adapters.lake.connection import Lake, extension_path


def test_extensions_come_from_their_pypi_packages():
    for name in ("ducklake", "sqlite_scanner", "postgres", "httpfs"):
        path = extension_path(name)
        assert path is not None and path.name == f"{name}.duckdb_extension"
        assert f"v{duckdb.__version__}" in str(path)


def test_catalog_is_sqlite_in_wal_mode_and_writes_are_snapshots(lake: Lake, settings):
    with lake.connection() as con:
        first = lake.snapshot_id(con)
        lake.write(lambda c: c.execute("CREATE TABLE core.t AS SELECT 1 AS x"))
        lake.write(lambda c: c.execute("INSERT INTO core.t VALUES (2)"))
        now = lake.snapshot_id(con)
        assert now >= first + 2
        assert con.execute(f"SELECT count(*) FROM core.t AT (VERSION => {now - 1})").fetchall()[0][0] == 1
        assert con.execute("SELECT count(*) FROM core.t").fetchall()[0][0] == 2
    catalog = settings.warehouse / "lake" / "catalog.sqlite"
    with sqlite3.connect(catalog) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_read_only_connection_refuses_writes(lake: Lake):
    lake.write(lambda c: c.execute("CREATE TABLE core.t AS SELECT 1 AS x"))
    with lake.connection(read_only=True) as con:
        assert con.execute("SELECT x FROM core.t").fetchall() == [(1,)]
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("INSERT INTO core.t VALUES (2)")


def test_read_only_on_a_missing_lake_says_where(tmp_path):
    from hit_platform.settings import Settings

    with pytest.raises(FileNotFoundError, match="no lake at"):
        Lake(Settings(warehouse=tmp_path / "nothing")).connect(read_only=True)


def test_failed_write_rolls_back_everything(lake: Lake):
    lake.write(lambda c: c.execute("CREATE TABLE core.t AS SELECT 1 AS x"))

    def half(c):
        c.execute("INSERT INTO core.t VALUES (2)")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        lake.write(half)
    with lake.connection(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM core.t").fetchall()[0][0] == 1


def test_conflicting_writer_is_retried(lake: Lake):
    """A second connection commits in the middle of our transaction; our write retries and lands."""
    lake.write(lambda c: c.execute("CREATE TABLE core.counter AS SELECT 0 AS n"))
    other = lake.connect()
    attempts = []

    def bump(c):
        attempts.append(1)
        c.execute("UPDATE core.counter SET n = n + 1")
        if len(attempts) == 1:  # someone else commits before we do
            other.execute("UPDATE core.counter SET n = n + 10")

    lake.write(bump)
    other.close()
    assert len(attempts) == 2
    with lake.connection(read_only=True) as con:
        assert con.execute("SELECT n FROM core.counter").fetchall() == [(11,)]


def test_analyst_init_file_opens_the_lake_read_only_in_the_duckdb_cli(lake: Lake):
    import subprocess
    import sys
    from pathlib import Path

    lake.write(lambda c: c.execute("CREATE TABLE core.t AS SELECT 42 AS answer"))
    init = lake.write_init_file()
    cli = Path(sys.executable).parent / "duckdb"
    out = subprocess.run([str(cli), "-init", str(init), "-csv", "-c", "SELECT answer FROM core.t"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "42" in out.stdout


def test_an_extension_file_is_signature_checked_once_and_again_when_it_changes(lake: Lake, tmp_path, monkeypatch):
    """The second connection skips the hash of files this process verified; a file changed since is checked
    again, and a tampered one refused."""
    from hit_platform.adapters.lake import connection, extensions

    real = connection.loadable_extension_path
    copy = tmp_path / "sqlite_scanner.duckdb_extension"
    copy.write_bytes(real("sqlite_scanner").read_bytes())
    monkeypatch.setattr(connection, "loadable_extension_path",
                        lambda name: copy if name == "sqlite_scanner" else real(name))
    with lake.connection() as con:  # checked: a valid signature
        assert con.execute("SELECT count(*) FROM lake.snapshots()").fetchall()[0][0] >= 1
    assert extensions.file_identity(copy) in extensions.VERIFIED
    with lake.connection() as con:  # the same file: loaded unchecked
        assert con.execute("SELECT current_setting('allow_unsigned_extensions')").fetchall() == [(True,)]
    with open(copy, "r+b") as f:  # one byte changed after its check (same size): its signature no longer matches
        f.seek(copy.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(duckdb.Error, match="signature"):
        lake.connect()
