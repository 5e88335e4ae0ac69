"""A consistent backup of what the platform keeps: the lake (catalog and data files), the MLflow registry
(its store and artifacts), the Dagster instance, the inference log's journal, the landing files and the
generator's truth. `restore.py` puts one back.

Consistent while everything runs:
- the journal first: a segment committed and deleted after this copy is in the lake copy taken next, so
  every request answered before the backup began is in one or the other (the committer skips request ids
  already in the lake when the restored journal is committed again);
- the lake's SQLite catalog and every SQLite store (MLflow's, Dagster's) through SQLite's online backup
  API: one read transaction, a copy of one committed state even while writers commit; the lake's snapshot
  is the newest snapshot of that copy;
- then exactly the data files that catalog copy names (DuckLake never rewrites a file; a file the
  maintenance job deleted in between starts the backup again, `HIT_BACKUP_ATTEMPTS` times);
- the champion alias cannot move between the lake copy and the registry copy: the backup holds the alias
  lock (`model_events.alias_lock`) that every promotion and rollback holds.

The backup is written under `.<name>.partial/` and renamed to `<name>/` after its `manifest.json` (every
file's size and sha256, the snapshot, the champion, what serving served), so a backup killed half way is
never taken for a whole one. Only the embedded profile: a PostgreSQL catalog, S3 data or an MLflow
server are backed up with their own tools (`pg_dump`, bucket versioning), and the backup says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from hit_platform.settings import Settings

FORMAT = "hit_platform-backup/1"
MANIFEST = "manifest.json"
PARTIAL = ".partial"
_CHUNK = 1 << 20


class BackupRefused(Exception):
    """A backup or restore that cannot be done as asked (see the message); nothing was written."""


class DataFileGone(Exception):
    """A data file the catalog copy names was deleted before it was copied."""


def places(settings: Settings) -> dict[str, Path]:
    """Where each part of a backup lives in this warehouse, by its folder (or file) name in the backup.
    Refuses the scale path: those stores have their own backup tools."""
    catalog, tracking = settings.catalog, settings.tracking_uri
    outside = [what for what, ok in (
        (f"the lake catalog {catalog} (pg_dump it)", catalog.startswith("sqlite:")),
        (f"the lake's data at {settings.data_path} (version the bucket)", "://" not in settings.data_path),
        (f"the MLflow store {tracking} (back up the tracking server's database)", tracking.startswith("sqlite:///")),
        (f"the MLflow artifacts at {settings.mlflow.artifact_location}",
         not settings.mlflow.artifact_location or "://" not in settings.mlflow.artifact_location),
    ) if not ok]
    if outside:
        raise BackupRefused("backup covers the embedded profile's files; not: " + "; ".join(outside))
    return {"lake/catalog.sqlite": Path(catalog.removeprefix("sqlite:")),
            "lake/data": Path(settings.data_path),
            "mlflow/mlflow.db": Path(tracking.removeprefix("sqlite:///")),
            "mlflow/artifacts": Path(settings.mlflow.artifact_location or settings.mlflow_artifacts),
            "dagster": settings.warehouse / "dagster",
            "journal": settings.serving.journal(settings),
            "landing": settings.landing_dir,
            "generator": settings.generator_dir}


# -- copying ---------------------------------------------------------------------------------------------

def file_digest(path: Path) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def copy_file(src: Path, dst: Path) -> tuple[int, str]:
    """Copy `src` to `dst` (fsynced), hashing the bytes as they pass: (size, sha256)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    h, size = hashlib.sha256(), 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            h.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return size, h.hexdigest()


