"""The one place that opens the DuckLake lake.

DuckLake keeps its catalog in SQLite (default) or PostgreSQL and its table data
as Parquet files in a folder or on object storage; both come from `Settings`.
Extensions are loaded by path from their PyPI packages (`duckdb-extension-*`,
pinned to the `duckdb` version), so nothing is downloaded at run time; on a
machine without those packages we fall back to DuckDB's own INSTALL.

Every write goes through `Lake.write`, which runs a function inside one
transaction and retries the whole transaction with back-off when the catalog
is locked or another writer committed a conflicting snapshot.

Scale path, by configuration alone: `lake_catalog='postgres:dbname=lake host=...'`
puts the catalog in PostgreSQL (extension `postgres`), `lake_data_path='s3://bucket/prefix'`
puts the Parquet files on S3-compatible storage (extension `httpfs`, credentials
from `Settings.s3_options()`: `HIT_S3_*` or the standard `AWS_*` variables). The
S3 secret is a temporary (in-memory) DuckDB secret of each connection: never
persisted, never logged; the analyst init file reads the credentials from the
environment of the `duckdb` CLI instead of writing them down.
"""

from __future__ import annotations

import logging
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TypeVar

import duckdb

from hit_platform.adapters.lake.extensions import (VERIFIED, extension_path, file_identity,  # noqa: F401
                                                   load_extension, loadable_extension_path)
from hit_platform.settings import Settings, get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

LAYERS = ("raw", "quarantine", "core", "ml", "ops")


class NoLake(FileNotFoundError):
    """A read of a lake nothing has been written to yet."""

# Messages of errors that a retry can cure: SQLite's writer lock, DuckLake's snapshot conflicts
# ("Transaction conflict - attempting to ... but another transaction has ..."), and, with a PostgreSQL
# catalog, its serialization failures, deadlocks, a lost race for the next snapshot id or the catalog's
# first creation (unique violations: DuckLake tables have none, so one is always such a race), a full server.
_RETRYABLE = ("database is locked", "database is busy", "conflict", "could not serialize",
              "deadlock", "locked", "busy", "concurrent", "duplicate key value violates unique constraint",
              "too many clients already", "remaining connection slots are reserved",
              "the database system is starting up", "the database system is shutting down")
# Only while attaching: two processes creating a fresh PostgreSQL catalog at once; a read-only SQLite open
# racing the writer that is creating the catalog file (SQLite would have to write to read it yet).
_ATTACH_RETRYABLE = _RETRYABLE + ("already exists", "attempt to write a readonly database")

_OBJECT_STORE = ("s3://", "s3a://", "s3n://", "http://", "https://", "gs://", "gcs://", "r2://")
SECRET_NAME = "hit_lake_s3"


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.Error) and any(m in str(exc).lower() for m in _RETRYABLE)


def _attach_retryable(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.Error) and any(m in str(exc).lower() for m in _ATTACH_RETRYABLE)


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def dsn_without_password(dsn: str) -> str:
    """A PostgreSQL DSN (keyword or URI form) without its password: for files and logs."""
    dsn = re.sub(r"(^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", "", dsn).strip()
    return re.sub(r"^(postgres(?:ql)?://[^:/@]+):[^@]*@", r"\1@", dsn)


