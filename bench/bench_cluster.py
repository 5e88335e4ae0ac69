"""Serving on a three-node Ray cluster against a one-node one, on this one machine.

    .venv/bin/python bench/bench_cluster.py [--seconds 20] [--connections 16]   (root: network namespaces)

Starts a Ray cluster in network namespaces (hit_platform/cluster: a head and N workers, each with its own
address, temp dir and object store), a lake every node reaches (PostgreSQL + S3 on the bridge), and serves
the champion with `hit-platform serve` run on the head (one replica a node, our HAProxy on every node),
then runs wrk against the head's :8000 from the host. Once with two workers (three nodes, three replicas),
once with none (one node: the same three replicas on the head). Prints requests/s and p99 of each and
their ratio.

On two cores the nodes share the same CPUs, so the ratio measures what the cluster costs (HAProxy routing
across veth pairs, replicas on other nodes, three raylets), not what it adds: on real machines each node
brings its own cores. Others may share the machine: each round prints the load average (1, 5, 15 min) as
it starts and ends, beside its figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from hit_platform.cluster.netns import netns_missing_reason
from hit_platform.cluster.nodes import LocalCluster
from hit_platform_tests.support.cluster import cluster_lake, lake_missing_reason, running_per_node, served_on
from hit_platform_tests.support.load import Wrk, WrkResult
from hit_platform_tests.support.serving import song


def load_average() -> str:
    """The machine's load average over 1, 5 and 15 minutes (two cores: above 2, others compete for them)."""
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def one_cluster(workers: int, seconds: float, connections: int) -> WrkResult:
    root = Path(tempfile.mkdtemp(prefix="hb", dir="/tmp"))  # short: Ray's and HAProxy's socket paths
    cluster = LocalCluster(root, workers=workers, prefix="hitb", subnet="10.81.0")
    try:
        cluster.up()
        with cluster_lake(cluster, root / "lake") as settings, served_on(cluster, settings, replicas=3) as (served, _):
            url = f"http://{cluster.ip('head')}:8000/predict"
            Wrk(url, song(), 3, connections=connections).result()  # warm-up
            load = load_average()
            result = Wrk(url, song(), seconds, connections=connections).result()
            print(f"{len(cluster.names)} node(s), replicas per node {running_per_node(served)}: {result.line()}  "
                  f"load average {load} -> {load_average()}", flush=True)
            return result
    finally:
        cluster.down()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    if reason := netns_missing_reason() or lake_missing_reason():
        sys.exit(f"cannot run: {reason}")
    three = one_cluster(2, args.seconds, args.connections)
    one = one_cluster(0, args.seconds, args.connections)
    print(f"three nodes vs one: {three.rps / one.rps:.2f}x the requests/s, {three.p99 / one.p99:.2f}x the p99 "
          f"(load average now {load_average()}). On two shared cores this ratio measures the cluster's overhead "
          "(routing over veth pairs, three raylets on the same CPUs), not its scale: on real machines each node "
          "brings its own cores")


if __name__ == "__main__":
    main()
