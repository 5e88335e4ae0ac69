"""Quiet by default: what MLflow, Ray, Dagster and the rest log goes to a file under `warehouse/logs/`, named
in the output; the terminal gets only what a person must act on, in one line each: this package's own
warnings, and any library's errors. `--verbose` puts every INFO line on the terminal too.

Python's own logging does the routing (a file handler on the root logger, a filtered one for the
terminal); MLflow is asked not to install its own terminal handler (`MLFLOW_CONFIGURE_LOGGING`), and
Python warnings are captured as log records (`logging.captureWarnings`). MLflow's artifact progress bars, which
write to the terminal themselves, are off unless `--verbose`.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

# Libraries that may have put a handler of their own on the terminal (MLflow does on import): routed through
# the root logger instead, to the file.
THEIR_OWN_TERMINAL = ("mlflow", "alembic")
KEEP_LOG_FILES = 50  # per command: the oldest beyond this are deleted when a new one starts
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _OneLine(logging.Formatter):
    """`warning: what happened` on one line, at most `limit` characters; the whole record is in the file."""

    def __init__(self, limit: int = 300):
        super().__init__()
        self.limit = limit

    def format(self, record: logging.LogRecord) -> str:
        text = " ".join(record.getMessage().split())
        if len(text) > self.limit:
            text = text[: self.limit - 1] + "…"
        return f"{record.levelname.lower()}: {text}"


class _ForAPerson(logging.Filter):
    """This package's warnings and anyone's errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or (
            record.levelno >= logging.WARNING and record.name.split(".")[0] == "hit_platform")


def route_logs(folder: Path, command: str, verbose: bool = False) -> Path:
    """Send every log record to a new file `folder/<command>-<UTC time>.log` and return its path; the
    terminal (stderr) keeps this package's warnings and anyone's errors, one line each (`verbose`: all
    INFO and above, as logged)."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # before MLflow is imported, here and in children
    if not verbose:  # MLflow's tqdm bars (an artifact download) write to the terminal, past logging
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = folder / f"{command}-{stamp}-{os.getpid()}.log"
    _delete_old(folder, command)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "hit_platform_route", False)]:  # a second call's
        root.removeHandler(handler)
        handler.close()
    to_file = _FileMadeOnFirstRecord(path, encoding="utf-8", delay=True)  # a refused command leaves no folder
    to_file.setFormatter(logging.Formatter(_FORMAT))
    to_file.setLevel(logging.DEBUG if verbose else logging.INFO)
    to_terminal = logging.StreamHandler(sys.stderr)
    if verbose:
        to_terminal.setFormatter(logging.Formatter(_FORMAT))
        to_terminal.setLevel(logging.INFO)
    else:
        to_terminal.setFormatter(_OneLine())
        to_terminal.addFilter(_ForAPerson())
    for handler in (to_file, to_terminal):
        handler.hit_platform_route = True
        root.addHandler(handler)
    for name in THEIR_OWN_TERMINAL:  # a library that set up its own terminal handler when it was imported
        library = logging.getLogger(name)
        for handler in [h for h in library.handlers if isinstance(h, logging.StreamHandler)
                        and not isinstance(h, logging.FileHandler)]:
            library.removeHandler(handler)
        library.propagate = True
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)
    return path


class _FileMadeOnFirstRecord(logging.FileHandler):
    """A log file (and its folder) made when the first record comes, not before."""

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def _delete_old(folder: Path, command: str) -> None:
    old = sorted(folder.glob(f"{command}-*.log"))
    for path in old[: max(0, len(old) - KEEP_LOG_FILES + 1)]:
        path.unlink(missing_ok=True)
