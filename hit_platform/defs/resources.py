"""The Dagster resources: the lake, MLflow, training, gate and monitor thresholds, serving.

Each is a view of one `Settings` section, built in one place, `resources_for`, with every value written
out, so the UI's launchpad shows the values a run uses and a setting is changed in one place (its
`HIT_*` variable, read once into `Settings`). A threshold resource reads nothing else: the values it is
given, and for a value it is not given (a test's partial JSON) the section's default, never the
environment again. The lake and MLflow resources name where those are; credentials, DuckDB limits and
retries stay in the process's `Settings`, out of run config the UI would show.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import dagster as dg

from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.tracking import Tracker
from hit_platform.domain.promotion import PromotionThresholds
from hit_platform.settings import (GateThresholds, MaintenanceSettings, MonitorThresholds, PromotionSettings,
                                   ServeConfig, Settings, ShadowSettings, TrainingSettings, get_settings)


class LakeResource(dg.ConfigurableResource):
    """The DuckLake lake. Empty fields take the embedded defaults / `HIT_*` env settings."""

    warehouse: str | None = None
    lake_catalog: str | None = None
    lake_data_path: str | None = None

    def settings(self) -> Settings:
        return _settings(self.warehouse, lake={"catalog": self.lake_catalog, "data_path": self.lake_data_path})

    def lake(self) -> Lake:
        return Lake(self.settings())

    @property
    def landing_dir(self) -> Path:
        return self.settings().landing_dir


def _settings(warehouse: str | None, **sections: dict) -> Settings:
    """The process's settings with this resource's non-empty fields on top."""
    given = {name: {k: v for k, v in fields.items() if v} for name, fields in sections.items()}
    given = {name: fields for name, fields in given.items() if fields}
    if warehouse:
        given["warehouse"] = warehouse
    return get_settings().override(**given) if given else get_settings()


def serving_settings(lake: "LakeResource", tracking: "TrackingResource") -> Settings:
    """What the serving process is started with: the lake it logs to and the MLflow it loads from."""
    return lake.settings().override(mlflow=tracking.settings().mlflow.model_dump())


def _values(text: str, resource: str) -> dict:
    """A section's values given to a resource as a JSON object."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{resource}.values_json is not valid JSON: {exc}") from exc
    if not isinstance(values, dict):
        raise ValueError(f"{resource}.values_json must be a JSON object, got {type(values).__name__}")
    return values


PROMOTION_THRESHOLDS = tuple(f.name for f in dataclasses.fields(PromotionThresholds))


class GatesResource(dg.ConfigurableResource):
    """The quality gates' and promotion's thresholds: the settings' `gates` section (env `HIT_GATE_*`) as
    JSON, e.g. '{"max_psi": 0.3}' (a value not given is the section's default)."""

    values_json: str = "{}"

    def thresholds(self) -> GateThresholds:
        return _section(GateThresholds, self.values_json, "gates")

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
        return _settings(self.warehouse, mlflow={"tracking_uri": self.tracking_uri})

    def tracker(self) -> Tracker:
        return Tracker(self.settings())


class TrainingResource(dg.ConfigurableResource):
    """What candidate training runs: the model families (empty = every family in
    `hit_platform.domain.models.FAMILIES`), the seed, and the lake snapshot it trains from (None = the
    newest; a past one by DuckLake time travel). The baseline `prior` is always trained."""

    families: list[str] = []
    seed: int = 0
    workers: int = 2  # grid points fitted side by side; not part of the code version (same models)
    budget_s: float | None = TrainingSettings.model_fields["budget_s"].default  # the search's seconds
    snapshot: int | None = None
    ray_address: str | None = None  # a Ray cluster's tasks fit the grid points; not part of the code version either
    # validation songs of each candidate's global importance (not the models: not in the code version)
    importance_songs: int = TrainingSettings.model_fields["importance_songs"].default

    def code_version(self, base: str | None) -> str:
        """`base` plus a hash of the model code (families, grids, search) and this config: a change of
        either is a new code version of the candidates, which automation retrains. A pinned snapshot is
        part of it; the newest (None) adds nothing, so code versions from before the setting stand."""
        import hashlib

        import hit_platform.domain.models as models

        config = {"families": self.families, "seed": self.seed, "budget_s": self.budget_s}
        if self.snapshot is not None:
            config["snapshot"] = self.snapshot
        h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
        for path in sorted(Path(models.__file__).parent.glob("*.py")):
            h.update(path.name.encode() + path.read_bytes())
        return f"{base or '1'}-{h.hexdigest()[:12]}"

    def family_names(self) -> list[str] | None:
        if not self.families:
            return None
        return self.families if "prior" in self.families else ["prior", *self.families]


