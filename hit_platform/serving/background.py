"""Background threads of the serving side (journal roller, committer, shadow scorer) yield the CPU to requests."""

from __future__ import annotations

import os
import threading


def lower_this_threads_priority(niceness: int = 10) -> None:
    """Make the calling thread yield the CPU to request handling (Linux: per-thread niceness)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError, PermissionError):
        pass  # not Linux, or not allowed: only the priority is lost
