"""Processes on this machine, named so that a recycled pid is never taken for the process it was."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psutil


def start_id(pid: int) -> str:
    """When a process started, as an exact token: guards against a recycled pid.

    Linux: the start time in clock ticks since boot (/proc/<pid>/stat), immune to wall-clock steps,
    which shift psutil's create_time (boot time + ticks) on VMs whose clock is adjusted.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return "ticks:" + stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return f"time:{psutil.Process(pid).create_time():.0f}"


def this_process() -> str:
    """`host/pid/start_id` of the calling process: what `is_alive` recognises later."""
    return process_token(os.getpid())


def process_token(pid: int) -> str:
    """`host/pid/start_id` of a process of this machine (a child just started, say)."""
    return f"{socket.gethostname()}/{pid}/{start_id(pid)}"


def is_alive(token: str) -> bool | None:
    """Whether the process a `this_process()` token names still runs; None when it ran on another host
    (or the token is not one), which this machine cannot tell."""
    host, _, rest = token.partition("/")
    pid, _, started = rest.partition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        p = psutil.Process(int(pid))
        return p.status() != psutil.STATUS_ZOMBIE and start_id(p.pid) == started
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
