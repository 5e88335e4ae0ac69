"""Start, find, update and stop the long-lived serving process.

The Serve application must outlive whoever deploys it (a Dagster run, a
CLI call), so it lives in its own detached process
(`python -m hit_platform.serving.main`, new session, cwd = repo root),
found again through a pid file `<warehouse>/serving/serving.json` that
records its pid, endpoint and model version. This module never imports Ray:
callers stay light.

    start(settings)   -> endpoint    (no second process if one is running)
    update(settings)  -> status      (serve the current champion; zero failed requests)
    status(settings)  -> status
    stop(settings)    -> bool        (flushes the inference log; handles stale pid files)
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

from hit_platform.adapters.processes import start_id
from hit_platform.serving.ingress import SECRET_VAR
from hit_platform.settings import ServeConfig
from hit_platform.settings import REPO_ROOT, Settings

MAIN_MODULE = "hit_platform.serving.main"
PID_FILE = "serving.json"
LOG_FILE = "serve.log"

_children: dict[int, subprocess.Popen] = {}  # processes this interpreter started (reaped by status())


class ServingError(RuntimeError):
    """The serving process could not be started, reached, updated or stopped (the message says why)."""


@dataclass
class ServingStatus:
    running: bool
    endpoint: str | None
    model_version: str | None
    pid: int | None
    state: str  # "stopped", "starting", "warm" (Ray and Serve up, no champion yet), "running", "stopping", "unreachable"
    pid_file: str
    log_file: str
    detail: str | None = None
    challenger_version: str | None = None  # the version shadowing the champion, if any
    ray_address: str | None = None  # the Ray cluster it serves on (None: an embedded Ray on this machine)
    replicas: list | None = None  # on a cluster: each replica's id, state, node and pid (at most ~5 s old)

    def as_dict(self) -> dict:
        return asdict(self)


# -- the pid file ------------------------------------------------------------------------------------

def state_dir(settings: Settings, config: ServeConfig | None = None) -> Path:
    return (config or settings.serving).state_dir(settings)


def pid_file(settings: Settings, config: ServeConfig | None = None) -> Path:
    return state_dir(settings, config) / PID_FILE


def read_pid_file(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError):
        return {}  # half-written or garbage: treated as stale


def write_pid_file(path: Path, data: dict) -> None:
    """Atomic replace, so a reader sees the old or the new content, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def update_pid_file(path: Path, **changes) -> None:
    write_pid_file(path, {**(read_pid_file(path) or {}), **changes})


def is_serving_process(info: dict | None) -> bool:
    """The pid file names a live serving process (not a zombie, not a recycled pid)."""
    if not info or "pid" not in info:
        return False
    child = _children.get(info["pid"])
    if child is not None and child.poll() is not None:  # ours and exited: reap it
        _children.pop(info["pid"], None)
        return False
    try:
        p = psutil.Process(int(info["pid"]))
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        if info.get("start_id") and start_id(p.pid) != info["start_id"]:
            return False
        return any(MAIN_MODULE in part for part in p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


@contextmanager
def _lock(path: Path):
    """One start/stop/update at a time per warehouse (CLI and Dagster may race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# -- talking to it ------------------------------------------------------------------------------------

def _health(endpoint: str, timeout: float = 2.0) -> dict | None:
    try:
        r = httpx.get(f"{endpoint}/healthz", timeout=timeout)
        return r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def status(settings: Settings, config: ServeConfig | None = None) -> ServingStatus:
    """Is a serving process running for this warehouse, where, and which model version does it serve?"""
    config = config or settings.serving
    path = pid_file(settings, config)
    log = str(state_dir(settings, config) / LOG_FILE)
    info = read_pid_file(path)
    if not is_serving_process(info):
        detail = None if info is None else f"stale pid file {path} (process {info.get('pid')} is gone)"
        return ServingStatus(False, None, None, None, "stopped", str(path), log, detail)
    endpoint = info.get("endpoint")
    health = _health(endpoint) if endpoint else None
    if health is None:
        state = info.get("state", "starting")
        detail = "Ray and Serve up, no champion yet" if state == "warm" else f"{endpoint}/healthz does not answer 200 yet"
        return ServingStatus(True, endpoint, info.get("model_version"), info["pid"], state if state in (
            "starting", "warm", "stopping") else "unreachable", str(path), log, detail)
    return ServingStatus(True, endpoint, str(health.get("model_version")), info["pid"], "running", str(path), log,
                         info.get("update_error"), health.get("challenger_version"), info.get("ray_address"),
                         info.get("replicas"))


# -- starting -------------------------------------------------------------------------------------------

def leftovers(info: dict) -> list[psutil.Process]:
    """Processes a dead serving process left behind: its session (it was started in a new one) holds
    Ray's workers, the replicas and HAProxy, which may still hold the port and the journal."""
    sid, started = info.get("pid"), info.get("started_at", 0)
    if not isinstance(sid, int):
        return []
    found = []
    for p in psutil.process_iter(["create_time", "cmdline"]):
        try:
            command = " ".join(p.info["cmdline"] or [])
            if (p.pid != sid and os.getsid(p.pid) == sid and p.info["create_time"] >= started - 1
                    and ("ray" in command or "haproxy" in command)):  # never an unrelated reuser of the pid
                found.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def stop_leftovers(info: dict, *, grace: float = 0.0, timeout: float = 15.0) -> int:
    """End what a dead serving process left behind (see `leftovers`): give it `grace` s to exit on its
    own, then SIGKILL the rest. Returns how many there were."""
    procs = leftovers(info)
    _, alive = psutil.wait_procs(procs, timeout=grace) if grace else ([], procs)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=timeout)
    return len(procs)


