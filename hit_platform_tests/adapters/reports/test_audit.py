"""`hit-platform audit ID` against what the platform really wrote: the HTTP app's inference log,
the `ml/batch_predictions` asset, two registered model versions and a champion swap.

The serving app is the real FastAPI app built by the real replica class (`ModelReplica`, whose
`__serve_build_asgi_app__` Serve calls in each replica), its inference logger and journal committer,
on a temp DuckLake and a temp MLflow store; only Ray Serve's HTTP proxy is left out (the app is called
in-process through an ASGI transport). Starting Ray would add 15-25 s and nothing the audit reads.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import httpx
import numpy as np
import pandas as pd
import pytest

from hit_platform.cli import main as cli
from hit_platform.adapters.reports.audit import AuditError, AuditNotFound, audit
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.adapters.lake.connection import Lake
from hit_platform.serving.replica import ModelReplica
from hit_platform.settings import ServeConfig
from hit_platform.serving.inference_log import JournalCommitter, Served, insert, to_arrow
from hit_platform.serving.predictor import probe_rows
from hit_platform.settings import Settings, get_settings
from hit_platform.adapters.tracking import Tracker
from hit_platform_tests.support.serving import make_pipeline, song

# Two trainings with nothing in common but the model family: every lineage field tells them apart.
LINEAGE = {
    1: {"lake_snapshot_id": "101", "splits_data_version": "splits-dv-1", "dagster_run_id": "train-run-1",
        "git_commit": "1" * 40, "git_dirty": "false", "train_rows": "700", "validation_rows": "150",
        "family": "linear-test"},
    2: {"lake_snapshot_id": "202", "splits_data_version": "splits-dv-2", "dagster_run_id": "train-run-2",
        "git_commit": "2" * 40, "git_dirty": "unknown", "train_rows": "900", "validation_rows": "190",
        "family": "linear-test"},
}


def promote(settings: Settings, seed: int) -> tuple[str, str]:
    """Log, register and promote a pipeline with training `seed`'s lineage; (version, MLflow run id)."""
    tracker = Tracker(settings)
    example = pd.DataFrame(probe_rows(3), columns=list(FEATURE_COLUMNS))
    run_id, uri = tracker.log_candidate(run_name=f"linear-{seed}", params={"seed": seed}, metrics={"auc": 0.5},
                                        pipeline=make_pipeline(seed), input_example=example, tags=LINEAGE[seed],
                                        figures={}, tables={})
    version = tracker.register(uri, run_id, tags={**LINEAGE[seed], "mlflow_run_id": run_id})
    tracker.promote(version.version)
    return str(version.version), run_id


def write_features(lake: Lake, n: int = 5) -> list[str]:
    """A small ml.features table, as the features asset writes it; returns the song ids."""
    X = probe_rows(n, seed=3)
    ids = [f"song{i:02d}" for i in range(n)]
    frame = pd.DataFrame(X, columns=list(FEATURE_COLUMNS)).assign(spotify_id=ids)[["spotify_id", *FEATURE_COLUMNS]]

    def write(con):
        con.register("features_frame", frame)
        con.execute("CREATE OR REPLACE TABLE ml.features AS SELECT * FROM features_frame")
        con.unregister("features_frame")
    lake.write(write)
    return ids


def run_batch_predictions(settings: Settings) -> tuple[str, int]:
    """Materialize the real `ml/batch_predictions` asset; (Dagster run id, lake snapshot it read)."""
    from hit_platform.defs.ml.predictions import batch_predictions
    from hit_platform.defs.resources import LakeResource, TrackingResource

    result = dg.materialize([batch_predictions], instance=dg.DagsterInstance.ephemeral(), resources={
        "lake": LakeResource(warehouse=str(settings.warehouse)),
        "tracking": TrackingResource(warehouse=str(settings.warehouse))})
    assert result.success
    meta = result.asset_materializations_for_node(batch_predictions.op.name)[0].metadata
    return result.run_id, meta["lake_snapshot_read"].value


class InProcessReplica:
    """One replica without Ray: the real class, app, logger and journal."""

    def __init__(self, settings: Settings, config: ServeConfig):
        self.server = ModelReplica(settings.dump_for_child(), config.model_dump(mode="json"))
        self.app = self.server.__serve_build_asgi_app__()  # what Serve does once the constructor returns

    def post(self, path: str, **kwargs) -> httpx.Response:
        async def call():
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
                return await client.post(path, **kwargs)
        return asyncio.run(call())

    def swap_to(self, version: str) -> None:
        """What Serve does on a new user_config: `reconfigure` on the running replica."""
        asyncio.run(self.server.reconfigure({"model_version": version}))
        assert self.server.model.version == version, self.server.update_error

    def close(self) -> None:
        self.server.logger.close()  # flushes the buffer to the journal


