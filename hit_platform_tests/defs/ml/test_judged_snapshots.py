"""A model is trained, judged and shadow-judged only on data whose blocking gates passed, at the snapshot it
reads. The world: the history built; the next day's labels refused by `labels_bias` (strict thresholds for
that build); the day after, labels that pass. The refused version stays in the lake's history, so time travel
can reach it: `rebuild --snapshot` (and HIT_TRAIN_SNAPSHOT), the evaluation of a candidate trained there, and
`ml/shadow_evaluation`, which reads the labels at the lake's head, must each refuse, naming the check. A real
lake, Dagster instance and MLflow store."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from hit_platform.adapters.model_evaluation import evaluate_candidate
from hit_platform.cli import build as builder
from hit_platform.definitions import build_definitions
from hit_platform.defs.core import SONG_LABELS
from hit_platform.defs.ml.features import FEATURES, SPLITS_KEY
from hit_platform.defs.ml.shadow import SHADOW_EVALUATION
from hit_platform.defs.ml.training import CANDIDATES
from hit_platform.defs.resources import GatesResource, TrainingResource
from hit_platform.settings import GateThresholds
from hit_platform_tests.support.built import build
from hit_platform_tests.support.dumps import generate_full
from hit_platform_tests.support.linear import CommandLineWorld, latest_metadata

pytestmark = pytest.mark.slow

STRICT_BIAS = GatesResource(values_json=json.dumps({"max_bias_disparity": 0.0}))  # any disparity refuses
LABELS_BIAS = dg.AssetCheckKey(SONG_LABELS, "labels_bias")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> CommandLineWorld:
    t = CommandLineWorld(tmp_path_factory.mktemp("judged"))
    t.strict = build_definitions(t.resource, STRICT_BIAS, tracking=t.tracking, training=t.training)
    generate_full(t.settings, songs=1500, increments=0)
    assert build(t.defs, t.instance).success
    generate_full(t.settings, songs=1500, increments=1)
    refused = build(t.strict, t.instance)
    [gate] = [c for c in refused.checks if c.check_name == "labels_bias"]
    assert not refused.success and not gate.passed
    t.refused_at = latest_metadata(t.instance, SONG_LABELS)["lake_snapshot_id"]  # the labels' refused version
    generate_full(t.settings, songs=1500, increments=2)
    passed = build(t.defs, t.instance, everything=True)  # everything below raw anew, on the next day
    assert passed.success, [c.description for c in passed.checks if not c.passed]
    t.passed_at = latest_metadata(t.instance, SONG_LABELS)["lake_snapshot_id"]
    assert t.passed_at > t.refused_at
    return t


def test_each_gate_records_its_verdict_with_the_version_it_judged(world):
    from hit_platform.adapters.lake import verdicts

    with world.lake.connection(read_only=True) as con:
        rows = [r for r in verdicts.verdicts(con, "core.song_labels") if r["check_name"] == "labels_bias"]
    by_version = {r["table_version"]: r["passed"] for r in rows}
    assert by_version[world.refused_at] is False and by_version[world.passed_at] is True
    assert all(r["dagster_run_id"] and r["asset"] == "core/song_labels" and r["blocking"] for r in rows)


def test_rebuild_snapshot_on_a_snapshot_whose_label_gate_failed_is_refused_naming_the_check(world, monkeypatch,
                                                                                         capsys):
    versions = len(world.tracker.client.search_model_versions("name = 'hit_model'"))
    code, out, err = world.cli(monkeypatch, capsys, "rebuild", "--snapshot", str(world.refused_at))
    print(err)
    assert code == 2 and out == "", out
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: lake snapshot {world.refused_at} cannot be trained from: core/song_labels:"
                          f"labels_bias refused core.song_labels as written at lake snapshot {world.refused_at} "
                          f"(in run "), err
    assert len(world.tracker.client.search_model_versions("name = 'hit_model'")) == versions  # nothing trained


def test_training_pinned_to_it_through_dagster_is_refused_too(world):
    pinned = build_definitions(world.resource, tracking=world.tracking,
                               training=TrainingResource(families=["linear"], workers=1, snapshot=world.refused_at))
    run = pinned.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=world.instance, asset_selection=[CANDIDATES], raise_on_error=False)
    assert not run.success and run.get_asset_materialization_events() == []
    [failure] = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"]
    message = str(failure.step_failure_data.user_failure_data.description)
    assert f"core/song_labels:labels_bias refused core.song_labels as written at lake snapshot {world.refused_at}" \
           in message, message


def test_evaluation_at_that_snapshot_is_refused(world):
    from hit_platform.adapters.lake import verdicts
    from hit_platform.defs import gate_policy

    candidate = {"lake_snapshot_id": world.refused_at, "best_model_version": "1"}
    with pytest.raises(verdicts.UnjudgedData, match=f"lake snapshot {world.refused_at} cannot be evaluated on: "
                                                    "core/song_labels:labels_bias refused"):
        evaluate_candidate(world.lake, world.tracker, candidate, GateThresholds().promotion(),
                           world.settings.oracle, "test-run", gates=gate_policy.split_gates())


def test_shadow_evaluation_declares_what_it_reads_and_is_held_by_their_gates(world):
    job = world.defs.resolve_implicit_global_asset_job_def()
    try:  # the newest labels judged again with strict thresholds: refused
        assert not any(e.passed for e in builder.recheck(world.strict, world.instance, {LABELS_BIAS}))
        run = job.execute_in_process(instance=world.instance, asset_selection=[SHADOW_EVALUATION],
                                     raise_on_error=False)
        assert not run.success and run.get_asset_materialization_events() == []
        [failure] = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"]
        message = str(failure.step_failure_data.user_failure_data.description)
        assert "ml/shadow_evaluation is held by core/song_labels:labels_bias" in message, message
        parents = world.defs.resolve_asset_graph().get(SHADOW_EVALUATION).parent_keys
        assert {SONG_LABELS, SPLITS_KEY, FEATURES} <= parents  # its AUC rule's labels, the train split, features
    finally:
        assert all(e.passed for e in builder.recheck(world.defs, world.instance, {LABELS_BIAS}))
