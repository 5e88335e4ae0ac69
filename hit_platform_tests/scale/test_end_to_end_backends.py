"""The whole path on both backends, from the same landing files:
ingest -> gates -> train -> evaluate -> promote -> serve -> predict over HTTP -> inference log.

Embedded: SQLite catalog, local Parquet, Dagster storage in SQLite, MLflow in SQLite.
Scale: PostgreSQL catalog, data on S3 (moto), Dagster storage in PostgreSQL, MLflow's
backend store in PostgreSQL. Everything chosen by settings; the same code runs. The two
lakes must hold the same rows, the models the same metrics and the same prediction bytes.
"""

from __future__ import annotations

import json
import hashlib
import uuid
from pathlib import Path

import dagster as dg
import httpx
import numpy as np
import pytest

from hit_platform.cli import build as builder
from hit_platform.definitions import build_definitions
from hit_platform.defs.ml.evaluation import EVALUATION
from hit_platform.defs.ml.predictions import BATCH_PREDICTIONS
from hit_platform.defs.resources import LakeResource, ServingResource, TrackingResource, TrainingResource
from hit_platform.defs.serving import DEPLOYMENT
from hit_platform.adapters.lake.connection import Lake
from hit_platform.serving import ServeConfig, process
from hit_platform.adapters.lake.tables import requests_in_log
from hit_platform.serving.loopback import free_port
from hit_platform.serving.predictor import probe_rows
from hit_platform.settings import Settings, get_settings
from hit_platform.steps.transforms import table_fingerprint
from hit_platform.adapters.tracking import Tracker
from hit_platform_tests.support.dumps import generate_full
from hit_platform_tests.scale.test_dagster_postgres import DAGSTER_YAML
from hit_platform_tests.support.servers import create_database

pytestmark = pytest.mark.slow
TABLES = ("raw.chart_rows", "quarantine.chart_rows", "raw.landed_files", "core.chart_entries", "core.songs",
          "core.song_labels", "ml.features", "ml.splits", "ml.batch_predictions", "ml.evaluations")
FINGERPRINTED = ("core.songs", "core.song_labels", "ml.features", "ml.splits")
SONGS = [dict(zip(("danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness",
                   "instrumentalness", "liveness", "valence", "tempo", "time_signature", "duration_ms",
                   "is_explicit"), row)) for row in probe_rows(5, seed=4).tolist()]


def as_song(row: dict) -> dict:
    ints = ("key", "mode", "time_signature", "duration_ms")
    song = {k: (int(v) if k in ints else bool(v) if k == "is_explicit" else float(v)) for k, v in row.items()}
    return {**song, "duration_ms": 180_000 + 1_000 * song["key"]}


def run_platform(settings: Settings, instance: dg.DagsterInstance, monkeypatch) -> dict:
    """Build through serving, send 5 predictions, stop serving; what the platform holds afterwards."""
    port = free_port()
    # Object-storage secrets reach the resources through the environment, as in a deployment; each
    # platform run here stands for a process of its own, which reads its settings once.
    for k, v in settings.to_env().items():
        if k.startswith("HIT_S3_"):
            monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    lake_res = LakeResource(warehouse=str(settings.warehouse), lake_catalog=settings.lake.catalog,
                            lake_data_path=settings.lake.data_path)
    tracking = TrackingResource(warehouse=str(settings.warehouse), tracking_uri=settings.mlflow.tracking_uri)
    defs = build_definitions(lake_res, tracking=tracking, training=TrainingResource(families=["linear"]),
                             serving_config=ServingResource(values_json=json.dumps({"port": port})))
    result = builder.build(defs, instance, upto=[DEPLOYMENT, BATCH_PREDICTIONS])
    assert result.success, [c.description for c in result.checks if not c.passed]
    endpoint = f"http://127.0.0.1:{port}"
    try:
        replies = [httpx.post(endpoint + "/predict", json=as_song(s), timeout=30) for s in SONGS]
        assert [r.status_code for r in replies] == [200] * len(SONGS), replies[0].text
        answers = [r.json() for r in replies]
        batch = httpx.post(endpoint + "/predict/batch", json={"songs": [as_song(s) for s in SONGS]}, timeout=30)
        assert batch.status_code == 200, batch.text
    finally:
        assert process.stop(settings, ServeConfig(port=port))  # flushes the inference log
    lake = Lake(settings)
    with lake.connection(read_only=True) as con:
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}
        prints = {t: table_fingerprint(con, t) for t in FINGERPRINTED}
        log_rows = con.execute("SELECT count(*) FROM ops.inference_log").fetchall()[0][0]
    logged = requests_in_log(lake, [a["request_id"] for a in answers] + [batch.json()["request_id"]])
    ev = instance.get_latest_materialization_event(EVALUATION).asset_materialization.metadata
    probs = np.array([[a["probabilities"][c] for c in sorted(a["probabilities"])] for a in answers])
    return {"counts": counts, "fingerprints": prints, "log_rows": log_rows, "logged": logged,
            "model_version": answers[0]["model_version"], "champion": Tracker(settings).champion_info().version,
            "metrics": {k: ev[k].value for k in ("test_mean_roc_auc", "test_mean_log_loss", "baseline_mean_roc_auc")},
            "answer_sha256": hashlib.sha256(probs.tobytes()).hexdigest()}