def copy_sqlite(src: Path, dst: Path) -> tuple[int, str]:
    """A consistent copy of a live SQLite database (its WAL included) through SQLite's online backup API."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(src, timeout=60)) as source, closing(sqlite3.connect(dst)) as target:
        source.backup(target)  # all pages in one step: one read transaction, one committed state
    return file_digest(dst)


@dataclass
class Copied:
    files: dict[str, list] = field(default_factory=dict)  # path in the backup -> [size, sha256]
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, rel: str, size_sha: tuple[int, str]) -> None:
        self.files[rel] = list(size_sha)

    def bytes(self, prefix: str = "") -> int:
        return sum(s for rel, (s, _) in self.files.items() if rel.startswith(prefix))

    def count(self, prefix: str = "") -> int:
        return sum(1 for rel in self.files if rel.startswith(prefix))


def copy_tree(src: Path, out: Path, rel: str, copied: Copied, *, sqlite_files: bool = False,
              skip: Callable[[Path], bool] = lambda p: False) -> None:
    """Every file under `src` to `out/rel/...`; `*.db` through the backup API when `sqlite_files` (their
    -wal/-shm left out: the copy holds what they held). A file deleted while the walk passes is skipped."""
    if not src.is_dir():
        return
    for path in sorted(src.rglob("*")):
        name = path.name
        if not path.is_file() or skip(path) or name.startswith(".") or name.endswith(("-wal", "-shm", "-journal")):
            continue
        target = f"{rel}/{path.relative_to(src).as_posix()}"
        try:
            if sqlite_files and name.endswith(".db"):
                copied.add(target, copy_sqlite(path, out / target))
            else:
                copied.add(target, copy_file(path, out / target))
        except FileNotFoundError:
            continue


def copy_journal(journal: Path, out: Path, copied: Copied) -> None:
    """The journal's sealed and open segments. An open one sealed while we look is copied under its sealed
    name; one gone altogether was committed, so its rows are in the lake copy taken after this."""
    if not journal.is_dir():
        return
    for path in sorted(journal.iterdir()):
        if path.suffix not in (".seg", ".open"):
            continue
        for candidate in (path, path.with_suffix(".seg")):
            try:
                copied.add(f"journal/{candidate.name}", copy_file(candidate, out / "journal" / candidate.name))
                break
            except FileNotFoundError:
                continue


def lake_data_files(catalog_copy: Path) -> tuple[int, str, list[str]]:
    """(newest snapshot id, the catalog's data path, every data and delete file the copy names, relative
    to that data path), read from the catalog copy with SQLite."""
    with closing(sqlite3.connect(catalog_copy)) as db:
        snapshot = db.execute("SELECT max(snapshot_id) FROM ducklake_snapshot").fetchone()[0]
        data_path = db.execute("SELECT value FROM ducklake_metadata WHERE key = 'data_path'").fetchone()[0]
        schemas = {sid: (p, rel) for sid, p, rel in db.execute(
            "SELECT schema_id, path, path_is_relative FROM ducklake_schema ORDER BY begin_snapshot")}
        tables = {tid: (sid, p, rel) for tid, sid, p, rel in db.execute(
            "SELECT table_id, schema_id, path, path_is_relative FROM ducklake_table ORDER BY begin_snapshot")}
        files = db.execute("SELECT table_id, path, path_is_relative FROM ducklake_data_file UNION ALL "
                           "SELECT table_id, path, path_is_relative FROM ducklake_delete_file").fetchall()

    def under(base: str, path: str | None, relative) -> str:
        path = path or ""
        return base + path if (relative or relative is None) and not path.startswith("/") else path

    out = []
    for table_id, path, relative in files:
        schema_id, table_path, table_rel = tables[table_id]
        schema_path, schema_rel = schemas[schema_id]
        full = under(under(under(data_path, schema_path, schema_rel), table_path, table_rel), path, relative)
        if not full.startswith(data_path):
            raise BackupRefused(f"lake data file {full} lies outside the lake's data path {data_path}")
        out.append(full[len(data_path):])
    return int(snapshot), data_path, sorted(set(out))


def lake_table_rows(settings: Settings, out: Path) -> dict[str, int]:
    """Rows of every lake table in the backup's own copy (catalog and data files, DuckDB reading them as the
    platform would): proof the copy reads, and the counts a restore is checked against."""
    import duckdb

    from hit_platform.adapters.lake.connection import Lake

    lake = Lake(settings)
    con = duckdb.connect()
    try:
        for stmt in lake.attach_sql(read_only=True)[:-2]:  # the extensions only: the lake itself is not attached
            con.execute(stmt)
        con.execute(f"ATTACH 'ducklake:sqlite:{out / 'lake' / 'catalog.sqlite'}' AS backup "
                    f"(DATA_PATH '{out / 'lake' / 'data'}/', READ_ONLY, OVERRIDE_DATA_PATH true)")
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                             "WHERE table_catalog = 'backup' AND table_type = 'BASE TABLE' "
                             "ORDER BY 1, 2").fetchall()
        return {f"{s}.{t}": con.execute(f'SELECT count(*) FROM backup."{s}"."{t}"').fetchall()[0][0]
                for s, t in tables}
    finally:
        con.close()


# -- the backup ------------------------------------------------------------------------------------------

@dataclass
class BackupResult:
    path: Path
    manifest: dict
    seconds: float


def take(settings: Settings, to: Path | None = None, say: Callable[[str], None] = print,
         serving=None) -> BackupResult:
    """Back up this warehouse into a new folder under `to` (default HIT_BACKUP_DIR): see the module.
    `serving`: the serving process's status (`serving.process.status`), what the manifest says was served."""
    from hit_platform.adapters import model_events
    from hit_platform.adapters.tracking import Tracker

    where = places(settings)
    catalog = where["lake/catalog.sqlite"]
    if not catalog.exists():
        raise BackupRefused(f"no lake at {catalog}: nothing to back up yet")
    root = Path(to or settings.backup_dir).resolve()
    if root == settings.warehouse.resolve() or settings.warehouse.resolve() in root.parents:
        raise BackupRefused(f"backup folder {root} is inside the warehouse {settings.warehouse}: a backup must "
                            "outlive the warehouse (HIT_BACKUP_DIR or --to elsewhere)")
    say(f"backing up {settings.warehouse} into {root} (the alias lock is held while the lake and the registry "
        "are copied)")
    started = datetime.now(timezone.utc)
    name = "hit-backup-" + started.strftime("%Y%m%dT%H%M%S%fZ")
    out = root / (f".{name}{PARTIAL}")
    out.mkdir(parents=True)
    t0 = time.monotonic()
    try:
        copied = Copied()
        tracker = Tracker(settings)
        for attempt in range(settings.backup.attempts):
            t = time.monotonic()
            copy_journal(where["journal"], out, copied)  # before the catalog (see the module)
            copied.seconds["journal"] = time.monotonic() - t
            try:
                with model_events.alias_lock(tracker):
                    champion, challenger = tracker.champion_info(), tracker.challenger_info()
                    lake = _copy_lake(catalog, out, copied)
                    t = time.monotonic()
                    copied.add("mlflow/mlflow.db", copy_sqlite(where["mlflow/mlflow.db"], out / "mlflow" / "mlflow.db"))
                copy_tree(where["mlflow/artifacts"], out, "mlflow/artifacts", copied)
                copied.seconds["registry"] = time.monotonic() - t
                break
            except DataFileGone as exc:
                if attempt == settings.backup.attempts - 1:
                    raise BackupRefused(f"{exc}, {settings.backup.attempts} times: is a cleanup running? "
                                        "Try again after it") from None
                say(f"  {exc}: starting again")
                shutil.rmtree(out)
                out.mkdir()
                copied = Copied()
        t = time.monotonic()
        copy_tree(where["dagster"], out, "dagster", copied, sqlite_files=True,
                  skip=lambda p: "logs" in p.relative_to(where["dagster"]).parts[:1])
        copied.seconds["dagster"] = time.monotonic() - t
        t = time.monotonic()
        for rel in ("landing", "generator"):
            copy_tree(where[rel], out, rel, copied)
        copied.seconds["landing"] = time.monotonic() - t
        t = time.monotonic()
        rows = lake_table_rows(settings, out)
        copied.seconds["check"] = time.monotonic() - t
        manifest = {
            "format": FORMAT, "name": name, "started_at": started.isoformat(),
            "finished_at": datetime.now(timezone.utc).isoformat(), "warehouse": str(settings.warehouse.resolve()),
            "places": {k: str(v) for k, v in where.items()},
            "lake": {**lake, "rows": rows},
            "registry": {"model": tracker.model_name, "champion": champion.version if champion else None,
                         "challenger": challenger.version if challenger else None},
            "serving": {"running": bool(serving and serving.running),
                        "model_version": serving.model_version if serving and serving.running else None},
            "seconds": {k: round(v, 3) for k, v in copied.seconds.items()},
            "files": copied.files,
        }
        (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        with open(out / MANIFEST, "rb") as f:
            os.fsync(f.fileno())
        final = root / name
        os.rename(out, final)  # whole, or not there at all
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return BackupResult(final, manifest, time.monotonic() - t0)


def _copy_lake(catalog: Path, out: Path, copied: Copied) -> dict:
    t = time.monotonic()
    copied.add("lake/catalog.sqlite", copy_sqlite(catalog, out / "lake" / "catalog.sqlite"))
    snapshot, data_path, files = lake_data_files(out / "lake" / "catalog.sqlite")
    for rel in files:
        try:
            copied.add(f"lake/data/{rel}", copy_file(Path(data_path + rel), out / "lake" / "data" / rel))
        except FileNotFoundError:
            raise DataFileGone(f"lake data file {data_path}{rel} (named by snapshot {snapshot}) was deleted "
                               "before it was copied") from None
    copied.seconds["lake"] = time.monotonic() - t
    return {"snapshot_id": snapshot, "data_path": data_path, "data_files": len(files)}
