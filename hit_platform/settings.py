"""Where the platform keeps things: paths and URLs, embedded defaults, env overrides.

Every setting can be overridden by an environment variable `HIT_<NAME>`
(e.g. `HIT_WAREHOUSE=/data/wh`, `HIT_LAKE_CATALOG=postgres:dbname=lake host=...`).
The defaults keep everything under `warehouse/` in the repository root.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HIT_", extra="ignore")

    warehouse: Path = Field(REPO_ROOT / "warehouse", description="root of everything the platform writes")
    lake_catalog: str | None = Field(
        None, description="DuckLake catalog: a SQLite file path (default warehouse/lake/catalog.sqlite) or 'postgres:<dsn>'")
    lake_data_path: str | None = Field(
        None, description="DuckLake data files: a folder (default warehouse/lake/data/) or s3://bucket/prefix")
    lake_alias: str = Field("lake", description="name the lake is attached as in DuckDB sessions")
    lake_retries: int = Field(12, description="attempts for a lake write that meets a lock or snapshot conflict")
    lake_retry_base_s: float = Field(0.05, description="first back-off wait; doubles per attempt, with jitter")
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI (default sqlite:///<warehouse>/mlflow/mlflow.db)")
    mlflow_experiment: str = Field("hit_platform", description="MLflow experiment of the candidate runs")
    model_name: str = Field("hit_model", description="registered model name in the MLflow registry")
    oracle_path: str | None = Field(
        None, description="generator oracle for evaluation (default <warehouse>/generator/oracle.parquet; "
                          "absent on real data)")
    duckdb_memory_limit: str | None = Field(None, description="DuckDB memory_limit per connection, e.g. '8GB'")
    duckdb_threads: int | None = Field(None, description="DuckDB threads per connection")

    @property
    def landing_dir(self) -> Path:
        return self.warehouse / "landing"

    @property
    def generator_dir(self) -> Path:
        """Generator truth (oracle, manifest): never read by the pipeline."""
        return self.warehouse / "generator"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.warehouse / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.warehouse / "mlflow" / "artifacts"

    @property
    def oracle(self) -> Path:
        return Path(self.oracle_path) if self.oracle_path else self.generator_dir / "oracle.parquet"

    @property
    def catalog(self) -> str:
        """The DuckLake catalog part of the ATTACH string (after `ducklake:`)."""
        if self.lake_catalog:
            c = self.lake_catalog
            return c if c.startswith(("postgres:", "sqlite:", "duckdb:")) else f"sqlite:{c}"
        return f"sqlite:{self.warehouse / 'lake' / 'catalog.sqlite'}"

    @property
    def data_path(self) -> str:
        if self.lake_data_path:
            p = self.lake_data_path
            return p if p.endswith("/") else p + "/"
        return str(self.warehouse / "lake" / "data") + "/"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
