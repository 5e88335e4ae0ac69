"""A Ray cluster's world for the cluster tests and bench/bench_cluster.py: a lake every node reaches
(PostgreSQL and S3 on the bridge's host address) and the champion served on the cluster by
`hit-platform serve` run on the head node, one replica a node."""

from __future__ import annotations

import secrets
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hit_platform.cluster.nodes import LocalCluster
from hit_platform.serving import process
from hit_platform.settings import Settings
from hit_platform_tests.support.servers import (S3Credentials, create_database, dsn_with, postgres_missing_reason,
                                                postgres_server, s3_missing_reason, s3_server)
from hit_platform_tests.support.serving import promote_champion

HIT = [sys.executable, "-m", "hit_platform.cli"]


def lake_missing_reason() -> str | None:
    return postgres_missing_reason() or s3_missing_reason()


@dataclass(frozen=True)
class LakeSecrets:
    """The credentials of a cluster's lake, drawn fresh, so a test can look for them where they must not be."""

    s3_secret_access_key: str = field(default_factory=lambda: "s3-" + secrets.token_hex(16))
    postgres_password: str = field(default_factory=lambda: "pg-" + secrets.token_hex(16))

    def values(self) -> list[str]:
        return [self.s3_secret_access_key, self.postgres_password]


@contextmanager
def cluster_lake(cluster: LocalCluster, tmp: Path, creds: LakeSecrets | None = None) -> Iterator[Settings]:
    """Settings whose lake has its catalog in PostgreSQL and its data in S3, both on the bridge. Its S3 secret
    key and PostgreSQL password are `creds` (the test server trusts the bridge, so the password is not
    checked, but it travels wherever the catalog's DSN does)."""
    host, creds = cluster.net.host_address, creds or LakeSecrets()
    with postgres_server(tmp / "pg", host=host) as dsn, s3_server(
            tmp / "s3", host=host, credentials=S3Credentials(secret_access_key=creds.s3_secret_access_key)) as (
            endpoint, bucket, s3_creds):
        name = "lake_" + uuid.uuid4().hex[:8]
        catalog = dsn_with(create_database(dsn, name), password=creds.postgres_password)
        yield Settings(warehouse=tmp / "warehouse", lake={"catalog": f"postgres:{catalog}",
                                                          "data_path": f"s3://{bucket}/{name}"},
                       s3=s3_creds.settings_section(endpoint))


@contextmanager
def served_on(cluster: LocalCluster, settings: Settings, seed: int = 29,
              replicas: int | None = None) -> Iterator[tuple[Settings, dict]]:
    """The champion (promoted here) served by `hit-platform serve` on the head node: a replica per node (or
    `replicas`, spread as Serve likes), HTTP on every node's :8000. Yields the settings and their
    environment; `hit-platform stop` after."""
    one_a_node = replicas is None
    settings = settings.model_copy(update={"serving": settings.serving.model_copy(update={
        "host": "0.0.0.0", "port": 8000, "replicas": replicas or len(cluster.names),
        "max_replicas_per_node": 1 if one_a_node else None,
        "start_timeout_s": 900, "ray_address": cluster.address})})
    promote_champion(settings, seed=seed)
    env = settings.to_env()
    try:
        cluster.run("head", [*HIT, "serve"], env=env, timeout=1000)
        yield settings, env
    finally:
        cluster.run("head", [*HIT, "stop"], env=env, check=False, timeout=300)


def running_per_node(settings: Settings) -> dict[str, int]:
    """Running replicas per node address, as the serving process last recorded them (every ~5 s)."""
    return (process.read_pid_file(process.pid_file(settings)) or {}).get("running_per_node") or {}
