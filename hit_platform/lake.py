"""The one place that opens the DuckLake lake.

DuckLake keeps its catalog in SQLite (default) or PostgreSQL and its table data
as Parquet files in a folder or on object storage; both come from `Settings`.
Extensions are loaded by path from their PyPI packages (`duckdb-extension-*`,
pinned to the `duckdb` version), so nothing is downloaded at run time; on a
machine without those packages we fall back to DuckDB's own INSTALL.

Every write goes through `Lake.write`, which runs a function inside one
transaction and retries the whole transaction with back-off when the catalog
is locked or another writer committed a conflicting snapshot.
"""

from __future__ import annotations

import importlib.util
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from hit_platform.settings import Settings, get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

LAYERS = ("raw", "quarantine", "core", "ml", "ops")

# Messages of errors that a retry can cure: SQLite's writer lock, DuckLake's
# snapshot conflicts, PostgreSQL serialization failures.
_RETRYABLE = ("database is locked", "database is busy", "conflict", "could not serialize",
              "deadlock", "locked", "busy", "concurrent")


def extension_path(name: str) -> Path | None:
    """The `.duckdb_extension` file shipped by the `duckdb-extension-<name>` package."""
    package = "duckdb_extension_" + name.replace("-", "_")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(list(spec.submodule_search_locations)[0]) / "extensions" / f"v{duckdb.__version__}"
    path = base / f"{name}.duckdb_extension"
    return path if path.exists() else None


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    path = extension_path(name)
    if path is not None:
        con.execute(f"LOAD '{path}'")
    else:  # a machine with internet and no wheel: DuckDB's own repository
        con.execute(f"INSTALL {name}; LOAD {name}")


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.Error) and any(m in str(exc).lower() for m in _RETRYABLE)


class Lake:
    """Opens connections to the lake and runs retried write transactions."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.alias = self.settings.lake_alias

    # -- opening -----------------------------------------------------------
    def _extensions(self) -> list[str]:
        catalog = self.settings.catalog
        names = ["postgres" if catalog.startswith("postgres:") else "sqlite_scanner", "ducklake"]
        if self.settings.data_path.startswith(("s3://", "http://", "https://", "gs://", "r2://")):
            names.append("httpfs")
        return names

    def attach_sql(self, read_only: bool = False) -> list[str]:
        """The statements that load the extensions and attach the lake (also for the `duckdb` CLI)."""
        stmts = []
        for name in self._extensions():
            path = extension_path(name)
            stmts.append(f"LOAD '{path}';" if path else f"INSTALL {name}; LOAD {name};")
        opts = [f"DATA_PATH '{self.settings.data_path}'"]
        if read_only:
            opts.append("READ_ONLY")
        stmts.append(f"ATTACH IF NOT EXISTS 'ducklake:{self.settings.catalog}' AS {self.alias} ({', '.join(opts)});")
        stmts.append(f"USE {self.alias};")
        return stmts

    def _prepare_local(self) -> None:
        catalog = self.settings.catalog
        if catalog.startswith("sqlite:"):
            path = Path(catalog.removeprefix("sqlite:"))
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                # WAL: readers (analysts, open results) then never block a writer's commit;
                # the mode is stored in the file, so every later opener uses it.
                with sqlite3.connect(path) as db:
                    db.execute("PRAGMA journal_mode=WAL")
        if "://" not in self.settings.data_path:
            Path(self.settings.data_path).mkdir(parents=True, exist_ok=True)

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """A new DuckDB connection with the lake attached as `lake` and selected."""
        if not read_only:
            self._prepare_local()
        elif self.settings.catalog.startswith("sqlite:") and not Path(
                self.settings.catalog.removeprefix("sqlite:")).exists():
            raise FileNotFoundError(
                f"no lake at {self.settings.catalog.removeprefix('sqlite:')}: run `hit-platform demo` "
                "or ingest something first")
        config = {}
        if self.settings.duckdb_memory_limit:
            config["memory_limit"] = self.settings.duckdb_memory_limit
        if self.settings.duckdb_threads:
            config["threads"] = self.settings.duckdb_threads
        con = duckdb.connect(config=config)
        for attempt in range(self.settings.lake_retries):
            try:
                for stmt in self.attach_sql(read_only=read_only):
                    con.execute(stmt)
                break
            except duckdb.Error as exc:
                if not is_retryable(exc) or attempt == self.settings.lake_retries - 1:
                    con.close()
                    raise
                self._sleep(attempt)
        if not read_only:
            self._ensure_layers(con)
        return con

    @contextmanager
    def connection(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self.connect(read_only=read_only)
        try:
            yield con
        finally:
            con.close()

    def _ensure_layers(self, con: duckdb.DuckDBPyConnection) -> None:
        existing = {r[0] for r in con.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = ?", [self.alias]).fetchall()}
        missing = [s for s in LAYERS if s not in existing]
        if missing:
            def create(c: duckdb.DuckDBPyConnection) -> None:
                for s in missing:
                    c.execute(f"CREATE SCHEMA IF NOT EXISTS {self.alias}.{s}")
            self.write(create, con=con)

    # -- writing -----------------------------------------------------------
    def _sleep(self, attempt: int) -> None:
        base = self.settings.lake_retry_base_s * (2 ** min(attempt, 6))
        time.sleep(base * (0.5 + random.random()))

    def write(self, fn: Callable[[duckdb.DuckDBPyConnection], T], *,
              con: duckdb.DuckDBPyConnection | None = None, what: str = "lake write") -> T:
        """Run `fn(con)` in one transaction; on a lock or conflict roll back and retry it whole.

        `fn` must be safe to run again from scratch (it is, when all its effects
        are inside the transaction). Non-retryable errors roll back and raise.
        """
        own = con is None
        con = con or self.connect()
        try:
            for attempt in range(self.settings.lake_retries):
                con.execute("BEGIN TRANSACTION")
                try:
                    result = fn(con)
                    con.execute("COMMIT")
                    return result
                except Exception as exc:
                    try:
                        con.execute("ROLLBACK")
                    except duckdb.Error:
                        pass  # the failed COMMIT already ended the transaction
                    if not is_retryable(exc) or attempt == self.settings.lake_retries - 1:
                        raise
                    log.info("%s: retry %d after %s", what, attempt + 1, exc)
                    self._sleep(attempt)
            raise AssertionError("unreachable")
        finally:
            if own:
                con.close()

    # -- reading -----------------------------------------------------------
    def snapshot_id(self, con: duckdb.DuckDBPyConnection) -> int:
        """The lake's newest snapshot id: the data version every read and write refers to."""
        # fetchall, not fetchone: an unconsumed result keeps its read transaction open
        return int(con.execute(f"SELECT max(snapshot_id) FROM {self.alias}.snapshots()").fetchall()[0][0])

    def table_exists(self, con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
        return con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? AND table_schema = ? "
            "AND table_name = ?", [self.alias, schema, table]).fetchall()[0][0] > 0

    def write_init_file(self, path: Path | None = None) -> Path:
        """An init file for the `duckdb` CLI that opens the lake read-only."""
        path = path or self.settings.warehouse / "open_lake.sql"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("-- opens the hit_platform lake read-only: duckdb -init " + str(path) + "\n"
                        + "\n".join(self.attach_sql(read_only=True)) + "\n")
        return path
