"""`hit-platform rebuild`: a champion rebuilt byte for byte from its lake snapshot after newer data and a
newer champion came; a registry that lies, other code, and the errors a user can meet; candidates trained
from a past snapshot through the gates. A real lake, MLflow store and Dagster instance (the one the
command line finds through DAGSTER_HOME)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from hit_platform.adapters.tracking import code_version
from hit_platform.cli import build as builder
from hit_platform.defs.ml.evaluation import CHAMPION
from hit_platform.defs.ml.training import CANDIDATES
from hit_platform.settings import REPO_ROOT
from hit_platform_tests.support.dumps import generate_full
from hit_platform_tests.support.linear import CommandLineWorld, latest_metadata, without_log_line

pytestmark = pytest.mark.slow

MODEL = "hit_model"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> CommandLineWorld:
    """Champion v1 from the history; two more days land; champion v2 from all of it."""
    t = CommandLineWorld(tmp_path_factory.mktemp("rebuild"))
    generate_full(t.settings, songs=2000, increments=0)
    first = builder.build(t.defs, t.instance, upto=[CHAMPION])
    assert first.success, [c.description for c in first.checks if not c.passed]
    t.v1 = t.tracker.champion_info().version
    t.v1_snapshot = latest_metadata(t.instance, CANDIDATES)["lake_snapshot_id"]
    generate_full(t.settings, songs=2000, increments=2)  # the same world's next two daily files
    second = builder.build(t.defs, t.instance, upto=[CHAMPION])
    assert second.success, [c.description for c in second.checks if not c.passed]
    t.v2 = t.tracker.champion_info().version
    t.v2_snapshot = latest_metadata(t.instance, CANDIDATES)["lake_snapshot_id"]
    assert t.v2 != t.v1 and t.v2_snapshot > t.v1_snapshot
    return t


def rebuild(world, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`hit-platform rebuild ARGS` in this process, with the environment the command line would have."""
    return world.cli(monkeypatch, capsys, "rebuild", *args)


def figures(stdout: str) -> dict[str, str]:
    """The indented `name  value` lines of a rebuild's report."""
    pairs = (re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in stdout.splitlines() if line.startswith("  "))
    return {p[0]: p[1] for p in pairs if len(p) == 2}


class Tagged:
    """A registry tag (of the version, and of its MLflow run with `run=True`) set for a while, then put back."""

    def __init__(self, world, version: str, key: str, value: str, run: bool = False):
        self.client, self.version, self.key, self.value = world.tracker.client, version, key, value
        mv = self.client.get_model_version(MODEL, version)
        self.was, self.run_id = mv.tags[key], (mv.run_id if run else None)

    def __enter__(self):
        self.client.set_model_version_tag(MODEL, self.version, self.key, self.value)
        if self.run_id:
            self.client.set_tag(self.run_id, self.key, self.value)

    def __exit__(self, *exc):
        self.client.set_model_version_tag(MODEL, self.version, self.key, self.was)
        if self.run_id:
            self.client.set_tag(self.run_id, self.key, self.was)


def test_the_first_champion_rebuilds_identical_after_newer_data_and_a_newer_champion(world):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hit_platform.cli", "rebuild", "--model-version", world.v1],
                          env={**os.environ, **world.env}, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stdout + done.stderr
    lines = without_log_line(done.stdout).splitlines()
    assert lines[0].startswith(f"rebuilding model version {world.v1} of {MODEL} from lake snapshot "
                               f"{world.v1_snapshot} (time travel; the newest is ")
    assert int(lines[0].rsplit(" ", 1)[1].rstrip(")")) > world.v2_snapshot
    assert lines[1] == "identical"
    f = figures(done.stdout)
    record = latest_metadata(world.instance, CANDIDATES)  # v2's; v1's hash is its registry tag
    v1_sha = world.tracker.client.get_model_version(MODEL, world.v1).tags["probe_prediction_sha256"]
    assert f["snapshot"] == str(world.v1_snapshot) and f["family"].startswith("linear (C=")
    assert f["probe rows"] == "256"
    assert f["sha256"] == f"{v1_sha} (rebuilt = registered = at training)"
    assert v1_sha != record["probe_prediction_sha256"]  # another model than the champion's now
    assert f["splits"].endswith(", as recorded") and f["rows"].startswith("train ")
    assert f["code"].startswith(f"commit {code_version()['git_commit'][:12]}") and ", as recorded" in f["code"]
    print(f"rebuild --model-version {world.v1}: {seconds:.1f} s wall\n{done.stdout}")


