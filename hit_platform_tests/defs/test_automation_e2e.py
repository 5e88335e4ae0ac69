"""End to end with a real `dagster-daemon`: files land, and everything after runs by itself.

One scenario, in order (each step needs the state the previous one left):
1. the history lands -> ingest -> gates -> train -> evaluate -> promote -> serve;
2. a daily increment lands, its songs drifted -> the drift gate alerts (it does not block) -> the
   candidates are retrained; the served version follows the promotion decision;
3. served songs drift -> the served-drift monitor alerts -> the drift sensor retrains (once);
4. a truncated file lands -> rejected, alert, nothing downstream runs, the champion serves on;
5. an increment that breaks a blocking gate -> the chain stops, alert, the champion serves on;
6. the monitors' figures, the dashboard and `hit-platform alerts` show all of it.
(A plain increment's retrain is the drifted one's without the alert: one retrain covers both, as each
retrain here costs two minutes on a busy machine.)
Sensor and automation intervals are 5 s here (the defaults are 15 s and 30 s;
bench/bench_automation.py measures with the defaults).
"""

from __future__ import annotations

import subprocess
import sys
import time

import dagster as dg
import httpx
import pytest

from hit_platform.adapters.alerts import list_alerts
from hit_platform.defs import ops
from hit_platform.defs.ops import DASHBOARD
from hit_platform.defs.ml.evaluation import CHAMPION, EVALUATION
from hit_platform.defs.ml.explanations import BATCH_EXPLANATIONS
from hit_platform.defs.resources import LakeResource, MonitorsResource, TrackingResource
from hit_platform.defs.serving import DEPLOYMENT
from hit_platform.defs.ml.training import CANDIDATES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.lake.tables import requests_in_log
from hit_platform.serving.predictor import probe_rows
from hit_platform.adapters.tracking import Tracker
from hit_platform_tests.support.drill import Drill

pytestmark = pytest.mark.slow
FAST = {"HIT_LANDING_SENSOR_INTERVAL_S": "5", "HIT_AUTOMATION_INTERVAL_S": "5", "HIT_DRIFT_SENSOR_INTERVAL_S": "5",
        "HIT_MONITOR_MIN_ROWS": "50", "HIT_SERVE_LOG_FLUSH_SECONDS": "1",
        # these drills retrain on drift alerts; a performance estimate alert retraining is tested on its own
        # (defs/test_drift_retrain_sensor.py), so here the estimate never alerts
        "HIT_MONITOR_MAX_DEGRADED_COUNTRIES": "72"}
QUIET_S = 12  # no run for this long (> 2 automation ticks): nothing more will start
DRIFTED = ("* REPLACE (round(energy::DOUBLE * 0.25, 3) AS energy, round(1 - danceability::DOUBLE, 3) AS danceability, "
           "round(greatest(loudness::DOUBLE - 12, -59.0), 3) AS loudness, round(valence::DOUBLE * 0.2, 3) AS valence)")


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    d = Drill(tmp_path_factory.mktemp("automation"), songs=2000, history_days=20, env=FAST)
    d.start_daemon()
    yield d
    d.stop()


def champion(d: Drill) -> str | None:
    info = Tracker(d.settings).champion_info()
    return info.version if info else None


def on_the_cron(key: dg.AssetKey) -> bool:
    """Assets the automation also runs every 15 minutes: the monitors, and the batch explanations' next slice."""
    return key.path[0] == "ops" or key == BATCH_EXPLANATIONS


def pipeline_runs(runs: list) -> list:
    """Runs other than the scheduled ones, which may tick in between: the cron's (the monitors, the batch
    explanations' next slice) and the maintenance job (hourly at :17)."""
    return [r for r in runs if (not r.asset_selection or not all(on_the_cron(k) for k in r.asset_selection))
            and "dagster/schedule_name" not in r.tags]


def count(d: Drill, key: dg.AssetKey) -> int:
    return len(d.materializations(key))


def test_1_the_history_lands_and_the_whole_chain_runs_by_itself(drill):
    t = drill.land(drill.staging / "charts_history.csv.gz")
    drill.wait(lambda: drill.materializations(DEPLOYMENT), 600, "the first deployment", poll=2)
    took = time.time() - t
    drill.settled(QUIET_S)
    runs = drill.runs()
    assert [r.tags.get("dagster/sensor_name") for r in runs][:2] == ["landing_sensor", "automation"]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), drill.run_report(0)
    assert drill.served_version() == champion(drill) == "1"
    print(f"history landed -> version 1 serving in {took:.0f} s:\n" + "\n".join(drill.run_report(t)))