class MonitorsResource(dg.ConfigurableResource):
    """The monitors' thresholds: the settings' `monitors` section (env `HIT_MONITOR_*`) as JSON, e.g.
    '{"min_rows": 50}' (a value not given is the section's default)."""

    values_json: str = "{}"

    def thresholds(self) -> MonitorThresholds:
        return _section(MonitorThresholds, self.values_json, "monitors")


class PromotionResource(dg.ConfigurableResource):
    """What a candidate that passed the gates becomes (`HIT_PROMOTION_MODE`: immediate or shadow) and how a
    challenger is judged on live traffic (the `shadow` section, `HIT_SHADOW_*`, as JSON)."""

    mode: str = "immediate"
    shadow_json: str = "{}"

    def promotion_mode(self) -> str:
        return _section(PromotionSettings, json.dumps({"mode": self.mode}), "promotion").mode

    def shadow(self) -> ShadowSettings:
        return _section(ShadowSettings, self.shadow_json, "promotion.shadow")


class ServingResource(dg.ConfigurableResource):
    """How the serving process runs: the settings' `serving` section (env `HIT_SERVE_*`) as JSON, e.g.
    '{"port": 8081}' (a value not given is the section's default)."""

    values_json: str = "{}"

    def config(self) -> ServeConfig:
        return _section(ServeConfig, self.values_json, "serving")


class MaintenanceResource(dg.ConfigurableResource):
    """What the maintenance job keeps and for how long: the settings' `maintenance` section (env
    `HIT_MAINTENANCE_*`, `HIT_LAKE_KEEP_SNAPSHOTS_DAYS`) as JSON (a value not given is the section's default)."""

    values_json: str = "{}"

    def policy(self) -> MaintenanceSettings:
        return _section(MaintenanceSettings, self.values_json, "maintenance")


def _section(section: type, values_json: str, resource: str):
    """The settings section `section` holding exactly the values given (validated as the environment's
    would be), the section's defaults for the rest: every value is passed in, so the environment is not
    read a second time."""
    given = _values(values_json, resource)
    unknown = sorted(set(given) - set(section.model_fields))
    if unknown:
        raise ValueError(f"{resource}.values_json names no setting {unknown}; known: {sorted(section.model_fields)}")
    defaults = {name: field.get_default(call_default_factory=True) for name, field in section.model_fields.items()}
    return section(**{**defaults, **given})


def resources_for(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Every resource, from one Settings. The embedded profile keeps the lake, MLflow and Dagster in
    files under the warehouse; the scale profile has Settings require a PostgreSQL catalog, object
    storage and an MLflow server. Thresholds are written out in full, so the UI shows those in force."""
    return {
        "lake": LakeResource(warehouse=str(settings.warehouse), lake_catalog=settings.lake.catalog,
                             lake_data_path=settings.lake.data_path),
        "tracking": TrackingResource(warehouse=str(settings.warehouse), tracking_uri=settings.mlflow.tracking_uri),
        "training": TrainingResource(families=settings.training.families, seed=settings.training.seed,
                                     workers=settings.training.workers, snapshot=settings.training.snapshot,
                                     budget_s=settings.training.budget_s,
                                     ray_address=settings.training.ray_address,
                                     importance_songs=settings.training.importance_songs),
        "gates_config": GatesResource(values_json=settings.gates.model_dump_json()),
        "monitors": MonitorsResource(values_json=settings.monitors.model_dump_json()),
        "serving": ServingResource(values_json=settings.serving.model_dump_json()),
        "promotion": PromotionResource(mode=settings.promotion.mode, shadow_json=settings.shadow.model_dump_json()),
        "maintenance": MaintenanceResource(values_json=settings.maintenance.model_dump_json()),
    }
