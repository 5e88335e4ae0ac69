"""A warehouse elsewhere (HIT_WAREHOUSE) keeps its Dagster instance inside it: runs of one warehouse never
mix with another's (nor with the repository's own warehouse/dagster)."""

from __future__ import annotations

import dagster as dg

from hit_platform.cli.dagster_instance import persistent_instance
from hit_platform.settings import get_settings


def test_a_warehouse_elsewhere_keeps_its_own_dagster_instance(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    roots = []
    for name in ("one", "two"):
        monkeypatch.setenv("HIT_WAREHOUSE", str(tmp_path / name))
        get_settings.cache_clear()
        try:
            instance = persistent_instance()
        finally:
            get_settings.cache_clear()

        @dg.asset(name=f"asset_{name}")
        def made() -> None:
            return None

        assert dg.materialize([made], instance=instance).success
        roots.append((instance.root_directory, [r.job_name for r in instance.get_runs()]))
        # the directory is a DAGSTER_HOME that `dagster dev` can be pointed at
        assert (tmp_path / name / "dagster" / "dagster.yaml").is_file()
        again = dg.DagsterInstance.from_config(str(tmp_path / name / "dagster"))
        assert len(again.get_runs()) == 1
    assert [r for r, _ in roots] == [str(tmp_path / "one" / "dagster"), str(tmp_path / "two" / "dagster")]
    assert all(len(runs) == 1 for _, runs in roots)