@dataclass
class Traced:
    settings: Settings
    versions: dict[int, str] = field(default_factory=dict)
    runs: dict[int, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    batch_run_id: str = ""
    batch_snapshot: int = -1
    songs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> Traced:
    settings = Settings(warehouse=tmp_path_factory.mktemp("audit") / "warehouse")
    t = Traced(settings)
    lake = Lake(settings)
    t.versions[1], t.runs[1] = promote(settings, seed=1)
    t.songs = write_features(lake)
    t.batch_run_id, t.batch_snapshot = run_batch_predictions(settings)  # scored by champion v1

    config = ServeConfig(log_committer="process", log_flush_seconds=60, max_batch=50)
    replica = InProcessReplica(settings, config)
    try:
        def answered(response: httpx.Response, status: int) -> str:
            assert response.status_code == status, response.text[:300]
            return response.json()["request_id"]

        first = replica.post("/predict", json=song(spotify_id="before-the-swap"))
        assert first.json()["model_version"] == t.versions[1]
        t.ids["before_swap"] = answered(first, 200)
        t.ids["batch_request"] = answered(replica.post("/predict/batch", json={"songs": [song()] * 3}), 200)
        t.ids["refused_body"] = answered(replica.post("/predict", json=song(energy=3.0)), 422)
        t.ids["refused_query"] = answered(replica.post("/predict?top_k=0", json=song()), 422)

        t.versions[2], t.runs[2] = promote(settings, seed=2)
        replica.swap_to(t.versions[2])
        after = replica.post("/predict", json=song(spotify_id="after-the-swap"))
        assert after.json()["model_version"] == t.versions[2]
        t.ids["after_swap"] = answered(after, 200)
    finally:
        replica.close()
    JournalCommitter(lake, config.journal(settings)).close()  # what the serving process does: journal -> lake
    return t


def lineage_of(t: Traced, seed: int) -> dict:
    lin = LINEAGE[seed]
    return {"model_version": t.versions[seed], "mlflow_run_id": t.runs[seed],
            "registered_model": f"hit_model version {t.versions[seed]}",
            "trained_by_dagster_run": lin["dagster_run_id"], "trained_on_lake_snapshot": lin["lake_snapshot_id"],
            "trained_on_splits_data_version": lin["splits_data_version"], "training_rows": lin["train_rows"],
            "validation_rows": lin["validation_rows"], "family": lin["family"],
            "mlflow_tracking_uri": t.settings.tracking_uri}


def assert_traces_to(report: dict, t: Traced, seed: int) -> None:
    expected = lineage_of(t, seed)
    assert {k: report.get(k) for k in expected} == expected
    assert report["trained_at"].startswith("20")  # the MLflow run's start, ISO 8601


def test_a_served_request_traces_to_its_model_run_and_lineage(traced: Traced):
    report = audit(traced.settings, traced.ids["before_swap"])
    assert report["kind"] == "served request" and report["status"] == 200
    assert report["endpoint"] == "/predict" and report["songs"] == 1
    assert_traces_to(report, traced, 1)
    assert report["code_version"] == "1" * 40  # clean tree: no suffix
    # registered as versions were before backgrounds were declared: no attributions invented (issue 31)
    [line] = report["explanation"]
    assert line.startswith(f"none: version {traced.versions[1]} of 'hit_model'") and "has no declared background" in line


def test_a_request_recovered_from_a_dead_replicas_journal_says_so(traced: Traced, tmp_path: Path):
    import os
    from hit_platform.serving.inference_log import SegmentWriter, encode

    rid = "recovered-" + traced.ids["before_swap"]
    e = Served(rid, datetime.now(timezone.utc), "/predict", 200, 2.0, traced.versions[1], 5,
               np.zeros((1, len(FEATURE_COLUMNS))), np.full((1, 72), 0.5), [("x", None, None, None)])
    writer = SegmentWriter(tmp_path / "journal")
    writer.append(encode(e))
    os.close(writer.fd)  # the replica dies with its segment open
    JournalCommitter(Lake(traced.settings), tmp_path / "journal").close()
    report = audit(traced.settings, rid)
    assert report["kind"] == "served request" and "its replica died" in report["logged"]
    assert "logged" not in audit(traced.settings, traced.ids["before_swap"])
    assert_traces_to(report, traced, 1)


def test_a_batch_request_counts_its_songs(traced: Traced):
    report = audit(traced.settings, traced.ids["batch_request"])
    assert report["kind"] == "served request" and report["endpoint"] == "/predict/batch" and report["songs"] == 3
    assert_traces_to(report, traced, 1)


def test_requests_before_and_after_a_champion_swap_trace_to_their_own_versions(traced: Traced):
    assert traced.versions[1] != traced.versions[2]
    before = audit(traced.settings, traced.ids["before_swap"])
    after = audit(traced.settings, traced.ids["after_swap"])
    assert_traces_to(before, traced, 1)
    assert_traces_to(after, traced, 2)
    # v2 was trained where git could not tell whether the tree was dirty: said so, not hidden
    assert after["code_version"] == "2" * 40 + " (unknown whether dirty)"


def test_a_batch_prediction_traces_to_its_dagster_run_snapshot_and_model(traced: Traced):
    song_id = traced.songs[2]
    report = audit(traced.settings, f"{traced.batch_run_id}:{song_id}")
    assert report["kind"] == "batch prediction" and report["spotify_id"] == song_id
    assert report["predicted_by_dagster_run"] == traced.batch_run_id
    assert report["predicted_from_lake_snapshot"] == traced.batch_snapshot
    assert_traces_to(report, traced, 1)  # the champion then, though v2 is the champion now


@pytest.mark.parametrize("which, field_named", [("refused_body", "energy"), ("refused_query", "top_k")])
def test_a_refused_request_says_no_model_made_a_prediction(traced: Traced, which, field_named):
    report = audit(traced.settings, traced.ids[which])
    assert report["kind"] == "refused request (HTTP 422)" and report["status"] == 422
    assert report["model_version"] is None
    assert report["prediction"].startswith("none: ")
    assert field_named in report["error"]
    # the log records no model version for refusals: said so, not guessed
    assert report["model_serving_then"].startswith("not recorded")
    lineage_keys = set(lineage_of(traced, 1)) - {"model_version"} | {"code_version", "trained_at"}
    assert not lineage_keys & set(report), "a refused request must not carry a model's lineage"


def test_an_unknown_id_names_where_it_looked(traced: Traced):
    with pytest.raises(AuditNotFound) as caught:
        audit(traced.settings, "no-such-request")
    message = str(caught.value)
    assert "'no-such-request'" in message
    assert "ops.inference_log.request_id" in message and "ml.batch_predictions.prediction_id" in message


def test_an_empty_or_missing_lake_is_not_found_not_a_crash(tmp_path: Path):
    settings = Settings(warehouse=tmp_path / "nothing-here")
    with pytest.raises(AuditNotFound, match="no lake at"):
        audit(settings, "some-id")
    Lake(settings).write(lambda con: None)  # a lake, no tables yet
    with pytest.raises(AuditNotFound, match=r"ops.inference_log \(no such table yet"):
        audit(settings, "some-id")


def test_a_logged_version_missing_from_the_registry_is_not_found(traced: Traced):
    lake = Lake(traced.settings)
    ghost = Served("logged-by-a-version-the-registry-lost", datetime.now(timezone.utc), "/predict",
                   200, 1.0, "99", 5, probe_rows(1), np.full((1, 72), 0.5), [(None, None, None, None)])
    lake.write(lambda con: insert(con, to_arrow([ghost])))
    with pytest.raises(AuditNotFound, match="names model version 99, which the registry at .* does not hold"):
        audit(traced.settings, ghost.request_id)


def test_inconsistent_log_rows_are_an_error_not_a_pick(traced: Traced):
    """One request id answered by two versions cannot happen; if the log says so, the audit refuses to choose."""
    lake = Lake(traced.settings)
    rid, now = "answered-twice", datetime.now(timezone.utc)
    rows = [Served(rid, now, "/predict", 200, 1.0, v, 5, probe_rows(1), np.full((1, 72), 0.5),
                   [(None, None, None, None)]) for v in (traced.versions[1], traced.versions[2])]
    lake.write(lambda con: insert(con, to_arrow(rows)))
    with pytest.raises(AuditError, match="inconsistent rows for request 'answered-twice'"):
        audit(traced.settings, rid)


@pytest.fixture
def cli_env(traced: Traced, monkeypatch):
    monkeypatch.setenv("HIT_WAREHOUSE", str(traced.settings.warehouse))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cli_prints_the_trace_of_a_found_id(traced: Traced, cli_env, capsys):
    assert cli.main(["audit", traced.ids["after_swap"]]) == 0
    out = capsys.readouterr().out
    assert "served request" in out and traced.runs[2] in out and "train-run-2" in out
    assert f"hit_model version {traced.versions[2]}" in out and "(unknown whether dirty)" in out


def test_cli_exits_2_naming_an_unknown_id_on_stderr(traced: Traced, cli_env, capsys):
    assert cli.main(["audit", "no-such-request"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no prediction has the id 'no-such-request'" in captured.err
    assert "ops.inference_log.request_id" in captured.err
