"""How the serving process runs: address, limits, replicas, inference-log cadence.

Every field can be overridden by an environment variable `HIT_SERVE_<NAME>`
(e.g. `HIT_SERVE_PORT=8080`, `HIT_SERVE_MAX_BATCH=50000`). The defaults keep
everything on 127.0.0.1:8000 with two replicas.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hit_platform.settings import Settings


class ServeConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HIT_SERVE_", extra="ignore")

    host: str = Field("127.0.0.1", description="address the HTTP endpoint listens on (loopback by default)")
    port: int = Field(8000, ge=1, le=65535, description="port of the HTTP endpoint")
    max_batch: int = Field(10_000, ge=1, description="most songs one /predict/batch request may carry (else 413)")
    replicas: int = Field(2, ge=1, description="Ray Serve replicas of the model deployment (two on two cores: "
                                               "one Python process alone answers ~0.7x the requests/s of plain "
                                               "uvicorn)")
    replica_cpus: float = Field(0.5, gt=0, description="Ray CPUs reserved per replica (leave room for a surge "
                                                       "replica during a code change)")
    ray_cpus: int = Field(2, ge=1, description="CPUs of the embedded Ray instance (ignored with RAY_ADDRESS)")
    max_ongoing_requests: int = Field(64, ge=1, description="concurrent requests per replica before queueing")
    fast_proxy: bool = Field(True, description="serve through Ray Serve's HAProxy ingress and throughput-optimized "
                                               "mode (about 3.5x the requests/s of the default Python proxy)")
    log_flush_seconds: float = Field(1.0, gt=0, description="inference log: each replica writes its buffer to the "
                                                            "journal at least this often")
    log_batch_rows: int = Field(5_000, ge=1, description="inference log: a replica flushes early once this many "
                                                        "rows wait")
    log_commit_seconds: float = Field(5.0, gt=0, description="inference log: journal files are committed to the lake "
                                                             "this often (one transaction for all replicas)")
    log_committer: Literal["auto", "process", "replica"] = Field(
        "auto", description="who commits the journal to the lake: the serving process (one writer; needs the "
                            "replicas on this machine), each replica (Ray cluster), or auto: the serving process "
                            "unless RAY_ADDRESS is set")
    journal_dir: Path | None = Field(None, description="inference log journal: rows served and not yet in the lake "
                                                       "(default <warehouse>/serving/journal)")
    start_timeout_s: float = Field(180.0, gt=0, description="how long `start` waits for /healthz")

    def state_dir(self, settings: Settings) -> Path:
        """Where the serving process keeps its pid file, log and helpers."""
        return settings.warehouse / "serving"

    def journal(self, settings: Settings) -> Path:
        return self.journal_dir or self.state_dir(settings) / "journal"

    def replicas_commit(self) -> bool:
        """Whether each replica commits its journal itself (Ray cluster) instead of the serving process."""
        if self.log_committer == "auto":
            return bool(os.environ.get("RAY_ADDRESS"))
        return self.log_committer == "replica"

    @property
    def endpoint(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def max_body_bytes(self) -> int:
        """A generous ceiling on a request body, checked before reading it (a song is ~400 bytes of JSON)."""
        return self.max_batch * 4096 + 65_536
