"""A failed blocking gate holds what is below it on every path, not only in the run that evaluated it.

The sequence a user found: a champion is served; a retrain is refused by the
promotion gate; a second `build` (which selects only what is stale, so the gate
is not in that run), the champion alone through the Dagster API and through
`dagster asset materialize` must all leave the alias and the served model alone.
The same for a data gate: a failing `raw_*` gate, then runs that leave it out.
"""

from __future__ import annotations

import os
import json
import subprocess
import sys

import dagster as dg
import duckdb
import httpx
import pytest

from hit_platform.cli import build as builder
from hit_platform.definitions import build_definitions
from hit_platform.defs.ml.evaluation import CHAMPION, EVALUATION
from hit_platform.defs.ml.features import FEATURES, SPLITS_KEY
from hit_platform.defs.raw import RAW_CHART_ROWS
from hit_platform.defs.ml.predictions import BATCH_PREDICTIONS
from hit_platform.defs.resources import (GatesResource, LakeResource, ServingResource, TrackingResource,
                                         TrainingResource)
from hit_platform.defs.serving import DEPLOYMENT
from hit_platform.defs.core import CHART_ENTRIES, SONG_LABELS, SONGS
from hit_platform.serving import ServeConfig, process
from hit_platform.serving.loopback import free_port
from hit_platform.settings import REPO_ROOT, Settings
from hit_platform.adapters.tracking import Tracker
from hit_platform_tests.support.dumps import generate_full

pytestmark = pytest.mark.slow
STRICT = GatesResource(values_json='{"min_auc_gain_over_baseline": 0.9}')  # no model can pass it
BELOW_RAW = [CHART_ENTRIES, SONGS, SONG_LABELS, FEATURES, SPLITS_KEY]


def latest_storage_ids(instance: dg.DagsterInstance, keys) -> dict:
    out = {}
    for key in keys:
        records = instance.fetch_materializations(key, limit=1).records
        out[key] = records[0].storage_id if records else None
    return out


def dagster_cli(home, env: dict, *args: str) -> subprocess.CompletedProcess:
    """The `dagster` command line a user would type, on the same instance and warehouse."""
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "dagster"), *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env, "DAGSTER_HOME": str(home)})


def test_a_refused_model_is_never_promoted_nor_served_on_any_path(tmp_path):
    settings = Settings(warehouse=tmp_path / "warehouse")
    generate_full(settings, songs=2000, increments=1)
    port = free_port()
    # the CLI runs below get these settings through their environment, the in-process builds as resources
    env = {k: v for k, v in process.child_env(settings, ServeConfig(port=port)).items() if k.startswith("HIT_")}
    serving = ServingResource(values_json=json.dumps({"port": port}))
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = dg.DagsterInstance.local_temp(str(home))  # the one `dagster` on DAGSTER_HOME sees too
    lake = LakeResource(warehouse=str(settings.warehouse))
    tracking = TrackingResource(warehouse=str(settings.warehouse))
    tracker = Tracker(settings)
    upto = [DEPLOYMENT, BATCH_PREDICTIONS]
    endpoint = f"http://127.0.0.1:{port}"
    try:
        first = builder.build(build_definitions(lake, tracking=tracking, training=TrainingResource(families=["linear"]),
                                                serving_config=serving), instance, upto=upto)
        assert first.success, [c.description for c in first.checks if not c.passed]
        champion = tracker.champion_info().version
        assert httpx.get(endpoint + "/model", timeout=30).json()["version"] == champion

        # a retrain (another seed: a new code version of the candidates) that the promotion gate refuses
        retrain = build_definitions(lake, STRICT, tracking=tracking, serving_config=serving,
                                    training=TrainingResource(families=["linear"], seed=1))
        refused = builder.build(retrain, instance, upto=upto)
        gate = next(c for c in refused.checks if c.check_name == "promotion_gate")
        assert not refused.success and not gate.passed and "refuse" in gate.description
        candidate = str(instance.get_latest_materialization_event(EVALUATION).asset_materialization
                        .metadata["candidate_version"].value)
        assert candidate != champion and tracker.champion_info().version == champion

        # 1. a second `hit-platform build`, as the user typed it: only what is stale, so the gate is not
        # in that run; the champion is held and the command says by what
        before = latest_storage_ids(instance, [CHAMPION, DEPLOYMENT, BATCH_PREDICTIONS])
        cli_env = {**env, "HIT_TRAIN_FAMILIES": '["linear"]', "HIT_TRAIN_SEED": "1",
                   "HIT_GATE_MIN_AUC_GAIN_OVER_BASELINE": "0.9", "DAGSTER_HOME": str(home)}
        again = subprocess.run([os.path.join(os.path.dirname(sys.executable), "hit-platform"), "build"],
                               capture_output=True, text=True, timeout=600, env={**os.environ, **cli_env})
        assert again.returncode == 1, again.stdout[-3000:] + again.stderr[-3000:]
        assert "left unbuilt, held by a failed gate" in again.stdout
        assert "ml/champion_model is held by ml/model_evaluation:promotion_gate (failed in run" in again.stdout
        assert "materialized: ml/champion_model" not in again.stdout
        assert tracker.champion_info().version == champion

        # 2. the champion alone through the Dagster API: the asset itself refuses, naming version and decision
        job = retrain.resolve_implicit_global_asset_job_def()
        alone = job.execute_in_process(instance=instance, asset_selection=[CHAMPION], raise_on_error=False)
        assert not alone.success
        [failure] = [e for e in alone.all_events if e.event_type_value == "STEP_FAILURE"]
        message = str(failure.step_failure_data.user_failure_data.description)
        assert "promotion_gate" in message and "refuse" in message and "hit-platform build" in message
        # ... and with the refused candidate's own record, it refuses on the decision itself
        ev = {k: v.value for k, v in instance.get_latest_materialization_event(EVALUATION)
              .asset_materialization.metadata.items()}
        from hit_platform.defs.ml.evaluation import refuse_unless_promoted
        with pytest.raises(dg.Failure, match=f"refused to promote model version {candidate} .*refuse: "):
            refuse_unless_promoted(instance, ev, champion)

        # 3. `dagster asset materialize` of the champion alone, on the same instance and warehouse
        cli = dagster_cli(home, cli_env, "asset", "materialize", "-m", "hit_platform.definitions",
                          "--select", "ml/champion_model")
        assert cli.returncode != 0, cli.stdout[-2000:]
        assert "promotion_gate" in cli.stdout + cli.stderr
        assert tracker.champion_info().version == champion

        # nothing below the champion was rebuilt, and serving still answers with the champion
        assert latest_storage_ids(instance, [CHAMPION, DEPLOYMENT, BATCH_PREDICTIONS]) == before
        served = httpx.get(endpoint + "/model", timeout=30).json()
        assert served["version"] == champion != candidate
        assert httpx.get(endpoint + "/healthz", timeout=30).json()["model_version"] == champion
    finally:
        process.stop(settings, ServeConfig(port=port))
        instance.dispose()


