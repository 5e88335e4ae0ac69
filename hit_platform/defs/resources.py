"""Resources shared by the assets: the lake (and, later, MLflow and serving)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from hit_platform.adapters.lake.connection import Lake
from hit_platform.quality import GateThresholds
from hit_platform.adapters.tracking import Tracker
from hit_platform.settings import Settings


class LakeResource(dg.ConfigurableResource):
    """The DuckLake lake. Empty fields take the embedded defaults / `HIT_*` env settings."""

    warehouse: str | None = None
    lake_catalog: str | None = None
    lake_data_path: str | None = None

    def settings(self) -> Settings:
        overrides = {k: v for k, v in {"warehouse": self.warehouse, "lake_catalog": self.lake_catalog,
                                         "lake_data_path": self.lake_data_path}.items() if v}
        return Settings(**overrides)

    def lake(self) -> Lake:
        return Lake(self.settings())

    @property
    def landing_dir(self) -> Path:
        return self.settings().landing_dir


def _overrides(text: str, resource: str) -> dict:
    """Threshold overrides given to a resource as a JSON object."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{resource}.overrides_json is not valid JSON: {exc}") from exc


PROMOTION_THRESHOLDS = ("min_auc_gain_over_baseline", "max_auc_drop_vs_champion",
                        "max_country_auc_drop_vs_champion", "max_log_loss_increase_vs_champion")


class GatesResource(dg.ConfigurableResource):
    """The quality gates' thresholds: `hit_platform.quality.GateThresholds` (env `HIT_GATE_*`),
    with optional overrides given as JSON, e.g. '{"max_psi": 0.3}'."""

    overrides_json: str = "{}"

    def thresholds(self) -> GateThresholds:
        return GateThresholds(**_overrides(self.overrides_json, "gates"))

    def promotion_code_version(self, base: str | None) -> str:
        """`base` plus a hash of the promotion thresholds: the evaluation's decision depends on them, so
        changing them makes it stale and the next build decides again (the way to release a refusal
        by thresholds)."""
        import hashlib

        promotion = {k: v for k, v in self.thresholds().model_dump().items()
                     if k in PROMOTION_THRESHOLDS}
        return f"{base or '1'}-{hashlib.sha256(json.dumps(promotion, sort_keys=True).encode()).hexdigest()[:12]}"


class TrackingResource(dg.ConfigurableResource):
    """MLflow tracking and the model registry. Empty fields take `Settings` (env / warehouse/)."""

    warehouse: str | None = None
    tracking_uri: str | None = None

    def settings(self) -> Settings:
        overrides = {k: v for k, v in {"warehouse": self.warehouse,
                                         "mlflow_tracking_uri": self.tracking_uri}.items() if v}
        return Settings(**overrides)

    def tracker(self) -> Tracker:
        return Tracker(self.settings())


class TrainingResource(dg.ConfigurableResource):
    """What candidate training runs: the model families (empty = every family in
    `hit_platform.domain.models.FAMILIES`) and the seed. The baseline `prior` is always trained."""

    families: list[str] = []
    seed: int = 0
    workers: int = 2  # grid points fitted side by side; not part of the code version (same models)

    def code_version(self, base: str | None) -> str:
        """`base` plus a hash of the model code (families, grids, search) and this config: a change of
        either is a new code version of the candidates, which automation retrains."""
        import hashlib

        import hit_platform.domain.models as models

        h = hashlib.sha256(json.dumps({"families": self.families, "seed": self.seed}, sort_keys=True).encode())
        for path in sorted(Path(models.__file__).parent.glob("*.py")):
            h.update(path.name.encode() + path.read_bytes())
        return f"{base or '1'}-{h.hexdigest()[:12]}"

    def family_names(self) -> list[str] | None:
        if not self.families:
            return None
        return self.families if "prior" in self.families else ["prior", *self.families]


class MonitorsResource(dg.ConfigurableResource):
    """The monitors' thresholds: `hit_platform.steps.monitors.MonitorThresholds` (env `HIT_MONITOR_*`),
    with optional overrides given as JSON, e.g. '{"min_rows": 50}'."""

    overrides_json: str = "{}"

    def thresholds(self):
        from hit_platform.steps.monitors import MonitorThresholds

        return MonitorThresholds(**_overrides(self.overrides_json, "monitors"))
