"""A real Ray cluster for the tests: a head and two worker nodes on this machine, each in its own network
namespace on a bridge (`hit_platform.cluster`), with the scale path's PostgreSQL and S3 listening on the
bridge's host address so every node reaches the one lake (`support/cluster.py`). Without root or iproute2
the tests skip and say why. Whatever happens, the namespaces and every process in them are gone afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hit_platform.cluster.netns import netns_missing_reason
from hit_platform.cluster.nodes import LocalCluster
from hit_platform.settings import Settings
from hit_platform_tests.support.cluster import LakeSecrets, cluster_lake, lake_missing_reason

# Not the default of `hit-platform cluster up` (hitc, 10.77.0): a cluster an operator left up is not touched.
PREFIX, SUBNET = "hitt", "10.79.0"


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[LocalCluster]:
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


@pytest.fixture(scope="module")
def lake_secrets() -> LakeSecrets:
    """The lake's S3 secret key and PostgreSQL password, drawn for this module (to look for in the nodes' files)."""
    return LakeSecrets()


@pytest.fixture(scope="module")
def lake_settings(ray_cluster: LocalCluster, lake_secrets: LakeSecrets) -> Iterator[Settings]:
    """Settings of a lake every node reaches: catalog in PostgreSQL, data in S3, both on the bridge."""
    if reason := lake_missing_reason():
        pytest.skip(reason)
    with cluster_lake(ray_cluster, ray_cluster.root / "lake", lake_secrets) as settings:
        yield settings


def journal_files(cluster: LocalCluster, node: str) -> list[Path]:
    return sorted(p for p in cluster.journal_dir(node).iterdir() if p.is_file())
