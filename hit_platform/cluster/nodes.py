"""A real Ray cluster on this one machine: a head and worker nodes, each in its own network namespace.

    cluster = LocalCluster(root=Path("/tmp/hit-cluster"), workers=2)
    cluster.up()                  # `ray start` per node, waits until all nodes are alive
    cluster.address               # '10.77.0.10:6379', the RAY_ADDRESS of a driver on the head node
    cluster.run("head", [...])    # a command on the head node (the serving process runs there)
    cluster.kill_node("w1")       # kill -9 of every process of that node (raylet, workers, replicas)
    cluster.start_node("w1")      # the node restarted: it rejoins
    cluster.down()                # everything stopped, namespaces deleted (also after a failure)

Each node: its own `--node-ip-address`, `--temp-dir` (`<root>/<node>/ray`), `--object-store-memory`
and CPUs, its own HAProxy files (Serve's defaults are one /tmp path per machine) and its own inference-log
journal (`<root>/<node>/journal`, the disk that node would have). Every node's environment holds the
cluster's ingress secret (HIT_INGRESS_SECRET, drawn at `up` into `<root>/ingress_secret`, readable by this
user only): secrets reach the nodes' processes through the environment `ray start` got, never through a Ray
runtime env, which Ray's runtime-env agent logs whole on every node. `hit-platform cluster up/down` runs it
for an operator; `hit_platform_tests/cluster/` for the tests.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hit_platform.cluster.netns import NetnsNetwork

RAY_PORT = 6379
STATE_FILE = "cluster.json"
SECRET_FILE = "ingress_secret"
# serving.ingress.SECRET_VAR (cluster imports nothing of serving): `hit-platform serve` refuses a cluster without it
SECRET_VAR = "HIT_INGRESS_SECRET"


def ray_auth_env() -> dict[str, str]:
    """Ray 2.60 with a token at ~/.ray/auth_token (or RAY_AUTH_TOKEN set): every node and every driver needs
    RAY_AUTH_MODE=token, else a worker cannot join and a driver cannot connect."""
    if "RAY_AUTH_MODE" in os.environ:
        return {"RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"]}
    has_token = os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").exists()
    return {"RAY_AUTH_MODE": "token"} if has_token else {}


def use_ray_auth() -> None:
    """This process, a driver about to join a cluster, takes `ray_auth_env` (unless already set)."""
    for k, v in ray_auth_env().items():
        os.environ.setdefault(k, v)


@dataclass
class LocalCluster:
    root: Path
    workers: int = 2
    prefix: str = "hitc"
    subnet: str = "10.77.0"
    cpus: int = 2  # logical CPUs each node offers Ray (they share the machine's cores)
    object_store_bytes: int = 80 * 1024 * 1024
    net: NetnsNetwork = field(init=False)
    _lock: int | None = field(init=False, default=None, repr=False)

    def __post_init__(self):
        self.root = Path(self.root).resolve()
        self.net = NetnsNetwork(self.prefix, self.subnet)

    @property
    def names(self) -> list[str]:
        return ["head"] + [f"w{i}" for i in range(1, self.workers + 1)]

    def ip(self, node: str) -> str:
        return f"{self.subnet}.{10 + self.names.index(node)}"

    @property
    def address(self) -> str:
        return f"{self.ip('head')}:{RAY_PORT}"

    def node_dir(self, node: str) -> Path:
        return self.root / node

    def journal_dir(self, node: str) -> Path:
        """The inference-log journal of `node`'s replicas (HIT_SERVE_JOURNAL_DIR in its environment)."""
        return self.node_dir(node) / "journal"

    @property
    def secret_file(self) -> Path:
        """The ingress secret every node's environment holds (this user only; on real machines, a copy on each)."""
        return self.root / SECRET_FILE

    def ingress_secret(self) -> str:
        """The cluster's ingress secret, drawn once (by `up`) into `secret_file`."""
        if not self.secret_file.exists():
            made = self.secret_file.with_suffix(".new")
            made.unlink(missing_ok=True)
            fd = os.open(made, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(24))
            os.replace(made, self.secret_file)
        return self.secret_file.read_text().strip()

    def node_env(self, node: str) -> dict[str, str]:
        """The environment `ray start` gets on `node`: its workers (the replicas, Serve's proxies) inherit it."""
        d = self.node_dir(node)
        haproxy = d / "h"  # Serve adds the node id (57 characters): HAProxy's socket path must stay under 97
        secret = {SECRET_VAR: self.secret_file.read_text().strip()} if self.secret_file.exists() else {}
        return {**os.environ, **ray_auth_env(), **secret,
                "RAY_ADDRESS": self.address,  # a driver started on the node finds the cluster
                "HIT_SERVE_JOURNAL_DIR": str(self.journal_dir(node)),
                # workers (the replicas) at the node's own priority, as on one machine (ray_env), not 15 below it
                "RAY_worker_niceness": "0",
                # Serve writes HAProxy's config, socket and state at fixed /tmp paths: one per machine, so on
                # this one machine each node needs its own
                "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(haproxy / "haproxy.cfg"),
                "RAY_SERVE_HAPROXY_SOCKET_PATH": str(haproxy / "admin.sock"),
                "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(haproxy),
                "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(haproxy / "server-state")}

    def ray_start(self, node: str) -> list[str]:
        ray = str(Path(sys.executable).parent / "ray")
        common = ["--node-ip-address", self.ip(node), "--temp-dir", str(self.node_dir(node) / "ray"),
                  "--object-store-memory", str(self.object_store_bytes), "--num-cpus", str(self.cpus),
                  "--disable-usage-stats"]
        if node == "head":
            return [ray, "start", "--head", "--port", str(RAY_PORT), "--include-dashboard=false", *common]
        return [ray, "start", "--address", self.address, *common]

    def run(self, node: str, cmd: list[str], *, env: dict[str, str] | None = None, check: bool = True,
            timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        """`cmd` on `node` (in its namespace, with its environment and `env` on top)."""
        done = subprocess.run(self.net.command(node, cmd), env={**self.node_env(node), **(env or {})},
                              capture_output=True, text=True, timeout=timeout, **kwargs)
        if check and done.returncode != 0:
            raise RuntimeError(f"on node {node}: {' '.join(cmd)} exited {done.returncode}:\n"
                               f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return done

    def start_node(self, node: str, attempts: int = 3) -> None:
        """`ray start` on `node`. On a busy machine a raylet may not register with the head within Ray's
        deadline ("Failed to get node info"): what it started is killed and it starts again."""
        (self.node_dir(node) / "h").mkdir(parents=True, exist_ok=True)
        self.journal_dir(node).mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            try:
                self.run(node, self.ray_start(node), timeout=180)
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                self.net.kill(node)
                if attempt == attempts:
                    raise

    def kill_node(self, node: str) -> int:
        """kill -9 of every process of `node` (raylet, its workers and replicas, HAProxy); returns how many."""
        return self.net.kill(node)

    def hold(self, timeout: float = 1800) -> None:
        """This machine's lock on the prefix, held until `down` (or this process's end): a second run of the
        same prefix (two test runs side by side) waits for it instead of deleting its namespaces (`create`
        first removes what an earlier run of the prefix left) and killing its nodes mid-drill."""
        path = Path(tempfile.gettempdir()) / f"hit-cluster-{self.prefix}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                    os.close(fd)
                    raise TimeoutError(f"the {self.prefix} cluster on this machine is held by process {holder} "
                                       f"({path}) for {timeout:.0f} s; wait for it or `down` it") from None
                time.sleep(2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock = fd

    def up(self, timeout: float = 180) -> None:
        """Namespaces, then the head, then the workers; returns once Ray counts every node alive."""
        self.hold()
        self.root.mkdir(parents=True, exist_ok=True)
        self.ingress_secret()
        self.net.create(self.names)
        (self.root / STATE_FILE).write_text(json.dumps(self.describe(), indent=2))
        for node in self.names:
            self.start_node(node)
        self.wait_nodes(len(self.names), timeout)

    def alive_nodes(self) -> list[str]:
        """The addresses of the nodes Ray counts alive (asked from the head node)."""
        script = ("import json, ray; ray.init(logging_level='ERROR'); "
                  "print(json.dumps(sorted(n['NodeManagerAddress'] for n in ray.nodes() if n['Alive'])))")
        done = self.run("head", [sys.executable, "-c", script], check=False, timeout=60)
        try:
            return json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return []

    def wait_nodes(self, count: int, timeout: float = 120) -> list[str]:
        deadline, alive = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            alive = self.alive_nodes()
            if len(alive) == count:
                return alive
            time.sleep(1)
        raise TimeoutError(f"Ray counts {len(alive)} nodes alive ({alive}), not {count}, after {timeout:.0f} s")

    def down(self) -> None:
        """Every process of every node killed, the namespaces and the bridge deleted. Safe to repeat."""
        self.net.destroy()
        (self.root / STATE_FILE).unlink(missing_ok=True)
        if self._lock is not None:
            os.close(self._lock)  # the flock goes with it
            self._lock = None

    def describe(self) -> dict:
        return {"address": self.address, "prefix": self.prefix, "subnet": self.subnet, "bridge": self.net.bridge, "host_address": self.net.host_address,
                "nodes": {n: {"ip": self.ip(n), "namespace": self.net.namespace(n),
                              "temp_dir": str(self.node_dir(n) / "ray"), "journal": str(self.journal_dir(n))}
                          for n in self.names},
                "auth": ray_auth_env()}
