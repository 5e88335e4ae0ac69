"""The serving process's life: start over a stale pid file, no second process, champion swap under load
with zero failed requests, a replica and then the serving process killed under load (wrk) with no
answered request lost from the inference log, clean stop that flushes the inference log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.serving import process
from hit_platform.adapters.alerts import list_alerts
from hit_platform.adapters.lake.tables import requests_in_log
from hit_platform.settings import REPO_ROOT
from hit_platform_tests.support.load import Wrk, replica_pids
from hit_platform_tests.support.serving import answers, promote_champion, serving_env, song, swapped_cleanly, under_load
from hit_platform.adapters import model_events
from hit_platform.adapters.tracking import Tracker
from hit_platform.defs.ml.evaluation import CHAMPION
import dagster as dg

pytestmark = pytest.mark.slow


def dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
            pid += 1
        except ProcessLookupError:
            return pid
        except PermissionError:
            pid += 1


@pytest.fixture(scope="module")
def life(tmp_path_factory):
    # a long flush interval: whatever reaches the lake before `stop` got there by the shutdown flush
    settings, config = serving_env(tmp_path_factory.mktemp("life"), log_flush_seconds=600, log_batch_rows=10**6)
    v1 = promote_champion(settings, seed=1)
    stale = process.pid_file(settings, config)
    process.write_pid_file(stale, {"pid": dead_pid(), "endpoint": config.endpoint, "state": "running"})
    assert process.status(settings, config).state == "stopped"
    endpoint = process.start(settings, config)
    try:
        yield settings, config, endpoint, v1
    finally:
        process.stop(settings, config)


def test_start_replaced_the_stale_pid_file_and_does_not_start_twice(life):
    settings, config, endpoint, v1 = life
    first = json.loads(process.pid_file(settings, config).read_text())
    assert first["state"] == "running" and first["model_version"] == v1
    assert process.start(settings, config) == endpoint
    again = json.loads(process.pid_file(settings, config).read_text())
    assert again["pid"] == first["pid"] and again["start_id"] == first["start_id"]
    st = process.status(settings, config)
    assert (st.running, st.state, st.endpoint, st.model_version, st.pid) == (True, "running", endpoint, v1,
                                                                             first["pid"])


V1_ANSWERS: list[bytes] = []  # the first champion's answers to SONGS, request ids blanked


def test_champion_swap_under_load_drops_no_request(life):
    settings, config, endpoint, v1 = life
    V1_ANSWERS.extend(answers(endpoint))
    v2 = promote_champion(settings, seed=2)
    st, results = under_load(endpoint, lambda: process.update(settings, config))
    assert st.model_version == v2
    swapped_cleanly(results, v1, v2, "swap")
    assert process.update(settings, config).model_version == v2  # already serving it: a no-op
    assert answers(endpoint) != V1_ANSWERS  # another model: other answers


def cli(settings, config, *args, dagster_home=None):
    env = {**process.child_env(settings, config), **({"DAGSTER_HOME": str(dagster_home)} if dagster_home else {})}
    return subprocess.run([sys.executable, "-m", "hit_platform.cli", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=240)


def test_rollback_under_load_drops_no_request_and_answers_as_that_version_did(life, tmp_path, monkeypatch):
    """`hit-platform rollback` while clients post /predict: the champion alias goes back to the version the
    current one replaced, serving swaps in place with no failed request, the answers are the old
    version's bytes again, and who, when, from, to and why are in ops.model_events, audit and Dagster."""
    settings, config, endpoint, v1 = life
    v2 = process.status(settings, config).model_version
    tracker = Tracker(settings)
    never = tracker.register(tracker.client.get_model_version(tracker.model_name, v2).source,
                             tracker.client.get_model_version(tracker.model_name, v2).run_id, tags={}).version
    refused = cli(settings, config, "rollback", "--to", str(never), "--reason", "try")
    assert refused.returncode == 2 and f"version {never} of 'hit_model' was never champion" in refused.stderr
    assert cli(settings, config, "rollback", "--to", "999", "--reason", "try").returncode == 2
    assert tracker.champion_info().version == v2  # nothing moved
    home = tmp_path / "dagster"
    home.mkdir()
    t0 = time.monotonic()
    done, results = under_load(endpoint, lambda: cli(settings, config, "rollback", "--reason",
                                                     "drill: v2 answers worse", dagster_home=home))
    assert done.returncode == 0, done.stderr
    print(f"rollback under 4 clients: {done.stdout.strip()} ({time.monotonic() - t0:.1f} s with the load around it)")
    assert f"champion version {v2} -> {v1}" in done.stdout and "swapped in place" in done.stdout
    swapped_cleanly(results, v2, v1, "rollback")
    assert httpx.get(endpoint + "/model", timeout=10).json()["version"] == v1
    assert answers(endpoint) == V1_ANSWERS  # byte for byte what version 1 answered before
    [event] = [e for e in model_events.history(Lake(settings)) if e.kind == "rollback"]
    assert (event.from_version, event.to_version, event.reason) == (v2, v1, "drill: v2 answers worse")
    assert "@" in event.who
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the instance the command reported to
    with dg.DagsterInstance.get() as instance:
        meta = instance.get_latest_materialization_event(CHAMPION).asset_materialization.metadata
    assert meta["model_version"].value == v1 and meta["previous_version"].value == v2
    # run again with --to the version it already is: nothing moves, exit 0
    again = cli(settings, config, "rollback", "--to", v1, "--reason", "again")
    assert again.returncode == 0 and "already the champion" in again.stdout
    assert len([e for e in model_events.history(Lake(settings)) if e.kind == "rollback"]) == 1


