"""Where the platform keeps things: paths and URLs, embedded defaults, env overrides.

Every setting can be overridden by an environment variable `HIT_<NAME>`
(e.g. `HIT_WAREHOUSE=/data/wh`, `HIT_LAKE_CATALOG=postgres:dbname=lake host=...`).
The S3 settings (`HIT_S3_*`) fall back to the standard `AWS_*` variables.
The defaults keep everything under `warehouse/` in the repository root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
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
    mlflow_artifact_location: str | None = Field(
        None, description="where a new experiment keeps its artifacts, e.g. s3://bucket/mlflow (default "
                          "<warehouse>/mlflow/artifacts, or the tracking server's own default)")
    mlflow_experiment: str = Field("hit_platform", description="MLflow experiment of the candidate runs")
    model_name: str = Field("hit_model", description="registered model name in the MLflow registry")
    train_families: list[str] = Field(
        [], description='model families the candidates asset trains, e.g. ["linear", "trees"] (JSON in env); '
                        "empty = every family; the prior baseline is always trained")
    train_seed: int = Field(0, description="seed of candidate training (a change retrains, like a code change)")
    train_workers: int = Field(2, ge=1, description="processes fitting a family's grid points side by side "
                                                   "(the models are the same for any value)")
    landing_sensor_interval_s: int = Field(15, ge=1, description="how often the landing sensor looks for new files")
    automation_interval_s: int = Field(30, ge=1, description="how often the daemon evaluates automation conditions")
    drift_sensor_interval_s: int = Field(30, ge=1, description="how often the drift sensor reads new drift alerts")
    oracle_path: str | None = Field(
        None, description="generator oracle for evaluation (default <warehouse>/generator/oracle.parquet; "
                          "absent on real data)")
    duckdb_memory_limit: str | None = Field(
        "4GB", description="DuckDB memory_limit per connection; beyond it queries spill to warehouse/duckdb_tmp")
    duckdb_threads: int | None = Field(None, description="DuckDB threads per connection")
    # Object storage for the lake's data files (used when lake_data_path is s3://bucket/prefix).
    # Each one falls back to the standard AWS variable named in its description when unset.
    s3_endpoint: str | None = Field(
        None, description="S3-compatible endpoint, e.g. http://127.0.0.1:9000 (MinIO, moto); unset = AWS S3. "
                          "Fallback: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL")
    s3_region: str | None = Field(
        None, description="S3 region. Fallback: AWS_REGION, AWS_DEFAULT_REGION, then us-east-1")
    s3_access_key_id: str | None = Field(None, description="S3 access key id. Fallback: AWS_ACCESS_KEY_ID")
    s3_secret_access_key: SecretStr | None = Field(
        None, description="S3 secret access key (kept in memory only, never written to disk). "
                          "Fallback: AWS_SECRET_ACCESS_KEY")
    s3_session_token: SecretStr | None = Field(
        None, description="S3 session token for temporary credentials. Fallback: AWS_SESSION_TOKEN")
    s3_url_style: str | None = Field(
        None, description="'path' (MinIO, moto, most S3-compatible servers) or 'vhost' (AWS); "
                          "default: path when an endpoint is set, else vhost")
    s3_use_ssl: bool | None = Field(
        None, description="HTTPS to the endpoint; default: from the endpoint's scheme (http:// = false), else true")

    def dump_for_child(self) -> dict:
        """The settings as JSON values for another process (env, Ray actor), secrets revealed:
        `model_dump` masks them as '**********', which would pass the mask on as the secret."""
        out = self.model_dump(mode="json")
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                out[name] = value.get_secret_value()
        return out

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

    @property
    def data_on_s3(self) -> bool:
        return self.data_path.startswith(("s3://", "s3a://", "s3n://"))

    def s3_options(self) -> S3Options:
        """The S3 options the lake uses: `HIT_S3_*` settings, else the standard `AWS_*` variables."""
        raw_endpoint = self.s3_endpoint or _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        endpoint, scheme_ssl = None, None
        if raw_endpoint:
            parts = urlsplit(raw_endpoint if "://" in raw_endpoint else "//" + raw_endpoint)
            endpoint = parts.netloc or parts.path.rstrip("/")
            if parts.scheme:
                scheme_ssl = parts.scheme == "https"
        use_ssl = self.s3_use_ssl if self.s3_use_ssl is not None else (scheme_ssl if scheme_ssl is not None else True)
        return S3Options(
            endpoint=endpoint,
            region=self.s3_region or _env("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1",
            access_key_id=self.s3_access_key_id or _env("AWS_ACCESS_KEY_ID"),
            secret_access_key=_secret(self.s3_secret_access_key) or _env("AWS_SECRET_ACCESS_KEY"),
            session_token=_secret(self.s3_session_token) or _env("AWS_SESSION_TOKEN"),
            url_style=self.s3_url_style or ("path" if endpoint else "vhost"),
            use_ssl=use_ssl,
        )


@dataclass(frozen=True)
class S3Options:
    """Resolved S3 connection options (settings first, then the standard AWS_* variables)."""

    endpoint: str | None  # host:port, no scheme (DuckDB's ENDPOINT), None = AWS
    region: str
    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None
    url_style: str
    use_ssl: bool

    @property
    def endpoint_url(self) -> str | None:
        if self.endpoint is None:
            return None
        return ("https://" if self.use_ssl else "http://") + self.endpoint


def _env(*names: str) -> str | None:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return None


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