def incomplete_charts(src, dst) -> int:
    """The daily file `src` without rank 50 in any chart: a chart day the raw_chart_days gate must refuse."""
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * FROM read_csv('{src}', all_varchar=true) WHERE daily_rank <> '50') "
                f"TO '{dst}' (HEADER, COMPRESSION gzip)")
    n = con.execute(f"SELECT count(*) FROM read_csv('{dst}', all_varchar=true)").fetchall()[0][0]
    con.close()
    return n


def test_a_failed_data_gate_holds_everything_below_it_on_a_rerun(tmp_path):
    settings = Settings(warehouse=tmp_path / "warehouse")
    manifest = generate_full(settings, songs=1500, increments=1)
    daily = settings.landing_dir / manifest["files"][-1]["name"]
    held_back = tmp_path / "daily.csv.gz"
    daily.rename(held_back)
    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions(LakeResource(warehouse=str(settings.warehouse)))
    first = builder.build(defs, instance, upto=[SPLITS_KEY])
    assert first.success

    # the next daily file arrives with every chart missing its rank 50: ingest keeps the rows, the gate refuses
    assert incomplete_charts(held_back, settings.landing_dir / "daily_incomplete.csv.gz") > 0
    before = latest_storage_ids(instance, BELOW_RAW)
    failed = builder.build(defs, instance, upto=[SPLITS_KEY])
    gate = next(c for c in failed.checks if c.check_name == "raw_chart_days")
    assert not failed.success and not gate.passed and RAW_CHART_ROWS in failed.materialized

    # a rerun selects only what is stale (core/*), without the gate: held, nothing built
    rerun = builder.build(defs, instance, upto=[SPLITS_KEY])
    assert {h.asset for h in rerun.held} == {CHART_ENTRIES, SONGS}
    assert {h.check.name for h in rerun.held} == {"raw_chart_days"} and rerun.materialized == []

    # every asset below raw, selected without raw and its checks (as the UI or `dagster asset materialize` can)
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=BELOW_RAW, raise_on_error=False)
    assert not result.success and result.get_asset_materialization_events() == []
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert {e.step_key for e in failures} == {"core__chart_entries", "core__songs"}
    assert all("raw_chart_days" in e.step_failure_data.user_failure_data.description for e in failures)
    assert latest_storage_ids(instance, BELOW_RAW) == before

    # releasing it by the thresholds: a rebuild evaluates the holding gate again, which now passes the
    # same version of raw, and everything below follows
    tolerant = build_definitions(LakeResource(warehouse=str(settings.warehouse)),
                                 GatesResource(values_json='{"max_incomplete_chart_day_rate": 0.5}'))
    released = builder.build(tolerant, instance, upto=[SPLITS_KEY])
    assert released.success and released.held == [], [str(h) for h in released.held]
    assert any(c.check_name == "raw_chart_days" and c.passed for c in released.checks)
    assert set(BELOW_RAW) <= set(released.materialized)


def test_every_asset_that_trains_or_serves_is_gated_where_it_is_defined():
    """The policy is `@gated` on each asset's own body: an asset added without it would build on refused data."""
    from hit_platform.definitions import defs
    from hit_platform.defs import gate_policy

    assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.is_executable]
    unguarded = sorted(k.to_user_string() for a in assets if not gate_policy.is_observer(a)
                       and not gate_policy.is_guarded(a) for k in a.keys)
    assert unguarded == []
    assert all(not gate_policy.is_guarded(a) for a in assets if gate_policy.is_observer(a))
