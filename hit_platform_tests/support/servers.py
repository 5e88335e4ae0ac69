"""Real servers on 127.0.0.1 for the scale-path tests and benchmarks.

    with postgres_server(tmp) as dsn:            # 'host=127.0.0.1 port=... user=postgres dbname=postgres'
        lake_dsn = create_database(dsn, "lake")
    with s3_server(tmp) as (endpoint, bucket, creds):   # moto in server mode, bucket created
        ...

PostgreSQL: Debian's server binaries (`apt-get install -y postgresql`, found under
/usr/lib/postgresql/*/bin), a fresh cluster per call (initdb in its own temp data
dir, trust authentication, `listen_addresses='127.0.0.1'`, a free port, the unix
socket inside the temp dir). initdb refuses to run as root, so as root the cluster
is made and run by the `postgres` user (`runuser -u postgres --`) in a directory
it owns. S3: `moto_server` (package `moto[server]`) as a subprocess on a free
127.0.0.1 port, in memory; the bucket is created with boto3.

Both stop their server and remove its files on exit, also when the body raises.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_SUPERUSER = "postgres"
APT_HINT = "apt-get install -y postgresql"
PIP_HINT = 'pip install "moto[server]"'


# -- helpers ------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin_dir() -> Path | None:
    """The newest PostgreSQL server's bin folder (Debian layout first, then PATH)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")])
    for d in reversed(candidates):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    return None


def postgres_missing_reason() -> str | None:
    """Why `postgres_server` cannot run here, or None."""
    if postgres_bin_dir() is None:
        return f"PostgreSQL server binaries not found (initdb, pg_ctl): {APT_HINT}"
    if os.geteuid() == 0:
        try:
            import pwd
            pwd.getpwnam(PG_SUPERUSER)
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as"
        if shutil.which("runuser") is None and shutil.which("su") is None:
            return "running as root and neither runuser nor su is available to run initdb as postgres"
    return None


def s3_missing_reason() -> str | None:
    import importlib.util
    for mod in ("moto", "boto3", "flask"):
        if importlib.util.find_spec(mod) is None:
            return f"module {mod} missing for the S3 test server: {PIP_HINT}"
    return None


