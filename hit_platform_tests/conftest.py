"""Shared fixtures: a temp warehouse with a real DuckLake, and one built data half (module-scoped)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.settings import Settings, get_settings
from hit_platform_tests.support.built import Built, build
from hit_platform_tests.support.dumps import generate_full

# The drills send Ctrl-C (SIGINT) and hang-ups (SIGHUP) to the commands they start. A pytest started in the
# background (`nohup ... &`) runs with both ignored, and its children would inherit that and never stop.
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def settings_read_per_test():
    """A process reads its settings once; a test is a fresh process for that purpose, so the
    environment a test sets (monkeypatch) is the one its code reads."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(warehouse=tmp_path / "warehouse")


@pytest.fixture
def lake(settings: Settings) -> Lake:
    return Lake(settings)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    """A lake with the data half built from all 72 countries (one per test module that asks)."""
    b = Built(tmp_path_factory.mktemp("built"))
    b.manifest = generate_full(b.settings)
    b.first = build(b.defs, b.instance)
    assert b.first.success, b.first
    return b


# The longest modules first: `--dist loadfile` hands out whole files in collection order, so a long
# file collected late would run alone at the end while the other worker idles.
LONGEST_FIRST = ("defs/test_automation_e2e.py", "cluster/test_on_a_cluster.py", "defs/test_bench_year.py",
                 "serving/test_batching.py", "defs/test_gate_policy.py", "serving/test_lifecycle.py",
                 "scale/test_end_to_end_backends.py", "defs/ml/test_shadow_promotion.py", "defs/ml/test_training.py",
                 "cli/test_maintenance_rebuild.py", "cli/test_rebuild.py", "cli/test_dashboard_browser.py",
                 "defs/ml/test_training_killed.py", "defs/test_dagster_ui.py", "cli/test_one_scheduler.py",
                 "defs/ml/test_evaluation.py", "defs/ml/test_judged_snapshots.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0].removeprefix("hit_platform_tests/"), len(rank)))
