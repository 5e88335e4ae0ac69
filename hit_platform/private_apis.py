"""The only reads of private upstream APIs in hit_platform, each with why no public one does.

Written for dagster 1.13.27, ray 2.60.0 and uvicorn 0.54.0. `hit_platform_tests/test_private_apis.py` pins
those versions, so an upgrade fails that test by name instead of silently changing a guarantee, and
`hit_platform_tests/test_private_apis.py` also keeps every other module free of `dagster._`, `ray.*._private`
and `_internal=`. To upgrade: read each function below against the new release, fix what moved,
then bump the pins here and in the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the serving replicas read this module and never load Dagster
    import dagster as dg

WRITTEN_FOR = {"dagster": "1.13.27", "ray": "2.60.0", "uvicorn": "0.54.0"}


def latest_check_verdict(instance: dg.DagsterInstance,
                         check: dg.AssetCheckKey) -> tuple[str, dg.AssetCheckEvaluation] | None:
    """(run id, evaluation) of the newest *finished* evaluation of `check`, or None.

    Why private: the public instance API has no reader of check evaluations. The event log storage's
    history is the one that can skip the "planned" records a run leaves when it planned a check and
    then skipped it (its asset made no new version): those judge nothing.
    """
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    done = instance.event_log_storage.get_asset_check_execution_history(
        check, limit=1, status={AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED})
    if not done or done[0].event is None or done[0].event.asset_check_evaluation is None:
        return None
    return done[0].run_id, done[0].event.asset_check_evaluation


def instance_from_dir(storage_dir: Path, config_dir: Path) -> dg.DagsterInstance:
    """The Dagster instance whose `dagster.yaml` is in `config_dir` and whose own files are in `storage_dir`.

    Why private: the public `DagsterInstance.get()` needs `DAGSTER_HOME` to hold both. The repository keeps
    `dagster.yaml` at its root (where `dagster dev` finds it) and the instance's files under
    `warehouse/dagster/`; only an `InstanceRef` says so without changing the process's environment.
    """
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(storage_dir), config_dir=str(config_dir)))


def with_pinned_code_version(deployment, code_version: str, **options):
    """`deployment.options(**options)` with Serve's code version pinned to `code_version`.

    Why private: with the version pinned, a new `user_config` makes Serve call `reconfigure` on the
    running replicas in place (the model swap without a restart); left unpinned, every `serve.run`
    gets a random version and replaces the replicas. `serve deploy` pins it from a config file;
    `Deployment.options` accepts it only with Serve's own `_internal` switch.
    """
    return deployment.options(version=code_version, _internal=True, **options)


def serve_replicas(app_name: str, deployment: str) -> list[dict]:
    """Each replica of `deployment` in `app_name` as the Serve controller knows it: replica id, state,
    node id, node address and pid (running ones and those starting or stopping alike).

    Why private: Serve's public `serve.status()` counts replicas per state but does not say where they run;
    the controller's instance details do (the dashboard's REST API shows the same, and needs the
    dashboard, which the platform's nodes do not run). Called from the serving process and from a replica
    (its /healthz), in a process connected to the cluster.
    """
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    replicas = details.get("applications", {}).get(app_name, {}).get("deployments", {}).get(deployment, {})
    return [{"replica_id": r.get("replica_id"), "state": getattr(r.get("state"), "value", str(r.get("state"))),
             "node_id": r.get("node_id"),
             "node_ip": r.get("node_ip"), "pid": r.get("pid")} for r in replicas.get("replicas", [])]


def bind_replica_grpc_to_loopback() -> bool:
    """Make this process's Serve replicas open their inter-deployment gRPC server on 127.0.0.1, not `[::]`.

    Why private: Ray 2.60 hard-codes `[::]:0` in `Replica._on_initialized`, with no setting. Called in
    the replica (from the deployment's constructor, which Serve runs before that server starts), only
    in loopback mode. Returns whether the patch is in place.
    """
    try:
        import ray.serve._private.replica as replica
    except ImportError:
        return False
    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None:
        return False
    if getattr(original, "_hit_loopback", False):
        return True

    def add_port_loopback(server, address: str):
        if address.startswith("[::]:") or address.startswith("0.0.0.0:"):
            address = "127.0.0.1:" + address.rsplit(":", 1)[1]
        return original(server, address)

    add_port_loopback._hit_loopback = True
    replica.add_port_to_grpc_server = add_port_loopback
    return True


def send_each_answer_in_one_write() -> bool:
    """Make this process's uvicorn write an HTTP answer's status line, headers and (first) body in one write.

    Why private: uvicorn, the server Serve runs in each replica behind HAProxy, writes the head when the app
    sends `http.response.start` and the body at `http.response.body`: two writes. A replica killed between
    them leaves its client a head with no body, which no proxy can retry (HAProxy retries a request that
    got nothing back, or less than a head). No setting joins them; each protocol's `RequestResponseCycle`
    writes through its `transport` attribute, so its `send` is wrapped: the head's writes are held and go
    out with the body's, in one `transport.write` (one `send` syscall while the socket buffer has room: a
    /predict answer is ~2 KB). Returns whether the patch is in place.
    """
    try:
        from uvicorn.protocols.http import h11_impl, httptools_impl
    except ImportError:
        return False
    for module in (httptools_impl, h11_impl):
        cycle = module.RequestResponseCycle
        if not getattr(cycle.send, "_hit_one_write", False):
            cycle.send = _one_write(cycle.send)
    return True


class _HeldWrites:
    """A response's transport while its head waits for its body: writes are held, then written as one."""

    def __init__(self, transport, held: list[bytes]):
        self.transport, self.held = transport, held

    def write(self, data) -> None:
        self.held.append(bytes(data))

    def flush(self) -> None:
        if self.held:
            data, self.held[:] = b"".join(self.held), []
            self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name):
        return getattr(self.transport, name)


def _one_write(send):
    async def send_in_one_write(cycle, message) -> None:
        real = cycle.transport
        held = _HeldWrites(real, cycle.__dict__.pop("_hit_head", []))
        cycle.transport = held
        try:
            await send(cycle, message)
        finally:
            cycle.transport = real
        if message.get("type") == "http.response.start" and held.held and not cycle.response_complete:
            cycle._hit_head = held.held  # the head waits for the body's write
        else:
            held.flush()

    send_in_one_write._hit_one_write = True
    return send_in_one_write


def event_log_files_of_deleted_runs(instance: dg.DagsterInstance) -> list[Path]:
    """The files the SQLite event log storage keeps for runs that no longer exist: `<run id>.db` and its
    `-wal`/`-shm`, in the storage's folder (none for another storage).

    Why private: `DagsterInstance.delete_run` deletes a run's events from its own SQLite file and leaves the
    file (`SqliteEventLogStorage`, one file per run, `path_for_shard`); on the year soak 244 such files held
    43 MB at day 182, growing by a run's file a day however short the run retention. No public API names or
    removes them. Listed before the runs are read: a run's record exists before its first event makes its file.
    """
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    storage = instance.event_log_storage
    if not isinstance(storage, SqliteEventLogStorage):
        return []
    files = [f for f in Path(storage._base_dir).glob("*.db") if f.stem != "index"]
    live = set(instance.get_run_ids())
    return [p for f in files if f.stem not in live
            for p in (f, f.with_name(f.name + "-wal"), f.with_name(f.name + "-shm")) if p.exists()]
