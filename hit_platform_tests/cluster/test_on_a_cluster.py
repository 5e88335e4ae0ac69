"""The platform on a real three-node Ray cluster (network namespaces on this machine), the lake on PostgreSQL
+ S3, one cluster for the module (a few minutes on two cores):

- `hit-platform serve`: a replica per node, the node of each in /healthz and `hit-platform status`, our
  ingress's request id on every node, and every Ray process of one worker node killed under wrk load: the
  requests go on being answered by the other nodes, and once the node is restarted and rejoins, the journal
  its dead replica left is committed. Every answered request is in the lake once, before, through and after.
- the candidates' grid as Ray tasks with a node killed midway: the same model bytes as fitted in process,
  in the local pool and by a refit; a grid point that fails for good fails the training saying which; a
  version trained on the cluster and registered rebuilds `identical` on one machine (`hit-platform rebuild`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import requests_in_log
from hit_platform.serving.inference_log.journal import read_segment
from hit_platform.settings import REPO_ROOT, Settings
from hit_platform_tests.cluster.conftest import journal_files
from hit_platform_tests.support.built import Built, build
from hit_platform_tests.support.cluster import HIT, running_per_node, served_on
from hit_platform_tests.support.dumps import generate_full
from hit_platform_tests.support.load import Wrk, WrkResult
from hit_platform_tests.support.serving import song

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # a busy 2-core machine: minutes per cluster step


def wait_for(what: str, check, timeout: float, poll: float = 1.0):
    """check() until it returns something true; on timeout, fail with what it last returned."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(poll)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last seen: {last!r})")


def logged(settings: Settings, result: WrkResult) -> tuple[int, int]:
    """(answered but not in the log, in the log more than once) of the requests wrk saw answered."""
    missing, doubled = unlogged_ids(settings, result)
    return len(missing), doubled


def unlogged_ids(settings: Settings, result: WrkResult) -> tuple[set[str], int]:
    """(the ids answered but not in the log, how many are in it more than once) of what wrk saw answered.
    `requests_in_log` names only the ids it found: an id missing from it is an answer not logged."""
    counts = requests_in_log(Lake(settings), list(result.answered))
    return set(result.answered) - set(counts), sum(1 for n in counts.values() if n > 1)


def placement(cluster, settings: Settings) -> str:
    """The nodes Ray counts alive and the running replicas per node, now (as the serving process last recorded
    them, every ~5 s): taken when a phase starts and ends, not when its figures are printed."""
    name = {cluster.ip(n): n for n in cluster.names}
    alive = ",".join(name.get(ip, ip) for ip in cluster.alive_nodes())
    replicas = " ".join(f"{name.get(ip, ip)}={n}" for ip, n in sorted(running_per_node(settings).items()))
    return f"nodes alive {alive or 'none'}, replicas {replicas or 'none'}"


def figures(phase: str, settings: Settings, result: WrkResult, at: tuple[str, str]) -> str:
    unlogged, doubled = logged(settings, result)
    return (f"{phase}: at its start {at[0]}; at its end {at[1]}; answered {len(result.answered)}, "
            f"non-2xx {result.non2xx}, socket errors {result.socket_error_total}, answered but not logged {unlogged}, "
            f"logged twice {doubled}")


def on_every_node(cluster, settings: Settings) -> dict[str, int]:
    nodes = [cluster.ip(n) for n in cluster.names]
    return wait_for("a running replica on each node", lambda: running_per_node(settings) == dict.fromkeys(
        nodes, 1) and running_per_node(settings), 300, poll=2)


@pytest.fixture(scope="module")
def served(ray_cluster, lake_settings):
    """The champion served on the cluster by `hit-platform serve` run on the head node, one replica a node."""
    with served_on(ray_cluster, lake_settings) as (settings, env):
        yield settings, env


