"""How often the daemon looks (`HIT_*_INTERVAL_S`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SensorSettings(BaseSettings):
    """How often the daemon looks (`HIT_*_INTERVAL_S`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_", extra="ignore")

    landing_sensor_interval_s: int = Field(15, ge=1, description="how often the landing sensor looks for new files")
    automation_interval_s: int = Field(30, ge=1, description="how often the daemon evaluates automation conditions")
    drift_sensor_interval_s: int = Field(30, ge=1, description="how often the drift sensor reads new drift alerts")
    shadow_sensor_interval_s: int = Field(60, ge=1, description="how often the shadow sensor counts the "
                                                                "challenger's shadowed songs")