def test_the_gates_do_not_promote_again_a_version_rolled_back_from(life):
    """After a rollback away from a version, ml/champion_model given that version's passing evaluation again
    keeps the current champion and says why; only `rollback --to` brings the version back."""
    from datetime import datetime, timezone

    from hit_platform.adapters.lake.tables import Evaluation, append_evaluation
    from hit_platform.adapters.model_evaluation import decision_values
    from hit_platform.defs.ml import evaluation
    from hit_platform.defs.resources import LakeResource, PromotionResource, TrackingResource

    settings, config, endpoint, v1 = life
    [back] = [e for e in model_events.history(Lake(settings)) if e.kind == "rollback"]

    @dg.asset(key=evaluation.EVALUATION)
    def judged_again(context) -> dg.MaterializeResult:
        """The rolled-back version's passing evaluation against champion v1, written to ml.evaluations by this
        run as ml/model_evaluation writes it (the decision the gate and the champion re-read)."""
        e = Evaluation(datetime.now(timezone.utc), context.run.run_id, 1, back.from_version, None, "linear", 100,
                       0.8, 0.5, 0.3, 0.1, 0.6, 0.5, v1, 0.79, 0.31, None, None, None, None, True,
                       "promote: passed every rule", None)
        Lake(settings).write(lambda con: append_evaluation(con, e))
        return dg.MaterializeResult(metadata={k: v for k, v in decision_values(e).items() if v is not None})

    resources = {"tracking": TrackingResource(warehouse=str(settings.warehouse)),
                 "lake": LakeResource(warehouse=str(settings.warehouse)), "promotion": PromotionResource()}
    result = dg.materialize([judged_again, evaluation.promotion_gate, evaluation.champion_model],
                            instance=dg.DagsterInstance.ephemeral(), resources=resources)
    meta = result.asset_materializations_for_node("ml__champion_model")[0].metadata
    assert meta["model_version"].value == v1 and "was rolled back from" in meta["not_promoted"].value
    assert Tracker(settings).champion_info().version == v1
    # no promotion recorded (the champions of this module were set in the registry directly: `found`)
    assert [e.kind for e in model_events.history(Lake(settings))] == ["rollback", "found"]


ANSWERED: dict[str, int] = {}  # request id -> status, of every answer the drills' wrk received


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()


def recovered_requests(settings) -> int:
    with Lake(settings).connection(read_only=True) as con:
        return con.execute("SELECT count(DISTINCT request_id) FROM ops.inference_log "
                           "WHERE recovered_from IS NOT NULL").fetchall()[0][0]


