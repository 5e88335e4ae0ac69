"""The landing folder: which files wait there, in which format, and their content hash (a file landed
twice, under any name, is ingested once)."""

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


def landing_files(landing_dir: Path) -> list[Path]:
    """Data files waiting in the landing folder, in name order (history sorts first)."""
    if not landing_dir.exists():
        return []
    return sorted(p for p in landing_dir.iterdir()
                  if p.is_file() and not p.name.startswith(".") and landing_format(p) is not None)
