"""`hit-platform backup` and `restore` on a real warehouse (DuckLake, MLflow registry, Dagster instance,
serving journal): a backup taken while the journal commits holds every request answered before it; a
restore brings back the champion, the lake rows and the Dagster runs of the backup, and nothing after;
a damaged or partial backup, or a place that is not empty, is refused in one line with nothing written.
Walked in process through `main`, as the `hit-platform` script calls it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

from hit_platform.adapters.backup import MANIFEST, BackupRefused, file_digest, places, take
from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.tracking import Tracker
from hit_platform.cli import main as cli
from hit_platform.cli.dagster_instance import persistent_instance
from hit_platform.serving.inference_log import JournalCommitter, SegmentWriter, Served, encode
from hit_platform.serving.predictor import probe_rows
from hit_platform.settings import Settings, get_settings
from hit_platform_tests.cli.test_refusals import warehouse  # noqa: F401 (a fixture)
from hit_platform_tests.support.monitored_world import truth
from hit_platform_tests.support.serving import promote_champion


@dg.asset
def nightly() -> int:
    return 1


@pytest.fixture
def env(warehouse, tmp_path, monkeypatch):
    """test_refusals' empty warehouse as HIT_WAREHOUSE (the root logger kept as it was), backups beside it."""
    monkeypatch.setenv("HIT_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return Settings(warehouse=warehouse, backup={"dir": tmp_path / "backups"})


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def answer(writer: SegmentWriter, version: str, i: int) -> str:
    """One /predict answered by `version`: its record in the journal, as a replica writes it before answering."""
    X = probe_rows(1, seed=i)
    rid = str(uuid.uuid4())
    writer.append(encode(Served(rid, datetime.now(timezone.utc), "/predict", 200, 3.0, version, 5, X, truth(X),
                                [(f"song{i:018d}", None, None, None)])))
    return rid


def champion_now(settings: Settings) -> str | None:
    """The champion as a new process reads it (this one's MLflow store may still hold the lost file open)."""
    code = ("from hit_platform.adapters.tracking import Tracker; from hit_platform.settings import Settings; "
            f"i = Tracker(Settings(warehouse={str(settings.warehouse)!r})).champion_info(); "
            "print(i.version if i else None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def committed(settings: Settings) -> int:
    with Lake(settings).reading() as con:
        if con is None or not Lake(settings).table_exists(con, "ops", "inference_log"):
            return 0
        return con.execute("SELECT count(*) FROM ops.inference_log").fetchall()[0][0]


def logged_ids(settings: Settings) -> list[str]:
    with Lake(settings).connection(read_only=True) as con:
        return [r[0] for r in con.execute("SELECT request_id FROM ops.inference_log").fetchall()]


@pytest.mark.slow  # ~60 s on a loaded 2-core machine: two registered models, two Dagster runs, a subprocess
def test_a_backup_taken_while_serving_commits_restores_what_was_served_and_logged_before_it(env, capsys):
    settings = env
    v1 = promote_champion(settings, seed=1)
    instance = persistent_instance()
    before_run = dg.materialize([nightly], instance=instance).run_id
    journal = settings.serving.journal(settings)
    committer = JournalCommitter(Lake(settings), journal).start(0.2)
    writer = SegmentWriter(journal)
    answered: list[tuple[float, str]] = []  # (when, request id), as the replica answered
    stop = threading.Event()

    def serve():
        i = 0
        while not stop.is_set():
            answered.append((time.monotonic(), answer(writer, v1, i)))
            i += 1
            if i % 10 == 0:
                writer.seal()  # the committer takes a sealed segment
            time.sleep(0.005)

    server = threading.Thread(target=serve)
    server.start()
    try:
        deadline = time.monotonic() + 60
        while len(answered) < 100 or committed(settings) < 50:
            assert time.monotonic() < deadline, (f"{len(answered)} answered, {committed(settings)} committed in "
                                                 "60 s")
            time.sleep(0.05)
        began = time.monotonic()
        code, out, err = run(capsys, "backup")
        assert code == 0, err
        after_backup = len(answered)
        time.sleep(0.5)  # keep going: more served, a new champion, another run
        v2 = promote_champion(settings, seed=2)
        after_run = dg.materialize([nightly], instance=instance).run_id
    finally:
        stop.set()
        server.join()
        writer.close()
        committer.close()
    assert Tracker(settings).champion_info().version == v2 and v2 != v1
    backup = Path(out.strip().splitlines()[-1].split()[1].rstrip(":"))
    manifest = json.loads((backup / MANIFEST).read_text())
    assert manifest["registry"]["champion"] == v1 and manifest["lake"]["rows"]["ops.inference_log"] > 0
    served_before = {rid for t, rid in answered if t < began}
    assert len(answered) > after_backup and len(served_before) >= 100

    shutil.rmtree(settings.warehouse)  # everything lost
    t = time.monotonic()
    code, out, err = run(capsys, "restore", str(backup))
    assert code == 0, err
    restored_in = time.monotonic() - t
    assert champion_now(settings) == v1, "the champion of the backup is back"
    ids = logged_ids(settings)
    assert len(ids) == manifest["lake"]["rows"]["ops.inference_log"], "the lake is the lake of the backup"
    instance = persistent_instance()
    assert instance.get_run_by_id(before_run) is not None and instance.get_run_by_id(after_run) is None
    # the journal's segments came back: the serving process commits them when it starts
    JournalCommitter(Lake(settings), settings.serving.journal(settings)).drain()
    ids = logged_ids(settings)
    assert len(ids) == len(set(ids)), "a request committed twice"
    missing = served_before - set(ids)
    assert not missing, f"{len(missing)} of {len(served_before)} requests answered before the backup are not logged"
    assert not (set(ids) - {rid for _, rid in answered}), "rows nobody answered"
    print(f"backup {manifest['seconds']}, restore {restored_in:.2f} s, {len(served_before)} answered before, "
          f"{len(ids)} logged after the restore")


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory):
    """A warehouse with a champion, a Dagster run and 20 log rows, and its backup (the master copy)."""
    root = tmp_path_factory.mktemp("backed_up")
    settings = Settings(warehouse=root / "warehouse", backup={"dir": root / "backups"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HIT_WAREHOUSE", str(settings.warehouse))
        mp.delenv("DAGSTER_HOME", raising=False)
        get_settings.cache_clear()
        promote_champion(settings, seed=3)
        dg.materialize([nightly], instance=persistent_instance())
        writer = SegmentWriter(settings.serving.journal(settings))
        for i in range(20):
            answer(writer, "1", i)
        writer.close()
        JournalCommitter(Lake(settings), settings.serving.journal(settings)).drain()
        result = take(settings)
    get_settings.cache_clear()
    shutil.rmtree(settings.warehouse)
    return settings, result.path


@pytest.fixture
def lost(backed_up, tmp_path, monkeypatch):
    """The warehouse lost, a copy of its backup to restore (or to damage), and HIT_WAREHOUSE naming it."""
    settings, master = backed_up
    backup = tmp_path / master.name
    shutil.copytree(master, backup)
    monkeypatch.setenv("HIT_WAREHOUSE", str(settings.warehouse))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    get_settings.cache_clear()
    yield settings, backup
    get_settings.cache_clear()
    shutil.rmtree(settings.warehouse, ignore_errors=True)


def refused(capsys, *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, (code, out, err)
    return err.strip()


def nothing_restored(settings: Settings) -> bool:
    return not any(p.exists() for p in places(settings).values())


def test_a_damaged_backup_is_refused_in_one_line_and_nothing_is_restored(lost, capsys):
    settings, backup = lost
    data = next(p for p in sorted((backup / "lake" / "data").rglob("*.parquet")))
    blob = bytearray(data.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    data.write_bytes(bytes(blob))
    line = refused(capsys, "restore", str(backup))
    assert "damaged" in line and data.name in line and "not restored" in line, line
    assert nothing_restored(settings)


def test_a_partial_backup_is_refused(lost, capsys):
    settings, backup = lost
    missing = backup / "mlflow" / "mlflow.db"
    missing.unlink()
    assert "mlflow/mlflow.db is missing" in refused(capsys, "restore", str(backup))
    (backup / MANIFEST).unlink()  # as a backup killed before its manifest: under its .partial name too
    assert f"no {MANIFEST}" in refused(capsys, "restore", str(backup))
    partial = backup.with_name("." + backup.name + ".partial")
    backup.rename(partial)
    assert "partial backup" in refused(capsys, "restore", str(partial))
    assert nothing_restored(settings)


def test_a_restore_never_merges_into_what_is_there(lost, capsys):
    settings, backup = lost
    Lake(settings).write(lambda con: con.execute("CREATE TABLE ops.notes AS SELECT 1 AS x"))  # a new lake
    line = refused(capsys, "restore", str(backup))
    assert "is not empty" in line and "catalog.sqlite" in line, line
    assert not places(settings)["mlflow/mlflow.db"].exists() and not places(settings)["dagster"].exists()


def test_a_restore_killed_after_staging_is_finished_by_the_next(lost, capsys, monkeypatch):
    settings, backup = lost
    from hit_platform.adapters import restore as restoring

    moves = []
    move = restoring._move

    def dies_on_the_third_move(src, dst):
        if len(moves) == 2:
            raise KeyboardInterrupt("killed")
        moves.append(dst)
        move(src, dst)

    monkeypatch.setattr(restoring, "_move", dies_on_the_third_move)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["restore", str(backup)])
    monkeypatch.setattr(restoring, "_move", move)
    capsys.readouterr()
    code, out, err = run(capsys, "restore", str(backup))
    assert code == 0 and "finishing the restore" in out, (out, err)
    manifest = json.loads((backup / MANIFEST).read_text())
    where = places(settings)
    for rel, (size, sha) in manifest["files"].items():  # every file back, byte for byte
        part = next(k for k in where if rel == k or rel.startswith(k + "/"))
        assert file_digest(where[part] / rel[len(part) + 1:] if rel != part else where[part]) == (size, sha), rel
    assert not (settings.warehouse / ".restoring").exists() and len(logged_ids(settings)) == 20


def test_the_scale_path_is_backed_up_with_its_own_tools(tmp_path):
    with pytest.raises(BackupRefused, match="pg_dump"):
        places(Settings(warehouse=tmp_path, lake={"catalog": "postgres:dbname=lake host=127.0.0.1"}))