def test_replicas_on_every_node_answer_log_once_and_survive_a_worker_node_killed(ray_cluster, served):
    settings, env = served
    nodes = [ray_cluster.ip(n) for n in ray_cluster.names]
    per_node = wait_for("a running replica on each node", lambda: running_per_node(settings) == dict.fromkeys(
        nodes, 1) and running_per_node(settings), 120)
    # /healthz on any node's address: the answering replica's node, and every replica's
    health = httpx.get(f"http://{nodes[1]}:8000/healthz", timeout=10).json()
    assert health["node"]["node_ip"] in nodes and health["placement"]["running_per_node"] == per_node
    # our HAProxy stamps the id on every node: a client's own id is never taken
    for ip in nodes:
        r = httpx.post(f"http://{ip}:8000/predict", json=song(), headers={"x-hit-request-id": "mine"}, timeout=10)
        assert r.status_code == 200 and r.json()["request_id"] != "mine", r.text
    url = f"http://{nodes[0]}:8000/predict"
    at_before = placement(ray_cluster, settings)
    before = Wrk(url, song(), 6, connections=8, record=True).result()
    at_before = (at_before, placement(ray_cluster, settings))
    wait_for("the answers committed", lambda: logged(settings, before) == (0, 0), 60, poll=2)
    status = ray_cluster.run("head", [*HIT, "status"], env=env).stdout  # the lake, then serving: a line per node
    for ip in nodes:
        assert f"node {ip}: 1 replica" in status, status

    # every Ray process of worker node w1 killed (raylet, its workers, the replica, HAProxy) under load
    at_during = placement(ray_cluster, settings)
    during_load = Wrk(url, song(), 18, connections=8, record=True)
    time.sleep(6)
    killed = ray_cluster.kill_node("w1")
    during = during_load.result()
    at_during = (at_during, placement(ray_cluster, settings))
    wait_for("w1's replica gone from the placement", lambda: nodes[1] not in running_per_node(settings), 60)
    left = journal_files(ray_cluster, "w1")  # what its dead replica journaled and never committed

    ray_cluster.start_node("w1")  # restarted: it rejoins, Serve places its replica there again
    wait_for("a replica on w1 again", lambda: running_per_node(settings).get(nodes[1]) == 1, 300, poll=2)
    wait_for("w1's journal committed", lambda: not journal_files(ray_cluster, "w1") or None, 60)
    at_after = placement(ray_cluster, settings)
    after = Wrk(url, song(), 6, connections=8, record=True).result()
    at_after = (at_after, placement(ray_cluster, settings))
    # the committers run every HIT_SERVE_LOG_COMMIT_SECONDS (5 s) on each node
    wait_for("every answer committed", lambda: all(logged(settings, r) == (0, 0) for r in (before, during, after)),
             60, poll=2)
    report = [figures("before", settings, before, at_before),
              f"killed {killed} processes of w1, left {len(left)} journal files",
              figures("through the kill", settings, during, at_during),
              figures("after the rejoin", settings, after, at_after)]
    print("\n" + "\n".join(report))
    (ray_cluster.root / "figures.json").write_text(json.dumps(report))
    for result in (before, during, after):
        assert (result.non2xx, result.socket_error_total) == (0, 0), report
        assert len(result.answered) == result.requests > 0, report
    assert left, "the killed node's replica left nothing in its journal: the drill proved nothing"


def journal_ids(cluster, node: str) -> set[str]:
    """The request ids in `node`'s journal files: what its disk holds that the lake may not yet."""
    ids: set[str] = set()
    for path in journal_files(cluster, node):
        try:
            ids |= {e.request_id for e in read_segment(path).entries}
        except FileNotFoundError:  # committed meanwhile (its replica is dead: not after the kill)
            continue
    return ids