def test_2_a_drifted_daily_increment_alerts_retrains_and_serving_follows_the_decision(drill):
    before, n = drill.served_version(), count(drill, CANDIDATES)
    drifted = drill.rewritten(drill.increments[0], drill.increments[0].name, DRIFTED)
    t = drill.land(drifted)
    drill.wait(lambda: count(drill, CANDIDATES) > n and drill.idle(), 600, "the retrain after the drifted increment")
    drill.settled(QUIET_S)
    drift = [a for a in list_alerts(Lake(drill.settings), kind="drift") if a["raised_at"].timestamp() > t]
    assert drift and drift[0]["where"] == "ml/features:features_drift", drift
    assert "feature drift above PSI" in drift[0]["what"]
    assert drill.materializations(CANDIDATES)[0].timestamp > drift[0]["raised_at"].timestamp()
    decision = drill.materializations(EVALUATION)[0].asset_materialization.metadata
    promoted = decision["promote"].value
    assert drill.served_version() == champion(drill)
    assert (drill.served_version() != before) == promoted, decision["decision"].value
    assert count(drill, CHAMPION) == (2 if promoted else 1)
    print(f"drifted increment -> {'promoted' if promoted else 'refused'}; serving {before} -> "
          f"{drill.served_version()}\n" + "\n".join(drill.run_report(t)))


def test_3_served_drift_alerts_and_the_drift_sensor_retrains_once(drill):
    n = count(drill, CANDIDATES)
    songs = []
    for i, row in enumerate(probe_rows(120, seed=3)):
        s = dict(zip(FEATURE_COLUMNS, row))
        songs.append({**{c: float(v) for c, v in s.items()}, "key": int(s["key"]), "mode": int(s["mode"]),
                      "time_signature": int(s["time_signature"]), "duration_ms": 200_000 + i,
                      "is_explicit": bool(s["is_explicit"]), "energy": 0.01, "loudness": -50.0, "tempo": 210.0,
                      "spotify_id": f"drifted{i:015d}"})

    def serve_drifted_songs():
        r = httpx.post(drill.serve.endpoint + "/predict/batch", json={"songs": songs}, timeout=60)
        assert r.status_code == 200, r.text
        rid = r.json()["request_id"]  # the monitor reads the log: wait until the serving process committed it
        drill.wait(lambda: rid in requests_in_log(Lake(drill.settings), [rid]), 60, "the inference log commit")

    serve_drifted_songs()
    resources = {"lake": LakeResource(warehouse=str(drill.settings.warehouse)),
                 "tracking": TrackingResource(warehouse=str(drill.settings.warehouse)),
                 "monitors": MonitorsResource(values_json='{"min_rows": 50}')}
    result = dg.materialize([ops.served_feature_drift], instance=drill.instance, resources=resources)
    meta = result.asset_materializations_for_node("ops__served_feature_drift")[0].metadata
    assert meta["breached"].value and meta["max_psi"].value > 0.25, meta["summary"].value
    before = drill.served_version()
    drill.wait(lambda: count(drill, CANDIDATES) > n and drill.idle(), 600, "the drift-triggered retrain")
    drill.settled(QUIET_S)
    retrains = [r for r in drill.runs() if r.tags.get("trigger") == "drift_alert"]
    assert len(retrains) == 1 and retrains[0].tags["alert_id"].startswith("served_feature_drift:")
    # retrained and evaluated; the promotion gate decides (a refusal fails the run at that blocking check)
    decision = drill.materializations(EVALUATION)[0]
    assert decision.run_id == retrains[0].run_id
    promoted = decision.asset_materialization.metadata["promote"].value
    assert retrains[0].status == (dg.DagsterRunStatus.SUCCESS if promoted else dg.DagsterRunStatus.FAILURE)
    assert drill.served_version() == champion(drill) and (drill.served_version() != before) == promoted
    # the drift persists (the new version sees the same songs): another breach does not retrain again
    serve_drifted_songs()
    dg.materialize([ops.served_feature_drift], instance=drill.instance, resources=resources)
    drill.settled(QUIET_S)
    assert len([r for r in drill.runs() if r.tags.get("trigger") == "drift_alert"]) == 1
    assert count(drill, CANDIDATES) == n + 1