def test_a_registry_that_lies_is_named_and_exits_1(world, monkeypatch, capsys):
    # the version's seed tag altered: its MLflow run still says 0 (the linear fit ignores the seed: same bytes)
    with Tagged(world, world.v1, "seed", "7"):
        code, out, _ = rebuild(world, monkeypatch, capsys, "--model-version", world.v1)
    run_id = world.tracker.client.get_model_version(MODEL, world.v1).run_id
    assert code == 1, out
    assert out.splitlines()[1:3] == [f"differs from registered version {world.v1} (1 difference):",
                                     f"  - seed: 7 in version {world.v1}'s tags, 0 in its MLflow run {run_id}"]
    # the version and its run both claim v2's snapshot: a rebuild from more data, another model
    with Tagged(world, world.v1, "lake_snapshot_id", str(world.v2_snapshot), run=True):
        code, out, _ = rebuild(world, monkeypatch, capsys, "--model-version", world.v1)
    assert code == 1, out
    assert f"  - splits fingerprint at snapshot {world.v2_snapshot}: " in out
    assert "  - prediction bytes on 256 probe rows (sha256): rebuilt " in out
    assert "identical" not in out


def test_other_code_is_refused_unless_allowed(world, monkeypatch, capsys):
    other = "0" * 40
    with Tagged(world, world.v1, "git_commit", other):
        code, out, err = rebuild(world, monkeypatch, capsys, "--model-version", world.v1)
        assert code == 2 and out == ""
        head = code_version()["git_commit"]
        assert f"error: model version {world.v1} cannot be rebuilt with the same code: this checkout is commit " \
               f"{head[:12]}" in err
        assert f"the version was built from commit {other[:12]}" in err and "--allow-code-change" in err
        code, out, err = rebuild(world, monkeypatch, capsys, "--model-version", world.v1, "--allow-code-change")
    assert code == 0, out + err
    assert out.splitlines()[1] == "identical"
    assert figures(out)["code"].startswith(f"DIFFERENT, rebuilt anyway (--allow-code-change): this checkout is "
                                           f"commit {head[:12]}")


def test_candidates_from_a_past_snapshot_go_through_the_gates(world, monkeypatch, capsys):
    before = {str(mv.version) for mv in world.tracker.client.search_model_versions(f"name = '{MODEL}'")}
    code, out, err = rebuild(world, monkeypatch, capsys, "--snapshot", str(world.v1_snapshot))
    print(out)
    versions = world.tracker.client.search_model_versions(f"name = '{MODEL}'")
    [new] = [mv for mv in versions if str(mv.version) not in before]
    assert new.tags["lake_snapshot_id"] == str(world.v1_snapshot) and new.tags["snapshot_pinned"] == "true"
    version = str(new.version)
    assert f"candidate: model version {version} (linear) trained from lake snapshot {world.v1_snapshot}" in out
    assert "[pass] ml/candidate_models:candidates_reproducible" in out  # rebuilt from the past snapshot, too
    with world.lake.connection(read_only=True) as con:
        [(snapshot, promote)] = con.execute("SELECT lake_snapshot_id, promote FROM ml.evaluations "
                                            "WHERE candidate_version = ?", [version]).fetchall()
    assert snapshot == world.v1_snapshot
    assert f"\nevaluation: {'promote' if promote else 'refuse'}: " in out
    assert code == (0 if promote else 1), out + err
    champion = world.tracker.champion_info().version
    assert champion == (version if promote else world.v2)


def test_what_cannot_be_rebuilt_says_why_and_exits_2(world, monkeypatch, capsys, tmp_path):
    code, out, err = rebuild(world, monkeypatch, capsys, "--model-version", "99")
    assert code == 2 and out == ""
    assert err.startswith(f"error: model version 99 of {MODEL} does not exist in ") and "its versions: 1, 2" in err

    code, _, err = rebuild(world, monkeypatch, capsys, "--snapshot", "99999")
    assert code == 2 and "error: lake snapshot 99999 does not exist: the lake's snapshots run 0 .. " in err

    code, _, err = rebuild(world, monkeypatch, capsys, "--snapshot", "1")  # the schemas, before any data
    assert code == 2 and "error: lake snapshot 1 has no ml.splits" in err

    # v1's snapshot expired from the lake: time travel cannot read it any more
    with world.lake.connection() as con:
        con.execute(f"CALL ducklake_expire_snapshots('lake', versions => [{world.v1_snapshot}])")
    for args in (["--model-version", world.v1], ["--snapshot", str(world.v1_snapshot)]):
        code, out, err = rebuild(world, monkeypatch, capsys, *args)
        assert code == 2 and out == "", args
        assert f"error: lake snapshot {world.v1_snapshot} has been expired from the lake" in err, args

    monkeypatch.setitem(world.env, "HIT_WAREHOUSE", str(tmp_path / "nothing_here"))
    code, _, err = rebuild(world, monkeypatch, capsys, "--model-version", world.v1)
    assert code == 2 and err.startswith(f"error: no lake at {tmp_path / 'nothing_here'}")
    assert not (tmp_path / "nothing_here").exists()  # and it made none
