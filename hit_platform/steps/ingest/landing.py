"""The landing folder: which files wait there, in which format, and their content hash (a file landed
twice, under any name, is ingested once). A landing file is a plain file directly in the folder: a name
that is a path, or a link that leads out of the folder, is none (`landing_file` says why)."""

from __future__ import annotations

import hashlib
from pathlib import Path

LANDING_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def landing_format(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in (".csv.gz", ".csv", ".parquet"):
        if name.endswith(suffix):
            return suffix.lstrip(".")
    return None


def shown(name: str, most: int = 80) -> str:
    """A name from outside (a file name, a column of a file's header) as one bounded, quoted line."""
    text = name if len(name) <= most else name[:most] + "..."
    return repr(text)  # quotes it and escapes control characters, newlines included


def why_not_landing(landing_dir: Path, name: str) -> str | None:
    """Why `name` is not a landing file directly in `landing_dir` (what and where, one line), or None."""
    if not name or name != Path(name).name or "\\" in name or "\0" in name or name in (".", ".."):
        return f"{shown(name)} is not a file name in the landing folder {landing_dir} (a path, or '..')"
    if name.startswith("."):
        return f"{shown(name)} is a hidden file (a name starting with '.') in the landing folder {landing_dir}"
    if landing_format(Path(name)) is None:
        return f"{shown(name)} is not a landing file (expected one of {', '.join(LANDING_SUFFIXES)})"
    path = landing_dir / name
    try:
        inside = path.resolve(strict=True).parent == landing_dir.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a broken link, a link loop
        return f"{shown(name)} is not in the landing folder {landing_dir}"
    if not inside:
        return f"{shown(name)} is a link that leads outside the landing folder {landing_dir}"
    if not path.is_file():
        return f"{shown(name)} is not a plain file in the landing folder {landing_dir}"
    return None


def landing_file(landing_dir: Path, name: str) -> Path:
    """The landing file `name` (a run's `files`, `hit-platform ingest FILE`), or ValueError saying why not."""
    if why := why_not_landing(landing_dir, name):
        raise ValueError(why)
    return landing_dir / name


def landing_files(landing_dir: Path) -> list[Path]:
    """Data files waiting in the landing folder, in name order (history sorts first)."""
    if not landing_dir.exists():
        return []
    return sorted(p for p in landing_dir.iterdir() if why_not_landing(landing_dir, p.name) is None)