def child_env(settings: Settings, config: ServeConfig) -> dict[str, str]:
    """The environment that rebuilds exactly these Settings and ServeConfig in the serving process (and hands
    it the node's ingress secret, on a Ray cluster: `ingress.cluster_ingress_secret`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIT_") or k == SECRET_VAR}
    env.update(settings.model_copy(update={"serving": config}).to_env())
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(settings: Settings, config: ServeConfig, pid: int, endpoint: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    path, log = pid_file(settings, config), state_dir(settings, config) / LOG_FILE
    while time.monotonic() < deadline:
        info = read_pid_file(path) or {"pid": pid}
        child = _children.get(pid)  # our own child: its handle is the surest sign of life
        alive = child.poll() is None if child is not None else is_serving_process({**info, "pid": pid})
        if not alive:
            code = f" with code {child.returncode}" if child is not None else ""
            raise ServingError(f"the serving process (pid {pid}) exited during start-up{code}; "
                               f"last lines of {log}:\n{_log_tail(log)}")
        if info.get("state") == "running" and _health(endpoint):
            return
        time.sleep(0.25)
    raise ServingError(f"{endpoint}/healthz did not answer within {timeout:.0f} s; the process (pid {pid}) "
                       f"keeps starting; see {log}:\n{_log_tail(log)}")


def start(settings: Settings, config: ServeConfig | None = None, *, wait: bool = True,
          timeout: float | None = None, warm: bool = False) -> str:
    """Start the serving process for this warehouse (unless one runs) and return its endpoint URL.

    With `wait`, return once /healthz answers 200 (about 12 s on two cores). Raises ChampionUnavailable when no
    model is promoted, ServingError when the port is taken or the process dies while starting (with the tail of
    its log). `warm`: no champion needed, no wait (Ray and Serve start now, the champion is deployed once
    promoted; `update` or `start` asks for it at once).
    """
    from hit_platform.adapters.tracking import ChampionUnavailable, Tracker  # mlflow: only when starting

    config = config or settings.serving
    timeout = timeout or config.start_timeout_s
    sdir = state_dir(settings, config)
    with _lock(sdir / "serving.lock"):
        path = pid_file(settings, config)
        info = read_pid_file(path)
        if is_serving_process(info):
            endpoint = info["endpoint"]
            pid = info["pid"]
            if info.get("state") == "warm" and not warm:  # deploy the champion now, not at its next poll
                os.kill(pid, signal.SIGHUP)
        else:
            if info is not None:
                stop_leftovers(info)  # a serving process killed outright leaves Ray's workers and HAProxy
                path.unlink(missing_ok=True)  # stale: its process is gone
            tracker = None if warm else Tracker(settings)
            if tracker is not None and tracker.champion_info() is None:
                raise ChampionUnavailable(
                    f"nothing to serve: registered model {settings.mlflow.model_name!r} in {tracker.uri} has no "
                    "'champion' alias yet (materialize the graph first)")
            if not _port_free(config.host, config.port):
                raise ServingError(f"{config.host}:{config.port} is already in use by another program; "
                                   "free it or set HIT_SERVE_PORT")
            sdir.mkdir(parents=True, exist_ok=True)
            with open(sdir / LOG_FILE, "ab") as log:
                proc = subprocess.Popen([sys.executable, "-m", MAIN_MODULE, *(["--warm"] if warm else [])],
                                        env=child_env(settings, config), cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
            _children[proc.pid] = proc
            endpoint, pid = config.endpoint, proc.pid
            write_pid_file(path, {"pid": pid, "start_id": start_id(pid), "state": "starting",
                                  "endpoint": endpoint, "host": config.host, "port": config.port,
                                  "warehouse": str(settings.warehouse), "log": str(sdir / LOG_FILE),
                                  "started_at": time.time()})
    if wait and not warm:
        _wait_ready(settings, config, pid, endpoint, timeout)
    return endpoint


# -- updating -------------------------------------------------------------------------------------------

def update(settings: Settings, config: ServeConfig | None = None, *, timeout: float = 120.0) -> ServingStatus:
    """Make the running process serve the current champion (shadowed by the challenger alias, if any),
    swapping it in without dropping a request.

    Signals the process (SIGHUP); it redeploys with the new version in the deployment's user_config, so Serve
    reconfigures the running replicas in place (a warm process deploys its first). Returns once /healthz reports
    the new version. Raises ServingError if nothing runs or the version cannot be loaded.
    """
    from hit_platform.adapters.tracking import ChampionUnavailable, Tracker

    config = config or settings.serving
    with _lock(state_dir(settings, config) / "serving.lock"):
        st = status(settings, config)
        if not st.running:
            raise ServingError(f"no serving process runs for {settings.warehouse} ({st.detail or 'no pid file'}); "
                               "start it first (hit-platform serve)")
        tracker = Tracker(settings)
        champion, shadow = tracker.champion_info(), tracker.challenger_info()
        if champion is None:
            raise ChampionUnavailable(f"no champion alias on {settings.mlflow.model_name!r}: nothing to update to")
        target = str(champion.version)
        challenger = str(shadow.version) if shadow is not None and str(shadow.version) != target else None
        if (st.model_version, st.challenger_version) == (target, challenger):
            return st
        path = pid_file(settings, config)
        update_pid_file(path, requested_version=target)
        if st.state != "starting":  # one starting may not handle SIGHUP yet: it reads requested_version once up
            os.kill(st.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = read_pid_file(path) or {}
            if (info.get("model_version"), info.get("challenger_version")) == (target, challenger):
                health = _health(st.endpoint)
                if health and (str(health.get("model_version")), health.get("challenger_version")) == (
                        target, challenger):
                    return status(settings, config)
            if info.get("update_error") and (info.get("update_error_version"), info.get(
                    "update_error_challenger")) == (target, challenger):
                shadowed = f" shadowed by {challenger}" if challenger else ""
                raise ServingError(f"the serving process could not switch to version {target}{shadowed}: "
                                   f"{info['update_error']} (still serving {st.model_version})")
            if not is_serving_process(info):
                raise ServingError(f"the serving process exited during the update; see {st.log_file}")
            time.sleep(0.25)
        raise ServingError(f"the serving process did not report version {target} within {timeout:.0f} s; "
                           f"see {st.log_file}")


# -- stopping -------------------------------------------------------------------------------------------

def stop(settings: Settings, config: ServeConfig | None = None, *, timeout: float = 90.0) -> bool:
    """Stop the serving process cleanly (Serve shutdown, inference log flushed, Ray stopped).

    Returns False if none was running (a stale pid file is removed). Escalates to SIGKILL of the
    process's own session only if it has not exited after `timeout` seconds.
    """
    config = config or settings.serving
    with _lock(state_dir(settings, config) / "serving.lock"):
        path = pid_file(settings, config)
        info = read_pid_file(path)
        if not is_serving_process(info):
            if info:
                stop_leftovers(info)
            path.unlink(missing_ok=True)
            commit_left_journal(settings, config)
            return False
        pid = int(info["pid"])
        os.kill(pid, signal.SIGTERM)
        if not _wait_exit(pid, timeout):
            try:
                os.killpg(pid, signal.SIGKILL)  # its own session (start_new_session): Ray's processes too
            except ProcessLookupError:
                pass
            _wait_exit(pid, 10)
        path.unlink(missing_ok=True)
        # Whatever outlived it (a replica still exiting) ends now; what it left in the journal is committed.
        stop_leftovers(info, grace=15)
        commit_left_journal(settings, config)
        return True


def commit_left_journal(settings: Settings, config: ServeConfig) -> int:
    """Commit what a serving process that died left in the journal (rows inserted); a live one does it itself."""
    from hit_platform.serving.inference_log.journal import OPEN, SEALED, journal_files

    journal = config.journal(settings)
    if config.replicas_commit() or not journal_files(journal, (SEALED, OPEN)):
        return 0
    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.serving.inference_log import JournalCommitter

    committer = JournalCommitter(Lake(settings), journal)
    committer.close()  # commits what the journal holds
    return committer.committed_rows


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child = _children.get(pid)
        if child is not None and child.poll() is not None:
            _children.pop(pid, None)
            return True
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.2)
    return False
