"""The dashboard: where `hit-platform dashboard` serves it and how often it is rendered and reloaded
(`HIT_DASHBOARD_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    """Where `hit-platform dashboard` serves the dashboard (always on 127.0.0.1), how often it renders
    it from the lake, and how often the page reloads itself (`HIT_DASHBOARD_*`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_DASHBOARD_", extra="ignore")

    port: int = Field(8050, ge=1, le=65535, description="port `hit-platform dashboard` serves the dashboard on, "
                                                        "on 127.0.0.1 (`--port` overrides it)")
    refresh_seconds: int = Field(30, ge=0, description="the page reloads itself this often, served or as the file "
                                                       "ops/dashboard writes (0: never)")
    render_seconds: float = Field(5.0, ge=0, description="`hit-platform dashboard` renders the page from the lake at "
                                                         "most this often; a request in between gets the last "
                                                         "rendering")
