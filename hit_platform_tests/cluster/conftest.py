"""A real Ray cluster for the tests: a head and two worker nodes on this machine, each in its own network
namespace on a bridge (`hit_platform.adapters.ray_cluster`), with the scale path's PostgreSQL and S3 listening
on the bridge's host address so every node reaches the one lake. Without root or iproute2 the tests skip and
say why. Whatever happens, the namespaces and every process in them are gone afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hit_platform.adapters.ray_cluster.netns import netns_missing_reason
from hit_platform.adapters.ray_cluster.nodes import LocalCluster
from hit_platform.settings import Settings
from hit_platform_tests.support.servers import (create_database, postgres_missing_reason, postgres_server,
                                                s3_missing_reason, s3_server)

# Not the default of `hit-platform cluster up` (hitc, 10.77.0): a cluster an operator left up is not touched.
PREFIX, SUBNET = "hitt", "10.79.0"


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory) -> Iterator[LocalCluster]:
    if reason := netns_missing_reason():
        pytest.skip(f"no Ray cluster in network namespaces here: {reason}")
    # a short root: Ray's and HAProxy's socket paths under it must fit AF_UNIX's 107 bytes and HAProxy's 97
    root = Path(tempfile.mkdtemp(prefix="h", dir="/tmp"))
    cluster = LocalCluster(root, workers=2, prefix=PREFIX, subnet=SUBNET)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
        shutil.rmtree(root, ignore_errors=True)
        assert cluster.net.existing() == [], "namespaces left behind"


@dataclass(frozen=True)
class ClusterLake:
    """Settings for a lake every node reaches: catalog in PostgreSQL, data in S3, both on the bridge."""

    settings: Settings

    @property
    def env(self) -> dict[str, str]:
        return self.settings.to_env()


@pytest.fixture(scope="module")
def cluster_lake(ray_cluster: LocalCluster, tmp_path_factory) -> Iterator[ClusterLake]:
    for reason in (postgres_missing_reason(), s3_missing_reason()):
        if reason:
            pytest.skip(reason)
    host = ray_cluster.net.host_address
    tmp = tmp_path_factory.mktemp("cluster-lake")
    with postgres_server(tmp / "pg", host=host) as dsn, s3_server(tmp / "s3", host=host) as (endpoint, bucket, creds):
        name = "lake_" + uuid.uuid4().hex[:8]
        settings = Settings(warehouse=tmp / "warehouse",
                            lake={"catalog": f"postgres:{create_database(dsn, name)}",
                                  "data_path": f"s3://{bucket}/{name}"},
                            s3=creds.settings_section(endpoint))
        yield ClusterLake(settings)


def journal_files(cluster: LocalCluster, node: str) -> list[Path]:
    return sorted(p for p in cluster.journal_dir(node).iterdir() if p.is_file())
