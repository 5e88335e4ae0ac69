"""The analyst's connection (`hit-platform sql`): the lake attached read-only, and then nothing outside it.

A statement must be a query: `SELECT` in all its forms (`FROM`, `WITH`, `VALUES`, `DESCRIBE`, `SHOW`,
`SUMMARIZE`, `PIVOT` into a result) or `EXPLAIN [ANALYZE]` of one, as DuckDB's own parser classifies it
(`read_only_refusal`). `ATTACH` must be refused that way: the SQLite and DuckLake extensions open their
files themselves, past DuckDB's file system switches below.

DuckDB's own switches do it, in this order: the lake's data folder is the one place files may be read
from (`allowed_directories`), every other file system access is off (`enable_external_access`: no `COPY
... TO`, no `ATTACH` of another database file, no `INSTALL` or `LOAD`, no `read_csv` of any file), and the
configuration is locked (`lock_configuration`); DuckDB never turns external access back on anyway. The lake itself is
attached read-only, so no statement can write it."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from hit_platform.adapters.lake.connection import Lake


QUERIES = {"SELECT"}


def read_only_refusal(sql: str) -> str | None:
    """Why `sql` is not a read-only query (None when every statement in it is one)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error:
        return None  # DuckDB says where it does not parse, when it runs it
    for statement in statements:
        kind = statement.type.name
        if kind == "EXPLAIN":
            inner = re.sub(r"^\s*EXPLAIN(\s+ANALY[SZ]E)?\s+", "", statement.query, flags=re.IGNORECASE)
            if read_only_refusal(inner) is None and inner.strip():
                continue
        if kind not in QUERIES:
            return (f"only queries are run here, and this is {kind}: "
                    f"{' '.join(statement.query.split())[:80]} (the lake is read-only; so is everything else)")
    return None


def lockdown_sql(lake: Lake, lock: bool = True) -> list[str]:
    """Once external access is off, DuckDB refuses to turn it back on or to widen the allowed directories
    (locked or not); `lock` also freezes every other setting (the `duckdb` CLI sets some of its own)."""
    data = lake.settings.data_path.rstrip("/") + "/"
    return [f"SET allowed_directories = ['{data.replace(chr(39), chr(39) * 2)}'];",
            "SET enable_external_access = false;",
            *(["SET lock_configuration = true;"] if lock else [])]


def analyst_connection(lake: Lake) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the lake that can reach nothing else (see the module docstring)."""
    con = lake.connect(read_only=True)
    try:
        for statement in lockdown_sql(lake):
            con.execute(statement)
    except BaseException:
        con.close()
        raise
    return con


def write_analyst_init(lake: Lake) -> Path:
    """The init file `hit-platform sql` opens the `duckdb` CLI with: the lake read-only, then the lockdown.
    (The CLI's `-safe` mode would also turn off its dot commands, but it refuses to load the lake's
    extensions by path; the CLI is the analyst's own process, acting with the analyst's own rights.)"""
    path = lake.write_init_file(lake.settings.warehouse / "open_lake_analyst.sql")
    with path.open("a") as f:
        f.write("-- nothing outside the lake: no file written or read, no extension installed, settings locked\n")
        f.write("\n".join(lockdown_sql(lake, lock=False)) + "\n")
    return path
