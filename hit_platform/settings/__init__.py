"""One Settings object, in sections: lake, ingest, duckdb, s3, mlflow, training, gates, monitors, serving,
sensors, promotion, shadow, dashboard, maintenance, backup, batch. It is the only place that reads the environment,
once per process (`get_settings`); resources, sensors and the serving process are built from it.

Every setting can be overridden by an environment variable: `HIT_WAREHOUSE`, then the section's
prefix and the field (`HIT_LAKE_CATALOG=postgres:dbname=lake host=...`, `HIT_GATE_MAX_PSI=0.3`,
`HIT_SERVE_PORT=8080`). The S3 settings (`HIT_S3_*`) fall back to the standard `AWS_*` variables.
The defaults (profile `embedded`) keep everything under `warehouse/` in the repository root.

The sections live one to a module in this package (lake, tracking, training, gates, monitors,
serving, promotion, sensors, dashboard); `Settings`, which holds them, and `get_settings` are here.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hit_platform.settings.backup import BackupSettings
from hit_platform.settings.batch import BatchSettings
from hit_platform.settings.dashboard import DashboardSettings
from hit_platform.settings.gates import GateThresholds
from hit_platform.settings.lake import DuckDBSettings, IngestSettings, LakeSettings, S3Options, S3Settings
from hit_platform.settings.maintenance import MaintenanceSettings
from hit_platform.settings.monitors import MonitorThresholds
from hit_platform.settings.promotion import PromotionSettings, ShadowSettings
from hit_platform.settings.sensors import SensorSettings
from hit_platform.settings.serving import ServeConfig
from hit_platform.settings.tracking import MlflowSettings
from hit_platform.settings.training import TrainingSettings

__all__ = ["PROFILES", "REPO_ROOT", "BackupSettings", "BatchSettings", "DashboardSettings", "DuckDBSettings",
           "GateThresholds",
           "IngestSettings",
           "LakeSettings", "MaintenanceSettings",
           "MlflowSettings", "MonitorThresholds", "PromotionSettings", "S3Options", "S3Settings", "SensorSettings",
           "ServeConfig", "Settings", "ShadowSettings", "TrainingSettings", "get_settings"]

REPO_ROOT = Path(__file__).resolve().parents[2]

PROFILES = ("embedded", "scale")


class Settings(BaseSettings):
    """Everything the platform is configured by, in sections. Read once per process (`get_settings`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_", extra="ignore")

    warehouse: Path = Field(REPO_ROOT / "warehouse", description="root of everything the platform writes")
    profile: Literal["embedded", "scale"] = Field(
        "embedded", description="embedded: the lake, MLflow and Dagster in files under the warehouse; scale: the "
                                "lake catalog in PostgreSQL, its data in object storage, an MLflow server, each "
                                "one required")
    lake: LakeSettings = Field(default_factory=LakeSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    duckdb: DuckDBSettings = Field(default_factory=DuckDBSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    gates: GateThresholds = Field(default_factory=GateThresholds)
    monitors: MonitorThresholds = Field(default_factory=MonitorThresholds)
    serving: ServeConfig = Field(default_factory=ServeConfig)
    sensors: SensorSettings = Field(default_factory=SensorSettings)
    promotion: PromotionSettings = Field(default_factory=PromotionSettings)
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)

    @field_validator("lake", "ingest", "duckdb", "s3", "mlflow", "training", "gates", "monitors", "serving",
                     "sensors", "promotion", "shadow", "dashboard", "maintenance",
                     "backup", "batch", mode="before")
    @classmethod
    def _section_over_env(cls, value, info):
        # A section given as a dict overrides those fields only; the rest still come from the environment.
        if isinstance(value, dict):
            return cls.model_fields[info.field_name].annotation(**value)
        return value

    @model_validator(mode="after")
    def _scale_needs_its_services(self) -> "Settings":
        if self.profile == "scale":
            missing = [what for what, ok in (
                ("HIT_LAKE_CATALOG=postgres:<dsn>", (self.lake.catalog or "").startswith("postgres:")),
                ("HIT_LAKE_DATA_PATH=s3://bucket/prefix", self.data_on_s3),
                ("HIT_MLFLOW_TRACKING_URI=<server or database URI>",
                 bool(self.mlflow.tracking_uri) and not self.mlflow.tracking_uri.startswith(("sqlite:", "file:"))),
            ) if not ok]
            if missing:
                raise ValueError("HIT_PROFILE=scale keeps nothing in local files, so it needs: " + ", ".join(missing))
        return self

    def dump_for_child(self) -> dict:
        """The settings as JSON values for another process (a Ray actor), secrets revealed:
        `model_dump` masks them as '**********', which would pass the mask on as the secret."""
        return _reveal(self)

    @classmethod
    def for_child(cls, dump: dict) -> "Settings":
        """The settings `dump_for_child` gave, exactly: nothing is read from this process's environment."""
        return cls.model_validate(dump)

    def override(self, **sections) -> "Settings":
        """These settings with some fields replaced, e.g. `override(lake={"retries": 40})`."""
        dump = self.dump_for_child()
        for name, value in sections.items():
            dump[name] = {**dump[name], **value} if isinstance(value, dict) else value
        return type(self)(**dump)

    def to_env(self) -> dict[str, str]:
        """The `HIT_*` variables (and RAY_ADDRESS) that rebuild exactly these settings in a child process."""
        env: dict[str, str] = {}
        _put_env(self, env)
        return env

    @property
    def backup_dir(self) -> Path:
        """Where backups go: beside the warehouse by default, so that losing it does not lose them."""
        return self.backup.dir or self.warehouse.parent / "backups"

    @property
    def landing_dir(self) -> Path:
        return self.warehouse / "landing"

    @property
    def generator_dir(self) -> Path:
        """Generator truth (oracle, manifest): never read by the pipeline."""
        return self.warehouse / "generator"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.warehouse / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.warehouse / "mlflow" / "artifacts"

    @property
    def oracle(self) -> Path:
        return Path(self.training.oracle_path) if self.training.oracle_path else self.generator_dir / "oracle.parquet"

    @property
    def catalog(self) -> str:
        """The DuckLake catalog part of the ATTACH string (after `ducklake:`)."""
        if self.lake.catalog:
            c = self.lake.catalog
            return c if c.startswith(("postgres:", "sqlite:", "duckdb:")) else f"sqlite:{c}"
        return f"sqlite:{self.warehouse / 'lake' / 'catalog.sqlite'}"

    @property
    def data_path(self) -> str:
        if self.lake.data_path:
            p = self.lake.data_path
            return p if p.endswith("/") else p + "/"
        return str(self.warehouse / "lake" / "data") + "/"

    @property
    def data_on_s3(self) -> bool:
        return self.data_path.startswith(("s3://", "s3a://", "s3n://"))

    def s3_options(self) -> S3Options:
        """The S3 options the lake uses: `HIT_S3_*` settings, else the standard `AWS_*` variables."""
        return self.s3.options()


def _reveal(model: BaseSettings) -> dict:
    out = model.model_dump(mode="json")
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseSettings):
            out[name] = _reveal(value)
        elif isinstance(value, SecretStr):
            out[name] = value.get_secret_value()
        elif field.exclude:
            out[name] = value
    return out


def _put_env(model: BaseSettings, env: dict[str, str]) -> None:
    prefix = model.model_config.get("env_prefix", "")
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseSettings):
            _put_env(value, env)
            continue
        if field.exclude or value is None:
            continue
        alias = field.validation_alias
        env_name = alias.choices[0] if isinstance(alias, AliasChoices) else f"{prefix}{name}".upper()
        value = value.get_secret_value() if isinstance(value, SecretStr) else \
            model.model_dump(mode="json", include={name})[name]
        env[env_name] = value if isinstance(value, str) else json.dumps(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