class Lake:
    """Opens connections to the lake and runs retried write transactions."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.alias = self.settings.lake.alias

    # -- opening -----------------------------------------------------------
    def _extensions(self) -> list[str]:
        catalog = self.settings.catalog
        names = ["postgres" if catalog.startswith("postgres:") else "sqlite_scanner", "ducklake"]
        if self.settings.data_path.startswith(_OBJECT_STORE):
            names.insert(0, "httpfs")
            if self._credential_chain():
                names.insert(1, "aws")
        return names

    def _credential_chain(self) -> bool:
        """No S3 keys configured and the `aws` extension installed: let the AWS SDK's chain find them."""
        if not self.settings.data_on_s3:
            return False
        o = self.settings.s3_options()
        return not (o.access_key_id and o.secret_access_key) and extension_path("aws") is not None

    def _bucket_scope(self) -> str:
        """The secret's scope: the lake's bucket only (other buckets keep their own secrets)."""
        scheme, rest = self.settings.data_path.split("://", 1)
        return f"{scheme}://{rest.split('/', 1)[0]}/"

    def secret_sql(self, *, from_env: bool = False) -> str | None:
        """`CREATE SECRET` for the lake's bucket, or None when the data is not on S3.

        `from_env=False` (the platform's own connections): the credentials of
        `Settings.s3_options()` as literals of a temporary secret, which lives in
        the connection's memory only (never persisted, never logged).
        `from_env=True` (the analyst's `duckdb` CLI init file): the credentials are
        read by the CLI's `getenv()` from `HIT_S3_*`, else `AWS_*`, when it starts,
        so the file holds no secret. Endpoint, region and URL style are not secret
        and are written as configured.
        """
        if not self.settings.data_on_s3:
            return None
        o = self.settings.s3_options()
        opts = ["TYPE s3"]
        if from_env:
            def env(hit: str, aws: str) -> str:
                return f"coalesce(nullif(getenv('{hit}'), ''), getenv('{aws}'))"
            opts += [f"KEY_ID {env('HIT_S3_ACCESS_KEY_ID', 'AWS_ACCESS_KEY_ID')}",
                     f"SECRET {env('HIT_S3_SECRET_ACCESS_KEY', 'AWS_SECRET_ACCESS_KEY')}",
                     f"SESSION_TOKEN {env('HIT_S3_SESSION_TOKEN', 'AWS_SESSION_TOKEN')}"]
        elif o.access_key_id and o.secret_access_key:
            opts += [f"KEY_ID {_sql_str(o.access_key_id)}", f"SECRET {_sql_str(o.secret_access_key)}"]
            if o.session_token:
                opts.append(f"SESSION_TOKEN {_sql_str(o.session_token)}")
        elif self._credential_chain():
            # no keys configured: the AWS SDK's chain (env, ~/.aws, instance role), if its extension is there
            opts.append("PROVIDER credential_chain")
        opts.append(f"REGION {_sql_str(o.region)}")
        if o.endpoint:
            opts.append(f"ENDPOINT {_sql_str(o.endpoint)}")
        opts += [f"URL_STYLE {_sql_str(o.url_style)}", f"USE_SSL {str(o.use_ssl).lower()}",
                 f"SCOPE {_sql_str(self._bucket_scope())}"]
        return f"CREATE OR REPLACE TEMPORARY SECRET {SECRET_NAME} ({', '.join(opts)});"

    def _load_sql(self) -> list[str]:
        return self._loads()[0]

    def _loads(self) -> tuple[list[str], list[tuple] | None]:
        """The LOAD statements, and the identities of the files they load (None when one is not a file)."""
        stmts, files = [], []
        for name in self._extensions():
            path = loadable_extension_path(name)
            stmts.append(f"LOAD '{path}';" if path else f"INSTALL {name}; LOAD {name};")
            files.append(file_identity(path) if path else None)
        return stmts, (files if all(files) else None)

    def _attach_statement(self, read_only: bool, *, catalog: str | None = None) -> str:
        opts = [f"DATA_PATH {_sql_str(self.settings.data_path)}"]
        if read_only:
            opts.append("READ_ONLY")
        catalog = catalog or self.settings.catalog
        return f"ATTACH IF NOT EXISTS {_sql_str('ducklake:' + catalog)} AS {self.alias} ({', '.join(opts)});"

    def attach_sql(self, read_only: bool = False) -> list[str]:
        """The statements that load the extensions and attach the lake (also for the `duckdb` CLI).

        They hold no credentials: `connect` creates the S3 secret (see `secret_sql`)
        before running them, and `write_init_file` adds one that reads the environment.
        """
        return [*self._load_sql(), self._attach_statement(read_only), f"USE {self.alias};"]

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
            raise NoLake(f"no lake at {self.settings.catalog.removeprefix('sqlite:')}: run `hit-platform demo` "
                         "or ingest something first")
        config = {}
        if self.settings.duckdb.memory_limit:
            config["memory_limit"] = self.settings.duckdb.memory_limit
        if self.settings.duckdb.threads:
            config["threads"] = self.settings.duckdb.threads
        # Where a connection spills when a query outgrows memory (not the process's cwd).
        config["temp_directory"] = str(self.settings.warehouse / "duckdb_tmp")
        loads, files = self._loads()
        verified = files is not None and all(f in VERIFIED for f in files)
        if verified:  # these very files passed DuckDB's signature check in this process already
            config["allow_unsigned_extensions"] = True
        con = duckdb.connect(config=config)
        con.execute("SET enable_progress_bar = false")  # a library: no progress bars on the caller's terminal
        try:
            for stmt in loads:
                con.execute(stmt)
            if files is not None and not verified:
                VERIFIED.update(files)
            secret = self.secret_sql()
            if secret:
                try:
                    con.execute(secret)
                except duckdb.Error as exc:  # its message may quote the statement: never the secret
                    o = self.settings.s3_options()
                    message = str(exc)
                    for value in (o.secret_access_key, o.session_token):
                        if value:
                            message = message.replace(value, "***")
                    raise type(exc)(f"creating the lake's S3 secret failed: {message}") from None
        except BaseException:
            con.close()
            raise
        attach = [self._attach_statement(read_only), f"USE {self.alias};"]
        for attempt in range(self.settings.lake.retries):
            try:
                for stmt in attach:
                    con.execute(stmt)
                break
            except duckdb.Error as exc:
                if not _attach_retryable(exc) or attempt == self.settings.lake.retries - 1:
                    con.close()
                    if read_only and "creating a new DuckLake is explicitly disabled" in str(exc):  # as no file
                        raise NoLake(f"no lake at {self.settings.catalog}: nothing has been ingested") from exc
                    raise
                log.info("attach %s: retry %d after %s", self.alias, attempt + 1, exc)
                try:  # a half-made attachment must not stay behind for the next try
                    con.execute(f"DETACH DATABASE IF EXISTS {self.alias}")
                except duckdb.Error:
                    pass
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

    def reading(self) -> AbstractContextManager[duckdb.DuckDBPyConnection | None]:
        """`with lake.reading() as con`: a read-only connection, or None when there is no lake yet."""
        try:
            return self.connect(read_only=True)  # a DuckDB connection closes itself on leaving `with`
        except FileNotFoundError:
            return nullcontext()

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
        base = self.settings.lake.retry_base_s * (2 ** min(attempt, 6))
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
            for attempt in range(self.settings.lake.retries):
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
                    if not is_retryable(exc) or attempt == self.settings.lake.retries - 1:
                        raise
                    log.info("%s: retry %d after %s", what, attempt + 1, exc)
                    self._sleep(attempt)
            raise AssertionError("unreachable")
        finally:
            if own:
                con.close()

    # -- reading -----------------------------------------------------------
    def delete_orphaned_files(self, con: duckdb.DuckDBPyConnection, older_than_s: float | None = None) -> list[str]:
        """Delete the data files no snapshot references, older than `older_than_s` (default
        HIT_LAKE_ORPHAN_GRACE_S): what a writer killed in the middle of a commit left behind. Younger
        ones may belong to a transaction committing right now. Returns the files deleted."""
        grace = self.settings.lake.orphan_grace_s if older_than_s is None else older_than_s
        rows = con.execute(f"CALL ducklake_delete_orphaned_files({_sql_str(self.alias)}, "
                           "older_than => now() - to_microseconds(?::BIGINT))", [int(grace * 1e6)]).fetchall()
        deleted = [r[0] for r in rows]
        if deleted:
            log.warning("deleted %d data files no snapshot references (left by a writer that died mid-commit): %s",
                        len(deleted), ", ".join(Path(p).name for p in deleted[:5]))
        return deleted

    def snapshot_id(self, con: duckdb.DuckDBPyConnection) -> int:
        """The lake's newest snapshot id: the data version every read and write refers to."""
        # fetchall, not fetchone: an unconsumed result keeps its read transaction open
        return int(con.execute(f"SELECT max(snapshot_id) FROM {self.alias}.snapshots()").fetchall()[0][0])

    def table_exists(self, con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
        return con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? AND table_schema = ? "
            "AND table_name = ?", [self.alias, schema, table]).fetchall()[0][0] > 0

    def write_init_file(self, path: Path | None = None) -> Path:
        """An init file for the `duckdb` CLI that opens the lake read-only.

        It never holds a secret: S3 credentials are read from the CLI's environment
        (`HIT_S3_*`, else `AWS_*`) when it starts, and a PostgreSQL catalog's DSN is
        written without its password (libpq takes `PGPASSWORD` or `~/.pgpass`).
        """
        path = path or self.settings.warehouse / "open_lake.sql"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["-- opens the hit_platform lake read-only: duckdb -init " + str(path)]
        catalog = self.settings.catalog
        if catalog.startswith("postgres:"):
            catalog = "postgres:" + dsn_without_password(catalog.removeprefix("postgres:"))
            lines.append("-- catalog in PostgreSQL: a password comes from PGPASSWORD or ~/.pgpass, never this file")
        lines += self._load_sql()
        secret = self.secret_sql(from_env=True)
        if secret:
            lines.append("-- S3 credentials: read from the environment when the CLI starts "
                         "(HIT_S3_ACCESS_KEY_ID / HIT_S3_SECRET_ACCESS_KEY, else AWS_ACCESS_KEY_ID / "
                         "AWS_SECRET_ACCESS_KEY)")
            lines.append(secret)
        lines += [self._attach_statement(True, catalog=catalog), f"USE {self.alias};"]
        path.write_text("\n".join(lines) + "\n")
        return path