def test_the_same_files_give_the_same_lake_models_and_answers_on_both_backends(tmp_path, monkeypatch, pg_dsn,
                                                                              pg_s3_lake):
    embedded = Settings(warehouse=tmp_path / "embedded")
    generate_full(embedded, songs=2000, increments=1)
    scale = pg_s3_lake.settings.override(mlflow={
        "tracking_uri": "postgresql+psycopg2://" + _pg_url(create_database(pg_dsn, "mlflow_" + uuid.uuid4().hex[:8]))})
    scale.landing_dir.parent.mkdir(parents=True, exist_ok=True)
    scale.landing_dir.symlink_to(embedded.landing_dir)  # the same files, byte for byte
    scale.generator_dir.symlink_to(embedded.generator_dir)  # and the same oracle

    out = {"embedded": run_platform(embedded, dg.DagsterInstance.ephemeral(), monkeypatch)}

    db = "dagster_" + uuid.uuid4().hex[:8]
    params = dict(p.split("=", 1) for p in create_database(pg_dsn, db).split())
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    for key, value in {"DAGSTER_PG_HOST": params["host"], "DAGSTER_PG_PORT": params["port"],
                       "DAGSTER_PG_USER": params["user"], "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": db}.items():
        monkeypatch.setenv(key, value)
    instance = dg.DagsterInstance.from_config(str(home))
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    try:
        out["scale"] = run_platform(scale, instance, monkeypatch)
    finally:
        instance.dispose()

    e, s = out["embedded"], out["scale"]
    print({k: {"counts": v["counts"], "metrics": v["metrics"], "log_rows": v["log_rows"]} for k, v in out.items()})
    assert e["counts"] == s["counts"] and e["counts"]["ml.batch_predictions"] > 0
    assert e["fingerprints"] == s["fingerprints"]
    assert e["metrics"] == s["metrics"]
    assert e["answer_sha256"] == s["answer_sha256"]
    for o in out.values():
        assert o["model_version"] == o["champion"] == "1"
        assert o["log_rows"] == 2 * len(SONGS)  # 5 single requests + one batch of 5: one row per song
        assert sorted(o["logged"].values()) == [1] * len(SONGS) + [len(SONGS)]
    # MLflow in PostgreSQL keeps its artifacts under the warehouse, not in ./mlruns of the cwd
    assert any((scale.warehouse / "mlflow" / "artifacts").iterdir()) and not Path("mlruns").exists()
    keys = pg_s3_lake.data_keys()  # the tables' data is in the bucket (a few log rows may sit inlined in the catalog)
    assert any("/ml/features/" in k for k in keys) and any("/raw/chart_rows/" in k for k in keys)


def _pg_url(dsn: str) -> str:
    p = dict(kv.split("=", 1) for kv in dsn.split())
    return f"{p['user']}@{p['host']}:{p['port']}/{p['dbname']}"
