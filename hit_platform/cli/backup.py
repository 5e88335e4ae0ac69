"""`hit-platform backup` and `hit-platform restore`: the whole warehouse's state (lake, registry, Dagster
instance, journal, landing files) into a checked backup folder, and back into an empty warehouse
(`adapters/backup.py`, `adapters/restore.py`, docs/backup.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hit_platform.settings import Settings


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.adapters.backup import take
    from hit_platform.serving import process

    say = args.progress.line
    result = take(settings, Path(args.to) if args.to else None, say=say, serving=process.status(settings))
    m, files = result.manifest, result.manifest["files"]
    sizes = {rel: sum(s for r, (s, _) in files.items() if r.startswith(rel)) for rel in
             ("lake", "mlflow", "dagster", "journal", "landing", "generator")}
    counts = {rel: sum(1 for r in files if r.startswith(rel)) for rel in sizes}
    sec = m["seconds"]
    say(f"  journal: {counts['journal']} segments not yet committed ({_mb(sizes['journal'])}, "
        f"{sec['journal']:.2f} s)")
    say(f"  lake: snapshot {m['lake']['snapshot_id']}, {m['lake']['data_files']} data files, {_mb(sizes['lake'])} "
        f"({sec['lake']:.2f} s); ops.inference_log {m['lake']['rows'].get('ops.inference_log', 0):,} rows")
    say(f"  registry: champion {m['registry']['champion'] or 'none'}, challenger "
        f"{m['registry']['challenger'] or 'none'}, {counts['mlflow']} files, {_mb(sizes['mlflow'])} "
        f"({sec['registry']:.2f} s)")
    say(f"  dagster: {counts['dagster']} files, {_mb(sizes['dagster'])} ({sec['dagster']:.2f} s)")
    say(f"  landing and generator: {counts['landing'] + counts['generator']} files, "
        f"{_mb(sizes['landing'] + sizes['generator'])} ({sec['landing']:.2f} s); read back in {sec['check']:.2f} s")
    serving = m["serving"]
    args.progress.say(f"backup {result.path}: {len(files)} files, {_mb(sum(sizes.values()))} in "
                      f"{result.seconds:.1f} s; lake snapshot {m['lake']['snapshot_id']}, champion "
                      f"{m['registry']['champion'] or 'none'}"
                      + (f", serving version {serving['model_version']}" if serving["running"] else ", not serving"))
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from hit_platform.adapters.restore import restore
    from hit_platform.serving import process

    result = restore(settings, Path(args.backup), say=args.progress.line, serving=process.status(settings))
    m = result.manifest
    journal = sum(1 for r in m["files"] if r.startswith("journal/"))
    args.progress.say(
        f"restored {m['name']} into {settings.warehouse} in {result.restore_seconds:.1f} s (checked in "
        f"{result.check_seconds:.1f} s): lake at snapshot {m['lake']['snapshot_id']}, champion "
        f"{m['registry']['champion'] or 'none'}, the Dagster instance, {journal} journal segments (committed when "
        "serving starts)" + (f"; serving served version {m['serving']['model_version']}: `hit-platform serve` "
                             "serves the champion again" if m["serving"]["running"] else ""))
    return 0


def add_backup_commands(sub) -> None:
    p = sub.add_parser("backup", help="a consistent backup of the lake, the registry, the Dagster instance and the "
                                      "journal into a new folder of HIT_BACKUP_DIR",
                       description="Copies the lake's catalog and data files at one snapshot, the MLflow store and "
                                   "artifacts, the Dagster instance's databases (SQLite's online backup API, so "
                                   "while everything runs), the serving journal, the landing files and the "
                                   "generator's truth, with a manifest of every file's sha256. See docs/backup.md.")
    p.add_argument("--to", metavar="DIR", help="folder of backups (default HIT_BACKUP_DIR: backups/ beside the "
                                              "warehouse)")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser("restore", help="put a backup back into an empty warehouse (refuses a damaged or partial one)",
                       description="Checks every file of the backup against its manifest, refuses a damaged or "
                                   "partial backup, a running serving process or a place that is not empty, then "
                                   "stages and moves each part into place. See docs/backup.md.")
    p.add_argument("backup", help="a backup folder that `hit-platform backup` wrote")
    p.set_defaults(func=cmd_restore)
