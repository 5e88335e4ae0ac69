"""A trained graph with the cheapest model family, shared by the promotion and reproducibility tests."""

from __future__ import annotations

import dagster as dg

from hit_platform.definitions import build_definitions
from hit_platform.defs.resources import TrackingResource, TrainingResource
from hit_platform.adapters.tracking import Tracker
from hit_platform_tests.support.built import Built


class TrainedLinear(Built):
    def __init__(self, root):
        super().__init__(root)
        self.tracking = TrackingResource(warehouse=str(self.settings.warehouse))
        # linear only (with the prior baseline) and no worker processes: the cheapest graph with a model
        self.training = TrainingResource(families=["linear"], workers=1)
        self.defs = build_definitions(self.resource, tracking=self.tracking, training=self.training)
        self.tracker = Tracker(self.settings)


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    """The plain values of the latest materialization of `key`, as the checks read them."""
    event = instance.get_latest_materialization_event(key)
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


class CommandLineWorld(TrainedLinear):
    """A TrainedLinear whose Dagster instance is the one `hit-platform` opens through DAGSTER_HOME, with the
    environment the command line would have (the same training: linear, one worker)."""

    def __init__(self, root):
        super().__init__(root)
        home = root / "dagster_home"
        home.mkdir()
        self.instance = dg.DagsterInstance.local_temp(str(home))
        self.env = {"HIT_WAREHOUSE": str(self.settings.warehouse), "DAGSTER_HOME": str(home),
                    "HIT_TRAIN_FAMILIES": '["linear"]', "HIT_TRAIN_WORKERS": "1"}

    def cli(self, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
        """`hit-platform ARGS` in this process, with that environment: (exit code, stdout, stderr), stdout
        without the line that names the libraries' log file (what a long command prints first)."""
        from hit_platform.cli.main import main
        from hit_platform.settings import get_settings

        for k, v in self.env.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()
        code = main(list(args))
        out = capsys.readouterr()
        return code, without_log_line(out.out), out.err


def without_log_line(stdout: str) -> str:
    return "".join(line for line in stdout.splitlines(keepends=True) if not line.startswith("(the libraries' logs: "))
