"""A shadow round trip on the real graph and real serving (HIT_PROMOTION_MODE=shadow).

A champion is built and served; a retrained candidate passes its gates and becomes the challenger,
not the champion, and serving loads it beside the champion. Traffic flows: the sensor waits for
HIT_SHADOW_MIN_REQUESTS shadowed songs, then asks for the judgement. `shadow_gate` fails (waiting
for traffic, then thresholds no model meets) and holds the promotion on every path (the Dagster
API, `dagster asset materialize`); once it passes, `ml/shadow_promotion` moves the champion under
load with no failed request, and the model events, ml/champion_model and /model all say so. A
`hit-platform build` never runs the shadow judgement by itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import dagster as dg
import httpx
import pytest

from hit_platform.adapters import model_events
from hit_platform.adapters.lake.connection import Lake
from hit_platform.cli import build as builder
from hit_platform.definitions import build_definitions
from hit_platform.defs.ml.evaluation import CHAMPION
from hit_platform.defs.ml.predictions import BATCH_PREDICTIONS
from hit_platform.defs.ml.shadow import SHADOW_EVALUATION, SHADOW_PROMOTION, shadow_sensor
from hit_platform.defs.resources import (LakeResource, PromotionResource, ServingResource, TrackingResource,
                                         TrainingResource)
from hit_platform.defs.serving import DEPLOYMENT
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.serving import ServeConfig, process
from hit_platform.serving.loopback import free_port
from hit_platform.settings import REPO_ROOT, Settings
from hit_platform.adapters.tracking import Tracker
from hit_platform_tests.support.dumps import generate_full
from hit_platform_tests.support.serving import swapped_cleanly, under_load

pytestmark = pytest.mark.slow
MIN_REQUESTS = 150


def served_songs(settings: Settings, n: int) -> list[dict]:
    """Songs of the lake, as a client would send them (with their spotify_id, so labels can join)."""
    cols = ", ".join(FEATURE_COLUMNS)
    with Lake(settings).connection(read_only=True) as con:
        rows = con.execute(f"SELECT spotify_id, {cols} FROM core.songs WHERE has_audio_features "
                           f"ORDER BY spotify_id LIMIT ?", [n]).df()
    out = []
    for r in rows.to_dict("records"):
        s = {c: r[c] for c in FEATURE_COLUMNS}
        for c in ("key", "mode", "time_signature", "duration_ms"):
            s[c] = int(s[c])
        s["is_explicit"] = bool(s["is_explicit"])
        out.append({**s, "spotify_id": r["spotify_id"]})
    return out


def tick(instance, resources: dict):
    with dg.build_sensor_context(instance=instance) as context:
        return shadow_sensor(context, **resources)


def failure_of(result) -> str:
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return str(failure.step_failure_data.user_failure_data.description if failure.step_failure_data.user_failure_data
               else failure.step_failure_data.error.message)


def test_a_challenger_shadows_live_traffic_and_is_promoted_only_through_its_gate(tmp_path):
    settings = Settings(warehouse=tmp_path / "warehouse")
    generate_full(settings, songs=2000, increments=1)
    port = free_port()
    config = ServeConfig(port=port, log_commit_seconds=1.0)
    serving = ServingResource(values_json=json.dumps({"port": port, "log_commit_seconds": 1.0}))
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = dg.DagsterInstance.local_temp(str(home))
    lake = LakeResource(warehouse=str(settings.warehouse))
    tracking = TrackingResource(warehouse=str(settings.warehouse))
    tracker = Tracker(settings)
    endpoint = f"http://127.0.0.1:{port}"
    shadow_mode = {"min_requests": MIN_REQUESTS, "min_labelled_songs": 20}
    promotion = PromotionResource(mode="shadow", shadow_json=json.dumps(shadow_mode))
    upto = [DEPLOYMENT, BATCH_PREDICTIONS]
    try:
        first = builder.build(build_definitions(lake, tracking=tracking, training=TrainingResource(families=["linear"]),
                                                serving_config=serving, promotion=promotion), instance, upto=upto)
        assert first.success, [c.description for c in first.checks if not c.passed]
        v1 = tracker.champion_info().version  # no champion to shadow yet: promoted at once
        assert tracker.challenger_info() is None

        # the next day's data retrains in shadow mode: the candidate passes its gates and becomes the
        # challenger, served beside v1
        generate_full(settings, songs=2000, increments=2)
        defs = build_definitions(lake, tracking=tracking, serving_config=serving, promotion=promotion,
                                 training=TrainingResource(families=["linear"]))
        second = builder.build(defs, instance, upto=upto)
        assert second.success, [c.description for c in second.checks if not c.passed]
        # a plain `hit-platform build` (no upto) never selects the shadow judgement: live traffic drives it
        assert not {SHADOW_EVALUATION, SHADOW_PROMOTION} & builder._scope(defs, None)
        v2 = tracker.challenger_info().version
        assert v2 != v1 and tracker.champion_info().version == v1
        assert SHADOW_EVALUATION not in second.materialized and SHADOW_PROMOTION not in second.materialized
        champion_meta = instance.get_latest_materialization_event(CHAMPION).asset_materialization.metadata
        assert champion_meta["model_version"].value == v1 and champion_meta["challenger_version"].value == v2
        card = httpx.get(endpoint + "/model", timeout=30).json()
        assert card["version"] == v1 and card["challenger"]["version"] == v2
        assert [e.kind for e in model_events.history(Lake(settings), v2)] == ["challenger"]

        # not enough traffic yet: the sensor waits; a judgement asked for anyway fails its gate and holds
        resources = {"lake": lake, "tracking": tracking, "promotion": promotion}
        assert isinstance(tick(instance, resources), dg.SkipReason)
        job = defs.resolve_implicit_global_asset_job_def()
        early = job.execute_in_process(instance=instance, asset_selection=[SHADOW_EVALUATION, SHADOW_PROMOTION],
                                       raise_on_error=False)
        gate = next(e.event_specific_data for e in early.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION")
        assert not gate.passed and "waiting for live traffic" in gate.description
        assert tracker.champion_info().version == v1

        # live traffic: every answer by v1, every song scored by v2 too
        songs = served_songs(settings, MIN_REQUESTS + 10)
        with httpx.Client(base_url=endpoint, timeout=30) as client:
            for s in songs:
                r = client.post("/predict", json=s)
                assert r.status_code == 200 and r.json()["model_version"] == v1, r.text
        deadline = time.monotonic() + 60
        while not isinstance(request := tick(instance, resources), dg.RunRequest) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert isinstance(request, dg.RunRequest), request
        assert request.run_key == f"shadow:{v1}:{v2}:0" and set(request.asset_selection) == {SHADOW_EVALUATION,
                                                                                         SHADOW_PROMOTION}

        # thresholds no two models meet: the gate fails with the numbers, the promotion is held on every path
        strict = PromotionResource(mode="shadow", shadow_json=json.dumps(
            {**shadow_mode, "max_mean_abs_diff": 0.0}))
        strict_defs = build_definitions(lake, tracking=tracking, serving_config=serving, promotion=strict,
                                        training=TrainingResource(families=["linear"]))
        refused = strict_defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[SHADOW_EVALUATION, SHADOW_PROMOTION], raise_on_error=False)
        gate = next(e.event_specific_data for e in refused.all_events
                    if e.event_type_value == "ASSET_CHECK_EVALUATION")
        assert not gate.passed and "HIT_SHADOW_MAX_MEAN_ABS_DIFF=0" in gate.description, gate.description
        assert tracker.champion_info().version == v1
        alone = job.execute_in_process(instance=instance, asset_selection=[SHADOW_PROMOTION], raise_on_error=False)
        assert not alone.success and "shadow_gate" in failure_of(alone)
        env = {k: v for k, v in process.child_env(settings, config).items() if k.startswith("HIT_")}
        cli = subprocess.run([os.path.join(os.path.dirname(sys.executable), "dagster"), "asset", "materialize", "-m",
                              "hit_platform.definitions", "--select", "ml/shadow_promotion"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                             env={**os.environ, **env, "DAGSTER_HOME": str(home), "HIT_PROMOTION_MODE": "shadow"})
        assert cli.returncode != 0 and "shadow_gate" in cli.stdout + cli.stderr, cli.stdout[-2000:]
        assert tracker.champion_info().version == v1 and tracker.challenger_info().version == v2

        # the sensor's run as the daemon would start it, under load: the gate passes, v2 is promoted in place
        run, results = under_load(endpoint, lambda: job.execute_in_process(
            instance=instance, asset_selection=list(request.asset_selection), tags=request.tags,
            raise_on_error=False))
        assert run.success, [e.event_specific_data.description for e in run.all_events
                             if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        swapped_cleanly(results, v1, v2, "shadow promotion")
        meta = {k: v.value for k, v in instance.get_latest_materialization_event(SHADOW_EVALUATION)
                .asset_materialization.metadata.items()}
        assert meta["promote"] and meta["shadowed_songs"] >= MIN_REQUESTS and meta["top5_overlap"] > 0.5
        assert meta["labelled_songs"] >= 20 and "champion_mean_roc_auc" in meta
        assert tracker.champion_info().version == v2 and tracker.challenger_info() is None
        champion_meta = instance.get_latest_materialization_event(CHAMPION).asset_materialization.metadata
        assert champion_meta["model_version"].value == v2 and champion_meta["promoted_by"].value == "shadow_gate"
        [promoted, shadowed] = model_events.history(Lake(settings), v2)
        assert (promoted.kind, promoted.from_version, promoted.to_version) == ("promote", v1, v2)
        assert shadowed.kind == "challenger" and "shadow_gate passed" in promoted.reason
        card = httpx.get(endpoint + "/model", timeout=30).json()
        assert card["version"] == v2 and card["challenger"] is None
    finally:
        process.stop(settings, config)
        instance.dispose()
