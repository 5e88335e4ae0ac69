"""Alias moves are atomic and recoverable, tried with real processes: a `hit-platform rollback` killed (kill -9,
or the terminal closed: SIGHUP) between moving the champion alias and recording the move, then the same
command again; and a rollback typed while a promotion is between its decision and its move.

The killed command is the real CLI with one change: `Tracker.promote` (the alias move) pauses after moving
the alias, so the test knows when to kill it. Everything else is real: the MLflow store, the lake, the Dagster
instance the command reports to, and the serving process that must follow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest

from hit_platform.adapters import model_events
from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.tracking import Tracker
from hit_platform.defs.ml.evaluation import CHAMPION
from hit_platform.serving import process
from hit_platform.settings import REPO_ROOT
from hit_platform_tests.support.serving import register_version, serving_env

pytestmark = pytest.mark.slow

# The CLI, with the alias move pausing after (or, with PAUSE=before, before) it moves the alias: it writes
# the version to the marker file, then waits to be killed or released (the release file appears).
PAUSING = """
import pathlib, sys, time
from hit_platform.adapters.tracking import Tracker
marker, release, when = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
real = Tracker.promote
def pausing(self, version):
    if when == "after":
        real(self, version)
    marker.write_text(str(version))
    while not release.exists():
        time.sleep(0.05)
    if when == "before":
        real(self, version)
Tracker.promote = pausing
if sys.argv[4] == "cli":
    from hit_platform.cli.main import main
    sys.exit(main(sys.argv[5:]))
from hit_platform.adapters import model_events
from hit_platform.adapters.lake.connection import Lake
from hit_platform.settings import get_settings
settings = get_settings()
version, from_version = sys.argv[5:7]
model_events.promote(Lake(settings), Tracker(settings), version, from_version, "promote: passed every rule",
                     "a-promotion-run")
print("PROMOTED", flush=True)
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Versions 1 and 2 promoted by runs (2 is champion), 3 registered, and the serving process answering."""
    tmp = tmp_path_factory.mktemp("killed_rollback")
    settings, config = serving_env(tmp)
    lake, tracker = Lake(settings), Tracker(settings)
    v1, v2, v3 = (register_version(settings, seed) for seed in (1, 2, 3))
    model_events.promote(lake, tracker, v1, None, "promote: the first", "run-a")
    model_events.promote(lake, tracker, v2, v1, "promote: the second", "run-b")
    endpoint = process.start(settings, config)
    home = tmp / "dagster_home"
    home.mkdir()
    env = {**process.child_env(settings, config), "DAGSTER_HOME": str(home)}
    try:
        yield settings, lake, tracker, endpoint, env, home, tmp, (v1, v2, v3)
    finally:
        process.stop(settings, config)


def pausing(env, tmp: Path, when: str, *args: str) -> tuple[subprocess.Popen, Path, Path]:
    marker, release = tmp / f"paused-{time.monotonic_ns()}", tmp / f"release-{time.monotonic_ns()}"
    proc = subprocess.Popen([sys.executable, "-c", PAUSING, str(marker), str(release), when, *args], env=env,
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    return proc, marker, release


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process exited ({proc.returncode}) while waiting for {what}:\n"
                        f"{proc.stdout.read()[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def cli(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hit_platform.cli", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def served_version(endpoint: str) -> str:
    return httpx.get(endpoint + "/model", timeout=30).json()["version"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP], ids=["kill-9", "SIGHUP"])
def test_a_rollback_killed_after_moving_the_alias_is_finished_as_a_rollback_by_the_next_one(served, sig):
    settings, lake, tracker, endpoint, env, home, tmp, (v1, v2, _) = served
    frm = tracker.champion_info().version
    to = v1 if frm == v2 else v2
    reason = f"drill: {frm} answers worse ({sig.name})"
    proc, marker, _ = pausing(env, tmp, "after", "cli", "rollback", "--to", to, "--reason", reason)
    wait_for(marker.exists, 180, "the rollback to move the alias", proc)
    os.killpg(proc.pid, sig)
    assert proc.wait(30) == -sig
    # what the kill left: the alias moved, nothing recorded, serving still on the version rolled back from
    assert tracker.champion_info().version == to
    assert not [e for e in model_events.history(lake) if e.kind == "rollback" and e.reason == reason]
    assert served_version(endpoint) == frm

    again = cli(env, "rollback", "--to", to, "--reason", "again")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already the champion" in again.stdout
    moves = [e for e in model_events.history(lake) if e.to_version == to]
    assert (moves[0].kind, moves[0].from_version, moves[0].reason.split(" [")[0]) == ("rollback", frm, reason), \
        [e.line() for e in moves]
    assert "found" not in {e.kind for e in model_events.history(lake)}  # recorded as what it was
    assert model_events.rolled_back_from(lake, frm) is not None  # so the gates do not promote `frm` again
    assert served_version(endpoint) == to, "serving was not brought to the champion"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        meta = instance.get_latest_materialization_event(CHAMPION).asset_materialization.metadata
    assert (meta["model_version"].value, meta["kind"].value) == (to, "rollback")


def test_a_rollback_during_a_promotion_waits_and_overwrites_nothing(served):
    """A promotion between its decision (champion C -> v3) and its move; a rollback typed meanwhile waits for it,
    then rolls back from v3. Without the lock the rollback moved first and the promotion overwrote it."""
    settings, lake, tracker, endpoint, env, home, tmp, (_, _, v3) = served
    champion = tracker.champion_info().version
    promotion, marker, release = pausing(env, tmp, "before", "promote", v3, champion)
    wait_for(marker.exists, 180, "the promotion to decide", promotion)
    log = tmp / "rollback.log"
    with open(log, "w") as out:
        rollback = subprocess.Popen([sys.executable, "-m", "hit_platform.cli", "rollback", "--reason", "during"],
                                    env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
        # the rollback either waits for the promotion (and says so), or, without a lock, goes ahead
        wait_for(lambda: "another alias move is under way" in log.read_text() or rollback.poll() is not None, 180,
                 "the rollback to wait or to finish")
        release.touch()
        assert promotion.wait(120) == 0, promotion.stdout.read()
        assert rollback.wait(300) == 0, log.read_text()
    moves = [e for e in reversed(model_events.history(lake)) if e.kind in model_events.MOVES]
    chain = [(e.kind, e.from_version, e.to_version) for e in moves]
    assert all(a.to_version == b.from_version for a, b in zip(moves, moves[1:])), f"a move was overwritten: {chain}"
    assert chain[-2:] == [("promote", champion, v3), ("rollback", v3, champion)], chain
    assert tracker.champion_info().version == champion == served_version(endpoint)