def test_4_a_truncated_file_is_rejected_with_an_alert_and_nothing_else_runs(drill):
    serving, version, n_runs = drill.served_version(), champion(drill), len(drill.runs())
    path = drill.increments[2]
    broken = drill.staging / ("truncated_" + path.name)
    broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    t = drill.land(broken)
    drill.wait(lambda: len(drill.runs()) > n_runs and drill.idle(), 300, "the ingest run")
    drill.settled(QUIET_S)
    new = pipeline_runs(drill.runs()[n_runs:])
    assert [r.job_name for r in new] == ["ingest_job"] and new[0].status == dg.DagsterRunStatus.SUCCESS
    alerts = [a for a in list_alerts(Lake(drill.settings), kind="ingest") if a["raised_at"].timestamp() > t]
    assert alerts and alerts[0]["severity"] == "error" and broken.name in alerts[0]["where"]
    assert (drill.served_version(), champion(drill)) == (serving, version)


def test_5_a_failing_blocking_gate_stops_the_chain_and_the_champion_serves_on(drill):
    serving, version, n_runs = drill.served_version(), champion(drill), len(drill.runs())
    # every chart of the day has ranks 1..40 only: rows are valid, the chart-day gate is not
    short = drill.rewritten(drill.increments[3], drill.increments[3].name, "*", "daily_rank::INT <= 40")
    t = drill.land(short)
    drill.wait(lambda: len(drill.runs()) > n_runs and drill.idle(), 300, "the ingest run")
    drill.settled(QUIET_S)
    new = pipeline_runs(drill.runs()[n_runs:])
    assert [r.job_name for r in new] == ["ingest_job"] and new[0].status == dg.DagsterRunStatus.FAILURE
    def kinds() -> set:  # the run-failure sensor reports on its own interval
        found = {a["kind"] for a in list_alerts(Lake(drill.settings)) if a["raised_at"].timestamp() > t}
        return found if {"gate_failure", "run_failure"} <= found else set()

    drill.wait(kinds, 120, "the gate-failure and run-failure alerts")
    assert (drill.served_version(), champion(drill)) == (serving, version)
    print("whole scenario:\n" + "\n".join(drill.run_report(0)))


def test_6_monitors_dashboard_and_alerts_are_there_to_read(drill):
    lake = Lake(drill.settings)
    with lake.connection(read_only=True) as con:
        monitors = dict(con.execute("SELECT monitor, count(*) FROM ops.monitor_metrics GROUP BY 1").fetchall())
        judged = con.execute("SELECT value FROM ops.monitor_metrics WHERE monitor = 'delayed_label_evaluation' "
                             "AND metric = 'mean_roc_auc' ORDER BY checked_at DESC LIMIT 1").fetchall()
        estimated = con.execute("SELECT count(DISTINCT country), min(lower <= estimate AND estimate <= upper) "
                                "FROM ops.performance_estimates WHERE source = 'batch' AND model_version = ?",
                                [champion(drill)]).fetchall()[0]
    always = {"served_feature_drift", "prediction_drift", "delayed_label_evaluation", "serving_health",
              "performance_estimate_batch"}
    assert always <= set(monitors) <= always | {"performance_estimate_served", "attribution_drift"}, monitors
    assert judged and judged[0][0] > 0.6  # earlier predictions scored on the labels the increments revealed
    assert estimated == (72, True)  # the champion's latest batch, estimated without labels
    out = subprocess.run([sys.executable, "-m", "hit_platform.cli.main", "monitor", "--source", "batch", "--limit",
                          "3"], env=drill.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and f"model version {champion(drill)}" in out.stdout, out.stderr
    # the dashboard follows what it watches: rebuilt after the newest monitor result and evaluation
    watched = [*ops.MONITORS, EVALUATION]
    newest = max(drill.materializations(k)[0].timestamp for k in watched if drill.materializations(k))
    drill.wait(lambda: drill.materializations(DASHBOARD)[0].timestamp > newest and drill.idle(), 180,
               "the dashboard rebuilt after the newest monitor result")
    board = drill.settings.warehouse / "reports" / "dashboard.html"
    html = board.read_text()
    for section in ("Model quality", "Performance estimate", "Drift", "Serving", "Monitors", "Alerts"):
        assert f"<h2>{section}</h2>" in html
    assert html.count("data:image/png;base64") >= 5
    meta = drill.materializations(DASHBOARD)[0].asset_materialization.metadata
    assert meta["path"].value == str(board) and "Champion" in meta["summary"].value
    out = subprocess.run([sys.executable, "-m", "hit_platform.cli.main", "alerts", "--limit", "100"], env=drill.env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for kind in ("drift", "ingest", "gate_failure", "run_failure"):
        assert kind in out.stdout
