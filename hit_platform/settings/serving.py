"""How the serving process runs (`HIT_SERVE_*`, and Ray's own `RAY_ADDRESS`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from hit_platform.settings import Settings


class ServeConfig(BaseSettings):
    """How the serving process runs: address, limits, replicas, inference-log cadence (`HIT_SERVE_*`).
    The defaults keep everything on 127.0.0.1:8000 with two replicas."""

    model_config = SettingsConfigDict(env_prefix="HIT_SERVE_", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", description="address the HTTP endpoint listens on (loopback by default)")
    port: int = Field(8000, ge=1, le=65535, description="port of the HTTP endpoint")
    max_batch: int = Field(10_000, ge=1, description="most songs one /predict/batch request may carry (else 413)")
    replicas: int = Field(2, ge=1, description="Ray Serve replicas of the model deployment (two on two cores: "
                                               "one Python process alone answers ~0.7x the requests/s of plain "
                                               "uvicorn)")
    replica_cpus: float = Field(0.5, gt=0, description="Ray CPUs reserved per replica (leave room for a surge "
                                                       "replica during a code change)")
    max_replicas_per_node: int | None = Field(
        None, ge=1, description="on a Ray cluster: at most this many replicas on one node (1 with as many replicas as "
                                "nodes: one per node, and a node that rejoins gets its replica back, which commits "
                                "the journal the node's dead replicas left); unset: Serve spreads them as it likes")
    ray_cpus: int = Field(2, ge=1, description="CPUs of the embedded Ray instance (ignored with RAY_ADDRESS)")
    max_ongoing_requests: int = Field(64, ge=1, description="concurrent requests per replica before queueing")
    batch_max_size: int = Field(64, ge=1, description="/predict: most concurrent songs a replica scores in one model "
                                                     "call (1 = one call per request)")
    batch_wait_ms: float = Field(0.0, ge=0, description="/predict: how long a batch waits for more requests (0: only "
                                                        "those that arrived together; a lone request never waits)")
    fast_proxy: bool = Field(True, description="serve through Ray Serve's HAProxy ingress and throughput-optimized "
                                               "mode (about 3.5x the requests/s of the default Python proxy)")
    log_flush_seconds: float = Field(1.0, gt=0, description="inference log: each replica seals (fsyncs) its journal "
                                                            "segment at least this often; a power cut loses at most "
                                                            "this much of the log")
    log_batch_rows: int = Field(5_000, ge=1, description="inference log: a replica seals its segment early once it "
                                                        "holds this many rows")
    log_buffer_rows: int = Field(50_000, ge=1, description="inference log: rows a replica keeps in memory while its "
                                                          "journal cannot be written; past them it answers 503")
    log_commit_seconds: float = Field(5.0, gt=0, description="inference log: journal files are committed to the lake "
                                                             "this often (one transaction for all replicas)")
    log_committer: Literal["auto", "process", "replica"] = Field(
        "auto", description="who commits the journal to the lake: the serving process (one writer; needs the "
                            "replicas on this machine), each replica (Ray cluster), or auto: the serving process "
                            "unless RAY_ADDRESS is set")
    journal_dir: Path | None = Field(None, description="inference log journal: rows served and not yet in the lake "
                                                       "(default <warehouse>/serving/journal); on a Ray cluster a "
                                                       "replica takes it from its node's environment (`ray start`'s) "
                                                       "first")
    ray_address: str | None = Field(
        None, validation_alias=AliasChoices("RAY_ADDRESS", "ray_address"),
        description="a Ray cluster to join (Ray's own RAY_ADDRESS); unset = an embedded Ray on this machine")
    start_timeout_s: float = Field(180.0, gt=0, description="how long `start` waits for /healthz")

    def state_dir(self, settings: "Settings") -> Path:
        """Where the serving process keeps its pid file, log and helpers."""
        return settings.warehouse / "serving"

    def journal(self, settings: "Settings") -> Path:
        return self.journal_dir or self.state_dir(settings) / "journal"

    def replicas_commit(self) -> bool:
        """Whether each replica commits its journal itself (Ray cluster) instead of the serving process."""
        if self.log_committer == "auto":
            return bool(self.ray_address)
        return self.log_committer == "replica"

    @property
    def endpoint(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def max_body_bytes(self) -> int:
        """A generous ceiling on a request body, checked before reading it (a song is ~400 bytes of JSON)."""
        return self.max_batch * 4096 + 65_536

