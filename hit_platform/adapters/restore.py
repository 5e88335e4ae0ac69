"""Put a backup (`backup.py`) back into an empty warehouse, whole or not at all.

1. Check: the folder is a finished backup (its `manifest.json`, of this format) and every file it lists
   is there with its size and sha256. A damaged or partial backup is refused in one line, before
   anything is written.
2. Refuse to overwrite: serving must be stopped, and each place a part goes back to must be empty (a
   restore fills the place of what was lost; it never merges into what is there). The lake's data path
   and the MLflow artifacts must be where they were: their stores name them by absolute path.
3. Stage: every file copied into `<warehouse>/.restoring/`, checked again against its sha256 as it
   passes (the backup could change under us), then a `staged` mark naming the backup.
4. Move: each part renamed into its place. A restore killed here is finished by the next `restore` of
   the same backup (the mark says the stage is whole; the parts already moved are skipped); a stage
   without its mark is thrown away and made again.

The journal's segments come back into the serving journal: the serving process commits them when it
starts, skipping the requests the lake copy already has.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hit_platform.adapters.backup import FORMAT, MANIFEST, PARTIAL, BackupRefused, copy_file, file_digest, places
from hit_platform.settings import Settings

STAGE = ".restoring"
STAGED = "staged"
_SAME_PLACE = ("lake/data", "mlflow/artifacts")  # named by absolute path inside the catalog and the MLflow store


def check(backup: Path) -> dict:
    """The backup's manifest, once every file it lists is there with its size and sha256; else one line why."""
    backup = Path(backup)
    if not backup.is_dir():
        raise BackupRefused(f"no backup at {backup}")
    if backup.name.endswith(PARTIAL):
        raise BackupRefused(f"{backup} is a partial backup (one killed before it finished): not restored")
    try:
        manifest = json.loads((backup / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupRefused(f"{backup} has no {MANIFEST}: not a finished backup, not restored") from None
    except (OSError, ValueError) as exc:
        raise BackupRefused(f"{backup / MANIFEST} is unreadable ({exc}): not restored") from None
    if (not isinstance(manifest, dict) or manifest.get("format") != FORMAT
            or not isinstance(manifest.get("files"), dict)):
        raise BackupRefused(f"{backup / MANIFEST} is not a {FORMAT} manifest: not restored")
    for rel, (size, sha) in sorted(manifest["files"].items()):
        path = backup / rel
        if not path.is_file():
            raise BackupRefused(f"backup {backup} is damaged: {rel} is missing: not restored")
        got_size, got_sha = file_digest(path)
        if (got_size, got_sha) != (size, sha):
            raise BackupRefused(f"backup {backup} is damaged: {rel} has {got_size} bytes sha256 {got_sha[:12]}..., "
                                f"its manifest says {size} bytes sha256 {sha[:12]}...: not restored")
    return manifest


def _part(rel: str, where: dict[str, Path]) -> str:
    """The part of the warehouse a backup file belongs to (a manifest naming anything else is refused)."""
    if not Path(rel).is_absolute() and ".." not in Path(rel).parts:
        for k in where:
            if rel == k or rel.startswith(k + "/"):
                return k
    raise BackupRefused(f"the manifest names {rel!r}, which is no part of a warehouse: not restored")


def _occupied(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def _move(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`; across file systems, copy next to `dst` first, then rename there."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_dir() and not any(dst.iterdir()):
        dst.rmdir()
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = dst.with_name(f".{dst.name}{PARTIAL}")
        shutil.rmtree(tmp, ignore_errors=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp)
        os.rename(tmp, dst)
        shutil.rmtree(src) if src.is_dir() else src.unlink()


@dataclass
class RestoreResult:
    manifest: dict
    check_seconds: float
    restore_seconds: float
    resumed: bool


def restore(settings: Settings, backup: Path, say: Callable[[str], None] = print, serving=None) -> RestoreResult:
    """Check `backup`, then put it back into this warehouse (see the module). `serving`: the serving
    process's status (`serving.process.status`); a running one is refused."""
    t0 = time.monotonic()
    manifest = check(backup)
    checked = time.monotonic() - t0
    say(f"checked {backup}: {len(manifest['files'])} files, {sum(s for s, _ in manifest['files'].values()):,} "
        f"bytes, each as its manifest says ({checked:.1f} s)")
    where = places(settings)
    moved = {rel: str(where[rel]) for rel in _SAME_PLACE if str(where[rel]).rstrip("/") !=
             manifest["places"][rel].rstrip("/")}
    if moved:
        rel = next(iter(moved))
        raise BackupRefused(f"the backup's {rel} was at {manifest['places'][rel]}, here it is {moved[rel]}: the "
                            f"lake catalog and the MLflow store name it by path, so restore into the same place "
                            f"(HIT_WAREHOUSE={manifest['warehouse']})")
    if serving is not None and serving.running:
        raise BackupRefused(f"serving runs (pid {serving.pid}, {serving.endpoint}): `hit-platform stop` before a "
                            "restore")
    stage = settings.warehouse / STAGE
    resumed = (stage / STAGED).is_file() and (stage / STAGED).read_text().strip() == manifest["name"]
    parts = sorted({_part(rel, where) for rel in manifest["files"]})
    for rel in parts:
        if _occupied(where[rel]) and not (resumed and not (stage / rel).exists()):
            raise BackupRefused(f"{where[rel]} is not empty: a restore fills the place of what was lost and "
                                "never merges; move it aside first")
    t1 = time.monotonic()
    if not resumed:
        shutil.rmtree(stage, ignore_errors=True)  # a stage killed half way is made again
        for rel, (size, sha) in manifest["files"].items():
            if copy_file(Path(backup) / rel, stage / rel) != (size, sha):
                shutil.rmtree(stage, ignore_errors=True)
                raise BackupRefused(f"backup {backup} changed while it was restored ({rel}): nothing restored")
        (stage / STAGED).write_text(manifest["name"] + "\n")
    else:
        say(f"finishing the restore of {manifest['name']} a killed restore left staged in {stage}")
    for rel in parts:
        if (stage / rel).exists():
            _move(stage / rel, where[rel])
    shutil.rmtree(stage)
    return RestoreResult(manifest, checked, time.monotonic() - t1, resumed)
