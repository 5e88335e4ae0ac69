"""Where the lake lives (`HIT_LAKE_*`), what ingest may spend on one file (`HIT_INGEST_*`), each DuckDB
connection's limits (`HIT_DUCKDB_*`) and the object storage of its data files (`HIT_S3_*`, falling back
to the standard `AWS_*` variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class LakeSettings(BaseSettings):
    """Where the lake lives (`HIT_LAKE_*`); the defaults keep it under warehouse/lake/."""

    model_config = SettingsConfigDict(env_prefix="HIT_LAKE_", extra="ignore")

    catalog: str | None = Field(
        None, description="DuckLake catalog: a SQLite file path (default warehouse/lake/catalog.sqlite) or 'postgres:<dsn>'")
    data_path: str | None = Field(
        None, description="DuckLake data files: a folder (default warehouse/lake/data/) or s3://bucket/prefix")
    alias: str = Field("lake", description="name the lake is attached as in DuckDB sessions")
    retries: int = Field(12, description="attempts for a lake write that meets a lock or snapshot conflict")
    retry_base_s: float = Field(0.05, description="first back-off wait; doubles per attempt, with jitter")
    orphan_grace_s: float = Field(
        3600.0, ge=0, description="a data file no snapshot references (left by a writer killed mid-commit) is "
                                  "deleted by the next ingest once it is this old; a live writer's files are "
                                  "referenced within seconds")


class IngestSettings(BaseSettings):
    """What ingest may spend on one landing file (`HIT_INGEST_*`). A .csv.gz is inflated whole into the
    spill folder before DuckDB reads it; it may inflate to the smallest of these bounds, and to no more than
    half the disk space free there when it starts (the lake, DuckDB's spill and the serving journal share
    that disk). A file that inflates past it is rejected, its partial copy deleted."""

    model_config = SettingsConfigDict(env_prefix="HIT_INGEST_", extra="ignore")

    max_inflated_bytes: int | None = Field(
        None, ge=1, description="most bytes one .csv.gz may inflate to; unset: the ratio and the free disk bound it")
    max_inflation_ratio: float = Field(
        100.0, ge=1, description="a .csv.gz may inflate to at most this many times its own size (the generator's "
                                 "chart CSVs inflate 2.3x; gzip's own limit is about 1,000x)")


class DuckDBSettings(BaseSettings):
    """Each DuckDB connection's limits (`HIT_DUCKDB_*`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_DUCKDB_", extra="ignore")

    memory_limit: str | None = Field(
        "4GB", description="DuckDB memory_limit per connection; beyond it queries spill to warehouse/duckdb_tmp")
    threads: int | None = Field(None, description="DuckDB threads per connection")


class S3Settings(BaseSettings):
    """Object storage for the lake's data files (`HIT_S3_*`, used when the lake's data path is
    s3://bucket/prefix). Each one falls back to the standard AWS variable named in its description."""

    model_config = SettingsConfigDict(env_prefix="HIT_S3_", extra="ignore")

    endpoint: str | None = Field(
        None, description="S3-compatible endpoint, e.g. http://127.0.0.1:9000 (MinIO, moto); unset = AWS S3. "
                          "Fallback: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL")
    region: str | None = Field(
        None, description="S3 region. Fallback: AWS_REGION, AWS_DEFAULT_REGION, then us-east-1")
    access_key_id: str | None = Field(None, description="S3 access key id. Fallback: AWS_ACCESS_KEY_ID")
    secret_access_key: SecretStr | None = Field(
        None, description="S3 secret access key (kept in memory only, never written to disk). "
                          "Fallback: AWS_SECRET_ACCESS_KEY")
    session_token: SecretStr | None = Field(
        None, description="S3 session token for temporary credentials. Fallback: AWS_SESSION_TOKEN")
    url_style: str | None = Field(
        None, description="'path' (MinIO, moto, most S3-compatible servers) or 'vhost' (AWS); "
                          "default: path when an endpoint is set, else vhost")
    use_ssl: bool | None = Field(
        None, description="HTTPS to the endpoint; default: from the endpoint's scheme (http:// = false), else true")
    # The standard AWS variables, read here once like every other setting.
    aws: dict[str, str] = Field(default_factory=lambda: {k: v for k, v in os.environ.items()
                                                         if k.startswith("AWS_") and v},
                                exclude=True, description="the AWS_* variables of this process")

    def options(self) -> S3Options:
        """The S3 options the lake uses: these settings, else the standard `AWS_*` variables."""
        aws = self.aws
        raw_endpoint = self.endpoint or _first(aws, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        endpoint, scheme_ssl = None, None
        if raw_endpoint:
            parts = urlsplit(raw_endpoint if "://" in raw_endpoint else "//" + raw_endpoint)
            endpoint = parts.netloc or parts.path.rstrip("/")
            if parts.scheme:
                scheme_ssl = parts.scheme == "https"
        use_ssl = self.use_ssl if self.use_ssl is not None else (scheme_ssl if scheme_ssl is not None else True)
        return S3Options(
            endpoint=endpoint,
            region=self.region or _first(aws, "AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1",
            access_key_id=self.access_key_id or _first(aws, "AWS_ACCESS_KEY_ID"),
            secret_access_key=_secret(self.secret_access_key) or _first(aws, "AWS_SECRET_ACCESS_KEY"),
            session_token=_secret(self.session_token) or _first(aws, "AWS_SESSION_TOKEN"),
            url_style=self.url_style or ("path" if endpoint else "vhost"),
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


def _first(values: dict[str, str], *names: str) -> str | None:
    for name in names:
        if values.get(name):
            return values[name]
    return None


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None

