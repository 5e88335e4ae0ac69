"""S3 settings resolve from HIT_S3_* or the standard AWS_* variables; no secret lands in files."""

from __future__ import annotations

import pytest

from hit_platform.adapters.lake.connection import Lake, dsn_without_password, loadable_extension_path
from hit_platform.settings import Settings

S3_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
          "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in S3_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in ("ENDPOINT", "REGION", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN", "URL_STYLE",
                 "USE_SSL"):
        monkeypatch.delenv(f"HIT_S3_{name}", raising=False)


def test_hit_variables_win_over_aws_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "aws-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio.local:9000")
    o = Settings(warehouse=tmp_path).s3_options()
    assert (o.access_key_id, o.secret_access_key, o.region) == ("aws-key", "aws-secret", "eu-west-1")
    assert (o.endpoint, o.use_ssl, o.url_style) == ("minio.local:9000", False, "path")
    monkeypatch.setenv("HIT_S3_ACCESS_KEY_ID", "hit-key")
    monkeypatch.setenv("HIT_S3_SECRET_ACCESS_KEY", "hit-secret")
    monkeypatch.setenv("HIT_S3_ENDPOINT", "https://s3.example.org")
    monkeypatch.setenv("HIT_S3_URL_STYLE", "vhost")
    o = Settings(warehouse=tmp_path).s3_options()
    assert (o.access_key_id, o.secret_access_key) == ("hit-key", "hit-secret")
    assert (o.endpoint, o.use_ssl, o.url_style, o.endpoint_url) == (
        "s3.example.org", True, "vhost", "https://s3.example.org")


def test_aws_defaults_without_an_endpoint(tmp_path):
    o = Settings(warehouse=tmp_path).s3_options()
    assert (o.endpoint, o.region, o.url_style, o.use_ssl) == (None, "us-east-1", "vhost", True)


def test_secret_only_for_s3_data_and_never_in_repr_or_init_file(tmp_path):
    assert Lake(Settings(warehouse=tmp_path)).secret_sql() is None
    s = Settings(warehouse=tmp_path, s3={"endpoint": "http://127.0.0.1:9000", "access_key_id": "key",
                                      "secret_access_key": "very-secret"},
                 lake={"data_path": "s3://bucket/lake", "catalog": "postgres:dbname=lake host=db user=hit password=pg-secret"})
    assert "very-secret" not in repr(s)
    lake = Lake(s)
    sql = lake.secret_sql()
    assert "SECRET 'very-secret'" in sql and "ENDPOINT '127.0.0.1:9000'" in sql and "USE_SSL false" in sql
    assert "URL_STYLE 'path'" in sql and "SCOPE 's3://bucket/'" in sql and "TEMPORARY" in sql
    assert not any("very-secret" in stmt for stmt in lake.attach_sql())
    text = lake.write_init_file(tmp_path / "open.sql").read_text()
    assert "very-secret" not in text and "pg-secret" not in text and "password=" not in text
    assert "getenv('AWS_SECRET_ACCESS_KEY')" in text and "dbname=lake host=db user=hit" in text


def test_dsn_without_password():
    assert dsn_without_password("dbname=lake password=x host=h") == "dbname=lake host=h"
    assert dsn_without_password("host=h password='a b' user=u") == "host=h user=u"
    assert dsn_without_password("postgresql://hit:pw@db:5432/lake") == "postgresql://hit@db:5432/lake"


def test_postgres_extension_loads_from_its_package():
    import duckdb

    path = loadable_extension_path("postgres")
    assert path is not None and path.name == "postgres_scanner.duckdb_extension"
    con = duckdb.connect()
    con.execute(f"LOAD '{path}'")
    assert con.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'postgres_scanner'"
                       ).fetchall() == [(True,)]


def test_the_serving_process_and_its_replicas_get_the_real_secret(tmp_path):
    from hit_platform.serving.process import child_env

    s = Settings(warehouse=tmp_path, s3={"secret_access_key": "s3cr3t", "session_token": "t0k3n"})
    assert "s3cr3t" not in repr(s) and s.model_dump(mode="json")["s3"]["secret_access_key"] == "**********"
    assert s.dump_for_child()["s3"]["secret_access_key"] == "s3cr3t"
    env = child_env(s, s.serving)
    assert env["HIT_S3_SECRET_ACCESS_KEY"] == "s3cr3t" and env["HIT_S3_SESSION_TOKEN"] == "t0k3n"
    assert Settings(**s.dump_for_child()).s3.secret_access_key.get_secret_value() == "s3cr3t"
