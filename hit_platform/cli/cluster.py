"""`hit-platform cluster up|down|status|run`: a real Ray cluster on this one machine, for trying the
platform past one node (and for its tests): a head and worker nodes, each in its own network namespace
(`cluster`). Needs root and iproute2. On real machines, see the README's "Running at scale".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hit_platform.cli.errors import Refused

DEFAULT_ROOT = Path("/tmp/hit-cluster")


def add_cluster_command(subparsers) -> None:
    """The `cluster` command on the CLI's subparsers."""
    p = subparsers.add_parser(
        "cluster", help="a Ray head and worker nodes on this machine, each in its own network namespace",
        description="up: bridge <prefix>-br at <subnet>.1, namespaces <prefix>-head (<subnet>.10), <prefix>-w1 "
                    "(.11), ... and `ray start` in each with its own --node-ip-address, --temp-dir and object "
                    "store. run NODE CMD...: CMD on that node (`run head hit-platform serve` serves on the "
                    "cluster). down: every process of every node killed, namespaces deleted. Needs root.")
    actions = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    for action, what in (("up", "start the nodes"), ("down", "kill every node's processes, delete the namespaces"),
                         ("status", "the nodes Ray counts alive"), ("run", "a command on one node")):
        a = actions.add_parser(action, help=what)
        a.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"the nodes' folders (default {DEFAULT_ROOT})")
        if action == "up":
            a.add_argument("--workers", type=int, default=2, help="worker nodes (default 2)")
            a.add_argument("--prefix", default="hitc", help="namespace and interface prefix (default hitc)")
            a.add_argument("--subnet", default="10.77.0", help="the nodes' /24 (default 10.77.0)")
        if action == "run":
            a.add_argument("node", help="head, w1, w2, ...")
            a.add_argument("cmd", nargs=argparse.REMAINDER, help="the command and its arguments")
    p.set_defaults(func=cmd_cluster)


def cmd_cluster(args: argparse.Namespace, settings) -> int:
    from hit_platform.cluster.netns import netns_missing_reason
    from hit_platform.cluster.nodes import STATE_FILE, LocalCluster

    if args.action != "status" and (why := netns_missing_reason()):
        raise Refused(f"cannot make network namespaces here: {why}")
    state = args.root / STATE_FILE
    if args.action != "up":  # the cluster as `up` made it
        if not state.exists():
            raise Refused(f"no cluster made under {args.root} (no {state}); hit-platform cluster up --root {args.root}")
        made = json.loads(state.read_text())
        args.workers, args.prefix = len(made["nodes"]) - 1, made["prefix"]
        args.subnet = made["subnet"]
    cluster = LocalCluster(args.root, workers=args.workers, prefix=args.prefix, subnet=args.subnet)
    if args.action == "up":
        try:
            cluster.up()
        except BaseException:
            cluster.down()
            raise
        print(f"Ray cluster up: {len(cluster.names)} nodes, RAY_ADDRESS={cluster.address}")
        for node, d in cluster.describe()["nodes"].items():
            print(f"  {node:<5} {d['ip']:<12} namespace {d['namespace']}, temp dir {d['temp_dir']}")
        print(f"serve on it:  .venv/bin/hit-platform cluster run head env HIT_SERVE_HOST=0.0.0.0 "
              f"HIT_SERVE_REPLICAS={len(cluster.names)} .venv/bin/hit-platform serve")
        print(f"then:         curl -s {cluster.ip('head')}:8000/healthz   # any node's address answers")
        print("stop it:      .venv/bin/hit-platform cluster down")
        return 0
    if args.action == "down":
        cluster.down()
        print(f"Ray cluster down: namespaces {args.prefix}-* and bridge {cluster.net.bridge} deleted")
        return 0
    if args.action == "status":
        alive = cluster.alive_nodes()
        print(f"RAY_ADDRESS={cluster.address}: {len(alive)} of {len(cluster.names)} nodes alive ({', '.join(alive)})")
        return 0 if len(alive) == len(cluster.names) else 1
    if args.node not in cluster.names or not args.cmd:
        raise Refused(f"cluster run needs a node ({', '.join(cluster.names)}) and a command")
    cmd = args.cmd[1:] if args.cmd[0] == "--" else args.cmd
    sys.stdout.flush()
    os.execvpe("ip", cluster.net.command(args.node, cmd), cluster.node_env(args.node))