def test_a_worker_node_whose_disk_is_lost_loses_only_what_its_journal_held(ray_cluster, served):
    """Every Ray process of worker node w2 killed under load, then its disk lost (its journal, Ray's temp dir,
    HAProxy's files deleted) and the node started again, empty: the requests go on being answered; what its
    replica had journaled and not committed is lost, and nothing else: every other answered request is in the
    log once. The node rejoins and its new replica's answers are logged."""
    settings, _ = served
    on_every_node(ray_cluster, settings)
    url = f"http://{ray_cluster.ip('head')}:8000/predict"
    at_during = placement(ray_cluster, settings)
    load = Wrk(url, song(), 16, connections=8, record=True)
    time.sleep(6)
    killed = ray_cluster.kill_node("w2")
    lost = journal_ids(ray_cluster, "w2")  # on the disk about to be lost, not committed: its replica is dead
    held = " ".join(sorted(p.suffix for p in journal_files(ray_cluster, "w2")))
    shutil.rmtree(ray_cluster.node_dir("w2"))
    during = load.result()
    at_during = (at_during, placement(ray_cluster, settings))
    ray_cluster.start_node("w2")  # a new disk: no journal, no Ray session, no HAProxy files
    wait_for("a replica on w2 again", lambda: running_per_node(settings).get(ray_cluster.ip("w2")) == 1, 300, poll=2)
    at_after = placement(ray_cluster, settings)
    after = Wrk(url, song(), 6, connections=8, record=True).result()
    at_after = (at_after, placement(ray_cluster, settings))

    seen = {}

    def only_the_lost_missing() -> bool:
        missing, doubled = unlogged_ids(settings, during)
        seen.update({"not logged, not on the lost disk": len(missing - lost), "logged twice": doubled,
                     "after the restart (not logged, logged twice)": logged(settings, after)})
        return missing <= lost and not doubled and logged(settings, after) == (0, 0)

    try:
        wait_for("every answer but those on the lost disk committed", only_the_lost_missing, 60, poll=2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {seen}") from None
    missing, _ = unlogged_ids(settings, during)
    in_log = sum(1 for n in requests_in_log(Lake(settings), sorted(lost)).values() if n)
    report = [f"killed {killed} processes of w2; its journal ({held or 'no file'}) held {len(lost)} requests, deleted "
              f"with its disk: {len(lost & set(during.answered))} of them answered to wrk, {in_log} in the log all the "
              "same (a commit in flight when the node was killed, or retried on another node)",
              figures("through the kill and the disk loss", settings, during, at_during)
              + f" (all {len(missing)} among the {len(lost)} on the lost disk)",
              figures("after w2 restarted empty", settings, after, at_after)]
    print("\n" + "\n".join(report))
    for result in (during, after):
        assert (result.non2xx, result.socket_error_total) == (0, 0), report
        assert len(result.answered) == result.requests > 0, report
    assert lost, "w2's replica had committed everything when it was killed: the drill proved nothing"


def task_running_on(cluster, node: str) -> bool:
    """A grid point's Ray task runs on `node` now (its worker process is named after the function)."""
    for pid in cluster.net.pids(node):
        try:
            if "_fit_point" in open(f"/proc/{pid}/cmdline").read():
                return True
        except OSError:
            continue
    return False


def test_a_version_trained_on_the_cluster_rebuilds_identical_on_one_machine(ray_cluster):
    """A small world's candidates trained with their grid points as the cluster's tasks (some on a worker node)
    and the best registered, as ml/candidate_models does with HIT_TRAIN_RAY_ADDRESS; then the real
    `hit-platform rebuild --model-version V` on this machine, with no cluster (no RAY_ADDRESS): identical."""
    world = Built(ray_cluster.root / "rebuild")
    generate_full(world.settings, songs=1000, increments=0)
    half = build(world.defs, world.instance)
    assert half.success, [c.description for c in half.checks if not c.passed]
    env = world.settings.to_env()
    log = ray_cluster.root / "rebuild" / "driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen(ray_cluster.net.command("head", [
            sys.executable, "-m", "hit_platform_tests.cluster.train_on_cluster", "register", ray_cluster.address]),
            env={**ray_cluster.node_env("head"), **env}, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    workers_seen: set[str] = set()
    try:
        deadline = time.monotonic() + 900
        while driver.poll() is None and time.monotonic() < deadline:  # where its grid points run
            workers_seen |= {n for n in ("w1", "w2") if task_running_on(ray_cluster, n)}
            time.sleep(0.2)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    said = log.read_text()
    assert driver.returncode == 0, said[-3000:]
    assert workers_seen, f"no grid point ran on a worker node: {said[-2000:]}"
    version = said.split("registered ", 1)[1].split()[0]
    here = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "HIT_TRAIN_RAY_ADDRESS")}
    done = subprocess.run([sys.executable, "-m", "hit_platform.cli", "rebuild", "--model-version", version],
                          env={**here, **env}, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    print(f"\nversion {version} trained on the cluster (grid points on {sorted(workers_seen)} among others); "
          f"`hit-platform rebuild --model-version {version}` here, without the cluster (exit {done.returncode}):\n"
          + done.stdout)
    assert done.returncode == 0 and "identical" in done.stdout.splitlines(), done.stdout + done.stderr[-2000:]


def test_the_grid_runs_as_tasks_on_the_cluster_and_a_node_killed_midway_changes_no_byte(ray_cluster):
    """The candidates' grid points as Ray tasks on the cluster, a worker node killed (kill -9 of every
    process) while one of them runs there: the training finishes on the other nodes, and each family's model
    is the same bytes as fitted in this process, in the local pool, and refitted as `rebuild` refits."""
    from hit_platform.adapters.model_training import PROBE_ROWS, prediction_hash
    from hit_platform.domain.models import refit, train_candidates
    from hit_platform_tests.cluster import train_on_cluster

    driver = subprocess.Popen(ray_cluster.net.command("head", [sys.executable, "-m",
                                                               "hit_platform_tests.cluster.train_on_cluster",
                                                               ray_cluster.address]),
                              env=ray_cluster.node_env("head"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        def on_a_worker() -> str | None:
            if driver.poll() is not None:
                raise AssertionError(f"the training ended (exit {driver.returncode}) before a grid point ran on a "
                                     f"worker node: {driver.stdout.read()[-2000:]}")
            return next((n for n in ("w1", "w2") if task_running_on(ray_cluster, n)), None)

        victim = wait_for("a grid point's task running on a worker node", on_a_worker, 600, poll=0.2)
        killed = ray_cluster.kill_node(victim)
        out, _ = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, out[-3000:]
    on_cluster = json.loads(out.split("result ", 1)[1].splitlines()[0])
    Xt, Yt, Xv, Yv = train_on_cluster.data()
    here = {r.family: r for r in train_candidates(Xt, Yt, Xv, Yv, seed=0, families=train_on_cluster.FAMILIES)}
    in_process = {f: prediction_hash(r.pipeline, Xv.head(PROBE_ROWS)) for f, r in here.items()}
    refitted = {f: prediction_hash(refit(f, r.params, Xt, Yt, seed=0, val_X=Xv, val_Y=Yv), Xv.head(PROBE_ROWS))
                for f, r in here.items()}
    pooled = train_on_cluster.hashes(None, workers=2)
    print(f"\nkilled {killed} processes of {victim} while a grid point ran there; sha256 of the prediction bytes:")
    for family in train_on_cluster.FAMILIES:
        print(f"  {family}: cluster {on_cluster[family]}, in process {in_process[family]}, "
              f"local pool {pooled[family]}, refit {refitted[family]}")
    assert on_cluster == in_process == pooled == refitted


def test_a_grid_point_that_fails_on_the_cluster_fails_the_training_saying_which_and_where(ray_cluster):
    script = ("from hit_platform.cluster.training import RayTaskPool\n"
              "from hit_platform.domain.models.candidates import _fit_point\n"
              f"pool = RayTaskPool({ray_cluster.address!r})\n"
              "try:\n    pool.submit(_fit_point, 'nonesuch', {'depth': 3}, 0, None, None).result()\n"
              "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    out = ray_cluster.run("head", [sys.executable, "-c", script], timeout=300).stdout.strip().splitlines()[-1]
    assert out.startswith("ClusterTrainingError candidate training on the Ray cluster at "
                          f"{ray_cluster.address}: family 'nonesuch', grid point {{'depth': 3}} failed"), out
    assert "KeyError" in out, out


def test_no_secret_is_in_any_file_of_the_nodes(ray_cluster, served, lake_secrets):
    """After the drills: no file under any node's folder (Ray's temp dir and session logs, HAProxy's files,
    the journal) holds a secret: the ingress secret, Ray's auth token, the lake's S3 secret key or its
    PostgreSQL password. They reach the nodes through the environment `ray start` got (the ingress secret,
    Ray's token) or a replica's constructor arguments (the settings), never a Ray runtime env, which each
    node's runtime-env agent logs whole (checked here: it does, so a secret there would be found)."""
    secrets = {"the ingress secret": ray_cluster.ingress_secret(), **dict(zip(
        ("the S3 secret key", "the PostgreSQL password"), lake_secrets.values()))}
    token_file = Path.home() / ".ray" / "auth_token"
    if token := os.environ.get("RAY_AUTH_TOKEN") or (token_file.read_text().strip() if token_file.exists() else ""):
        secrets["Ray's auth token"] = token
    assert ray_cluster.secret_file.stat().st_mode & 0o077 == 0, "the ingress secret's file is readable by others"
    files: dict[Path, bytes] = {}
    for path in (p for n in ray_cluster.names for p in ray_cluster.node_dir(n).rglob("*") if p.is_file()):
        try:
            files[path] = path.read_bytes()
        except FileNotFoundError:  # a log rotated away meanwhile
            continue
    agent_logs = [p for p, text in files.items() if p.name.startswith("runtime_env_agent")
                  and b"Creating runtime env" in text and b"RAY_SERVE_ENABLE_HA_PROXY" in text]
    assert agent_logs, "no node's runtime-env agent logged the serving process's runtime env: nothing shows it is read"
    found = [f"{what} in {p}" for p, text in files.items() for what, value in secrets.items() if value.encode() in text]
    print(f"\n{len(files)} files under the nodes' folders ({len(agent_logs)} runtime-env agent logs with the "
          f"serving process's runtime env) searched for {', '.join(secrets)}: {len(found)} found")
    assert not found, "\n".join(found)