def _as_user(cmd: list[str]) -> list[str]:
    """Run as the postgres user when we are root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", PG_SUPERUSER, "--", *cmd]
    import shlex
    return ["su", PG_SUPERUSER, "-s", "/bin/sh", "-c", shlex.join(cmd)]


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        extra = log.read_text()[-3000:] if log is not None and log.exists() else ""
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stdout[-3000:]}\n{extra}")


def dsn_with(dsn: str, **params: str) -> str:
    """A libpq keyword DSN with some parameters replaced (e.g. dbname)."""
    parts = dict(p.split("=", 1) for p in dsn.split())
    parts.update(params)
    return " ".join(f"{k}={v}" for k, v in parts.items())


def create_database(dsn: str, name: str) -> str:
    """Create database `name` on the server of `dsn` (if absent); returns its DSN."""
    parts = dict(p.split("=", 1) for p in dsn.split())
    bin_dir = postgres_bin_dir()
    createdb = str(bin_dir / "createdb") if bin_dir and (bin_dir / "createdb").exists() else "createdb"
    proc = subprocess.run([createdb, "-h", parts["host"], "-p", parts["port"], "-U", parts["user"], name],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0 and "already exists" not in proc.stdout:
        raise RuntimeError(f"createdb {name} failed: {proc.stdout}")
    return dsn_with(dsn, dbname=name)


# -- PostgreSQL ------------------------------------------------------------------

def _pg_root(tmp_dir: Path) -> Path:
    """A fresh directory the server's user can own and reach.

    As root, `tmp_dir` (e.g. pytest's, under a 0700 root folder) may not be
    reachable by the postgres user; then a fresh folder under the system temp
    dir is used (removed on exit as well). The unix socket path must also stay
    under ~100 characters, which pytest's tmp paths can exceed.
    """
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="pg_", dir=tmp_dir))
    if os.geteuid() == 0:
        shutil.chown(root, PG_SUPERUSER)
        probe = subprocess.run(_as_user(["test", "-w", str(root)]), capture_output=True)
        if probe.returncode != 0 or len(str(root)) > 60:
            shutil.rmtree(root, ignore_errors=True)
            root = Path(tempfile.mkdtemp(prefix="hit_pg_"))
            shutil.chown(root, PG_SUPERUSER)
    elif len(str(root)) > 60:
        shutil.rmtree(root, ignore_errors=True)
        root = Path(tempfile.mkdtemp(prefix="hit_pg_"))
    return root


@contextmanager
def postgres_server(tmp_dir: Path, *, fast: bool = True, host: str = "127.0.0.1") -> Iterator[str]:
    """A fresh PostgreSQL cluster on <host>:<free port>; yields the DSN of its `postgres` database.

    `fast` turns off fsync/synchronous_commit (a throw-away test cluster). `host`: 127.0.0.1, or the
    bridge address of a test's network namespaces (only that /24 may connect).
    Use `create_database(dsn, name)` for more databases.
    """
    reason = postgres_missing_reason()
    if reason:
        raise RuntimeError(reason)
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None
    root = _pg_root(Path(tmp_dir))
    data, sock, log = root / "data", root / "sock", root / "postgres.log"
    started = False
    try:
        _run(_as_user(["mkdir", "-p", str(sock)]), "mkdir socket dir")
        _run(_as_user([str(bin_dir / "initdb"), "-D", str(data), "-U", PG_SUPERUSER, "--auth=trust",
                       "--encoding=UTF8", "--locale=C", "--no-sync"]), "initdb")
        settings = [f"listen_addresses = '{host}'", f"unix_socket_directories = '{sock}'",
                    "max_connections = 200"]
        if fast:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        conf = data / "postgresql.conf"
        # postgresql.conf belongs to the postgres user; root may append to it
        with conf.open("a") as f:
            f.write("\n# hit_platform_tests.support.servers\n" + "\n".join(settings) + "\n")
        # only loopback, trust: nothing but this machine can reach the throw-away cluster
        clients = "127.0.0.1/32" if host == "127.0.0.1" else host.rsplit(".", 1)[0] + ".0/24"
        (data / "pg_hba.conf").write_text(f"local all all trust\nhost all all {clients} trust\n")
        if os.geteuid() == 0:
            shutil.chown(data / "pg_hba.conf", PG_SUPERUSER)
        for attempt in range(5):
            port = free_port()
            proc = subprocess.run(
                _as_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                          "-o", f"-p {port}", "start"]),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if proc.returncode == 0:
                started = True
                break
            if attempt == 4 or "could not bind" not in (log.read_text() if log.exists() else ""):
                raise RuntimeError(f"pg_ctl start failed: {proc.stdout}\n"
                                   f"{log.read_text()[-3000:] if log.exists() else ''}")
        yield f"host={host} port={port} user={PG_SUPERUSER} dbname=postgres"
    finally:
        if started:
            subprocess.run(_as_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                                     "stop"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


# -- S3 (moto) --------------------------------------------------------------------

@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str = "hit-test-key"
    secret_access_key: str = "hit-test-secret"
    region: str = "us-east-1"

    def env(self, endpoint_url: str) -> dict[str, str]:
        """The `HIT_S3_*` environment that points `Settings` at this server."""
        return {"HIT_S3_ENDPOINT": endpoint_url, "HIT_S3_REGION": self.region,
                "HIT_S3_ACCESS_KEY_ID": self.access_key_id, "HIT_S3_SECRET_ACCESS_KEY": self.secret_access_key,
                "HIT_S3_URL_STYLE": "path", "HIT_S3_USE_SSL": "false"}

    def settings_section(self, endpoint_url: str) -> dict:
        """The same as the `s3` section of `Settings`."""
        return {"endpoint": endpoint_url, "region": self.region, "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key, "url_style": "path", "use_ssl": False}


def s3_client(endpoint_url: str, credentials: S3Credentials):
    import boto3
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=credentials.region,
                        aws_access_key_id=credentials.access_key_id,
                        aws_secret_access_key=credentials.secret_access_key)


def list_objects(endpoint_url: str, credentials: S3Credentials, bucket: str, prefix: str = "") -> list[str]:
    """Every key in the bucket under `prefix`."""
    client = s3_client(endpoint_url, credentials)
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


@contextmanager
def s3_server(tmp_dir: Path, *, bucket: str = "hit-lake", credentials: S3Credentials | None = None,
              host: str = "127.0.0.1") -> Iterator[tuple[str, str, S3Credentials]]:
    """moto's S3 server on <host>:<free port> with `bucket` created.

    Yields (endpoint_url, bucket, credentials). Objects live in the server's memory.
    """
    reason = s3_missing_reason()
    if reason:
        raise RuntimeError(reason)
    credentials = credentials or S3Credentials()
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(tempfile.mkstemp(prefix="moto_", suffix=".log", dir=tmp_dir)[1])
    proc = None
    try:
        for attempt in range(5):
            port = free_port()
            endpoint = f"http://{host}:{port}"
            with log_path.open("wb") as log:
                proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).read()
                    break
                except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                    time.sleep(0.1)
            if proc.poll() is None:
                break
            if attempt == 4:
                raise RuntimeError(f"moto server did not start: {log_path.read_text()[-3000:]}")
        s3_client(endpoint, credentials).create_bucket(Bucket=bucket)
        yield endpoint, bucket, credentials
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log_path.unlink(missing_ok=True)