def test_a_replica_killed_under_load_fails_no_request_and_loses_no_answer(life):
    """kill -9 of one ServeReplica while wrk sends /predict: the ingress retries the requests that
    replica had not answered on the other one, Serve restarts it, and the answers it had already
    sent are committed from its journal."""
    settings, config, endpoint, _ = life
    serving_pid = process.status(settings, config).pid
    load = Wrk(endpoint + "/predict", song(spotify_id="replica-kill"), 8, record=True)
    time.sleep(3)
    victim = replica_pids(serving_pid)[0]
    os.kill(victim, signal.SIGKILL)
    result = load.result()
    ANSWERED.update(result.answered)
    print(f"replica kill -9 under wrk -t2 -c16 -d8s: {result.line()}")
    # Not one cut answer: a replica writes each answer's head and body in one write, so it dies having
    # sent all of an answer or nothing, which the ingress retries (before: 1 socket error in ~1 run of 10)
    assert result.non2xx == 0 and result.socket_error_total == 0, result.line()
    assert set(result.answered.values()) == {200}
    # Serve replaced the replica; its journal, open when it died, reaches the lake as recovered rows
    assert wait_for(lambda: len(replica_pids(serving_pid)) == config.replicas and victim not in
                    replica_pids(serving_pid), 60)
    # The committer thread runs niced below request handling: on a machine busy with other work a
    # round can take tens of seconds, so the wait is long; what it waited on is printed if it fails
    if not wait_for(lambda: recovered_requests(settings) > 0, 120):
        health = httpx.get(endpoint + "/healthz", timeout=10).text
        log_tail = Path(process.status(settings, config).log_file).read_text()[-3000:]
        pytest.fail(f"no recovered rows after 120 s; /healthz: {health}\nserve.log tail:\n{log_tail}")
    alert = [a for a in list_alerts(Lake(settings), kind="inference_log") if f"pid {victim})" in a["what"]]
    assert len(alert) == 1 and "recovered" in alert[0]["what"]


def test_the_serving_process_killed_under_load_then_served_again_loses_no_answer(life):
    """kill -9 of the serving process while wrk runs, then `hit-platform serve`: the new process clears
    what the dead one left (Ray's workers, HAProxy) and commits their journals; answers given before
    the kill and after the restart are all in the log, once."""
    settings, config, endpoint, _ = life
    dead = process.status(settings, config).pid
    load = Wrk(endpoint + "/predict", song(spotify_id="process-kill"), 40, record=True)
    time.sleep(3)
    os.kill(dead, signal.SIGKILL)
    t0 = time.monotonic()
    served = subprocess.run([sys.executable, "-m", "hit_platform.cli", "serve"], env=process.child_env(settings, config),
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    restart_s = time.monotonic() - t0
    assert served.returncode == 0, served.stderr[-3000:]
    st = process.status(settings, config)
    assert st.running and st.pid != dead and st.endpoint == endpoint
    result = load.result()
    ANSWERED.update(result.answered)
    ok = sum(1 for s in result.answered.values() if s == 200)
    print(f"serving process kill -9 under wrk -t2 -c16 -d40s, then `hit-platform serve` ({restart_s:.0f} s): "
          f"{result.line()}; {ok:,} answered 200")
    assert ok > 1000
    # while no process served, the clients saw errors; none of them is a 200 missing from the log (below)
    assert not process.leftovers({"pid": dead, "started_at": 0})


def test_stop_flushes_the_log_and_removes_the_pid_file(life):
    settings, config, endpoint, _ = life
    ids = []
    with httpx.Client(base_url=endpoint, timeout=30) as client:
        for i in range(5):
            ids.append(client.post("/predict", json=song(spotify_id=f"stop{i}")).json()["request_id"])
        ids.append(client.post("/predict/batch", json={"songs": [song()] * 3}).json()["request_id"])
    assert process.stop(settings, config) is True
    assert not process.pid_file(settings, config).exists()
    assert process.status(settings, config).state == "stopped"
    assert process.stop(settings, config) is False
    with pytest.raises(httpx.HTTPError):
        httpx.get(endpoint + "/healthz", timeout=2)
    logged = requests_in_log(Lake(settings), ids)
    assert logged == {**{i: 1 for i in ids[:5]}, ids[5]: 3}
    # audit of a request answered after the rollback: the version, and how it became champion again
    audit = cli(settings, config, "audit", ids[0], "--json")
    assert audit.returncode == 0, audit.stderr
    report = json.loads(audit.stdout)
    assert report["model_version"] == life[3] and f"rollback 2 -> {life[3]}" in report["champion_history"]
    # every answer the drills' client received is in the log, exactly once
    answered = [i for i, status in ANSWERED.items() if status == 200]
    assert len(answered) > 1000  # the drills' load (fewer on a busy machine)
    in_log = requests_in_log(Lake(settings), answered)
    assert len(in_log) == len(answered) and set(in_log.values()) == {1}
    with pytest.raises(process.ServingError, match="no serving process runs"):
        process.update(settings, config)
