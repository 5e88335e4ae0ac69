"""Fixtures for the scale path: one PostgreSQL server and one S3 (moto) server per test session.

Each test gets its own catalog database and its own prefix in the bucket, so tests
never see each other's lakes. Without the PostgreSQL binaries (`apt-get install -y
postgresql`) or moto (`pip install "moto[server]"`) the tests skip and say why.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.settings import Settings
from hit_platform_tests.support.servers import (S3Credentials, create_database, list_objects, postgres_missing_reason,
                                        postgres_server, s3_missing_reason, s3_server)


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory) -> Iterator[str]:
    reason = postgres_missing_reason()
    if reason:
        pytest.skip(reason)
    with postgres_server(tmp_path_factory.mktemp("pg")) as dsn:
        yield dsn


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    credentials: S3Credentials

    def keys(self, prefix: str = "") -> list[str]:
        return list_objects(self.endpoint, self.credentials, self.bucket, prefix)


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> Iterator[S3Server]:
    reason = s3_missing_reason()
    if reason:
        pytest.skip(reason)
    with s3_server(tmp_path_factory.mktemp("s3")) as (endpoint, bucket, credentials):
        yield S3Server(endpoint, bucket, credentials)


@dataclass(frozen=True)
class ScaleLake:
    """A lake with its catalog in PostgreSQL and its data in the S3 bucket."""

    settings: Settings
    lake: Lake
    catalog_dsn: str
    prefix: str  # the lake's key prefix in the bucket
    s3: S3Server

    @property
    def env(self) -> dict[str, str]:
        """`HIT_*` variables that open this lake from another process."""
        return {"HIT_WAREHOUSE": str(self.settings.warehouse), "HIT_LAKE_CATALOG": self.settings.lake.catalog,
                "HIT_LAKE_DATA_PATH": self.settings.lake.data_path, **self.s3.credentials.env(self.s3.endpoint)}

    def data_keys(self) -> list[str]:
        return self.s3.keys(self.prefix + "/")


@pytest.fixture
def pg_s3_lake(tmp_path: Path, pg_dsn: str, s3: S3Server) -> ScaleLake:
    name = "lake_" + uuid.uuid4().hex[:10]
    dsn = create_database(pg_dsn, name)
    prefix = f"{name}/lake"
    settings = Settings(warehouse=tmp_path / "warehouse",
                        lake={"catalog": f"postgres:{dsn}", "data_path": f"s3://{s3.bucket}/{prefix}"},
                        s3=s3.credentials.settings_section(s3.endpoint))
    return ScaleLake(settings, Lake(settings), dsn, prefix, s3)
