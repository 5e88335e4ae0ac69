"""The journal: Arrow IPC files between the replicas and the lake, one per flush."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pyarrow as pa

from hit_platform.adapters.lake.tables import ARROW_SCHEMA

JOURNAL_SUFFIX = ".arrow"


def write_journal(journal_dir: Path, table: pa.Table) -> Path:
    """Write rows to a new journal file atomically (temp file, fsync, rename): a file is whole or absent."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}{JOURNAL_SUFFIX}"
    tmp = journal_dir / ("." + name + ".tmp")
    with open(tmp, "wb") as f:
        with pa.ipc.new_stream(f, ARROW_SCHEMA) as writer:
            writer.write_table(table.cast(ARROW_SCHEMA))
        f.flush()
        os.fsync(f.fileno())
    path = journal_dir / name
    os.replace(tmp, path)
    return path


def read_journal(path: Path) -> pa.Table:
    """The rows of one journal file; ValueError if it is not an inference-log Arrow stream."""
    try:
        with pa.OSFile(str(path), "rb") as f:
            table = pa.ipc.open_stream(f).read_all()
    except FileNotFoundError:
        raise
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"{path.name}: not an Arrow IPC stream ({exc})") from exc
    if not table.schema.equals(ARROW_SCHEMA):
        raise ValueError(f"{path.name}: columns {table.schema.names[:5]}... are not the inference log's")
    return table


def journal_files(journal_dir: Path) -> list[Path]:
    """Journal files, oldest first (names start with a nanosecond timestamp)."""
    return sorted(journal_dir.glob("*" + JOURNAL_SUFFIX)) if journal_dir.exists() else []
