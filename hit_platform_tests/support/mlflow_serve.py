"""`mlflow models serve` of a registered model on 127.0.0.1, as a user starts it, for as long as a test needs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from hit_platform.serving.loopback import free_port
from hit_platform.settings import Settings


@contextmanager
def mlflow_models_serve(settings: Settings, workdir: Path, model_uri: str = "models:/hit_model@champion",
                        start_timeout: float = 180.0) -> Iterator[str]:
    """The URL of MLflow's scoring server for `model_uri` in the settings' MLflow store (`--env-manager local`).

    MLflow runs the server as `bash -c "exec uvicorn ..."`: uvicorn must be on PATH, which an activated
    virtualenv gives; here the venv's bin folder is put first. The server and its uvicorn child share a
    process group of their own, ended as a whole when the block exits.
    """
    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = workdir / "mlflow-models-serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
                                 "-h", "127.0.0.1", "-p", str(port)], cwd=workdir, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/ping", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow models serve not up after {start_timeout:.0f} s:\n"
                                   f"{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        _end_group(proc)


def _end_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM to the server's process group, SIGKILL to whatever is left of it after `grace` seconds."""
    pgid = proc.pid  # start_new_session: the group is the server's own
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()  # reap the server itself, so its pid leaves the group
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                proc.wait()
                return
            time.sleep(0.1)
    proc.wait(timeout=5)
