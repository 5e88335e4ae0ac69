"""One Settings object, in sections: lake, duckdb, s3, mlflow, training, gates, monitors, serving,
sensors. It is the only place that reads the environment, once per process (`get_settings`);
resources, sensors and the serving process are built from it.

Every setting can be overridden by an environment variable: `HIT_WAREHOUSE`, then the section's
prefix and the field (`HIT_LAKE_CATALOG=postgres:dbname=lake host=...`, `HIT_GATE_MAX_PSI=0.3`,
`HIT_SERVE_PORT=8080`). The S3 settings (`HIT_S3_*`) fall back to the standard `AWS_*` variables.
The defaults (profile `embedded`) keep everything under `warehouse/` in the repository root.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hit_platform.domain.schema import AUDIO_FEATURES

REPO_ROOT = Path(__file__).resolve().parent.parent


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


class MlflowSettings(BaseSettings):
    """MLflow tracking and the model registry (`HIT_MLFLOW_*`, and `HIT_MODEL_NAME`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_MLFLOW_", extra="ignore", populate_by_name=True)

    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI (default sqlite:///<warehouse>/mlflow/mlflow.db)")
    artifact_location: str | None = Field(
        None, description="where a new experiment keeps its artifacts, e.g. s3://bucket/mlflow (default "
                          "<warehouse>/mlflow/artifacts, or the tracking server's own default)")
    experiment: str = Field("hit_platform", description="MLflow experiment of the candidate runs")
    model_name: str = Field("hit_model", validation_alias=AliasChoices("HIT_MODEL_NAME", "model_name"),
                            description="registered model name in the MLflow registry")


class TrainingSettings(BaseSettings):
    """What candidate training runs (`HIT_TRAIN_*`, and `HIT_ORACLE_PATH`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_TRAIN_", extra="ignore", populate_by_name=True)

    families: list[str] = Field(
        [], description='model families the candidates asset trains, e.g. ["linear", "trees"] (JSON in env); '
                        "empty = every family; the prior baseline is always trained")
    seed: int = Field(0, description="seed of candidate training (a change retrains, like a code change)")
    workers: int = Field(2, ge=1, description="processes fitting a family's grid points side by side "
                                              "(the models are the same for any value)")
    snapshot: int | None = Field(
        None, ge=0, description="train the candidates from this past lake snapshot (DuckLake time travel) instead "
                                "of the newest; unset = the newest. Part of the candidates' code version, like the "
                                "seed (`hit-platform rebuild --snapshot N` sets it for one build)")
    oracle_path: str | None = Field(
        None, validation_alias=AliasChoices("HIT_ORACLE_PATH", "oracle_path"),
        description="generator oracle for evaluation (default <warehouse>/generator/oracle.parquet; "
                    "absent on real data)")


class GateThresholds(BaseSettings):
    """Thresholds of the quality gates and of promotion (`HIT_GATE_*`, dicts as JSON)."""

    model_config = SettingsConfigDict(env_prefix="HIT_GATE_", extra="ignore")

    # raw chart rows
    max_missing_rate: dict[str, float] = Field(
        default_factory=lambda: {"name": 0.01, "artists": 0.01, "album_name": 0.01,
                                 "album_release_date": 0.01, "popularity": 0.01,
                                 "daily_movement": 0.01, "weekly_movement": 0.01,
                                 **{f: 0.05 for f in AUDIO_FEATURES}},
        description="largest share of null values per column (required columns: 0)")
    max_incomplete_chart_day_rate: float = Field(
        0.02, description="largest share of (snapshot_date, country) charts without exactly ranks 1..50")
    freshness_max_age_days: int = Field(
        3, description="newest snapshot_date must be at most this many days before today")
    max_missing_audio_song_rate: float = Field(
        0.10, description="largest share of songs without audio features (new tracks since late 2024)")
    # labels
    min_positive_rate: float = Field(0.005, description="smallest positive rate of any country")
    max_positive_rate: float = Field(0.60, description="largest positive rate of any country")
    max_bias_disparity: float = Field(
        0.35, description="largest |positive rate explicit - positive rate clean| in any country")
    min_bias_group: int = Field(30, description="smallest group (explicit or clean songs) to judge")
    # splits
    split_tolerance: float = Field(0.03, description="largest deviation of a split's share from its target")
    min_split_positives: int = Field(3, description="fewest positives of any country in any split")
    # drift against the previous data version
    max_psi: float = Field(0.2, description="largest population stability index of any feature")
    # promotion of a candidate model (test split)
    min_auc_gain_over_baseline: float = Field(
        0.05, description="candidate mean ROC AUC must beat the per-country prior baseline by this much")
    max_auc_drop_vs_champion: float = Field(
        0.005, description="candidate mean ROC AUC may be at most this much below the champion's")
    max_country_auc_drop_vs_champion: float = Field(
        0.05, description="in no country may the candidate's ROC AUC be more than this below the champion's")
    max_log_loss_increase_vs_champion: float = Field(
        0.01, description="candidate mean log loss may be at most this much above the champion's")
    max_calibration_error: float = Field(
        0.01, description="candidate mean excess calibration error on the test split: its ECE (10 equal-mass "
                          "bins per country) minus the ECE sampling alone gives a calibrated model on those songs")


class MonitorThresholds(BaseSettings):
    """Thresholds and window of the monitors (`HIT_MONITOR_*`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_MONITOR_", extra="ignore")

    window_hours: float = Field(24.0, gt=0, description="served requests of this many past hours are watched")
    min_rows: int = Field(200, ge=1, description="fewest served songs (or labelled songs) before judging")
    max_served_psi: float = Field(0.25, description="largest PSI of a served feature vs the training split")
    max_prediction_psi: float = Field(0.25, description="largest PSI of a country's served probabilities "
                                                        "vs the model's validation predictions")
    max_auc_drop: float = Field(0.05, description="largest drop of mean ROC AUC on revealed labels below "
                                                  "the test AUC the model was promoted with")
    max_estimated_auc_drop: float = Field(0.05, description="largest drop of a country's label-free estimated "
                                                            "ROC AUC (the top of its interval) below its test AUC "
                                                            "before the country counts as degraded")
    max_degraded_countries: int = Field(5, ge=0, description="most countries degraded (above) before the "
                                                             "performance estimate raises an alert")
    min_expected_positives: float = Field(10.0, ge=0, description="a country is judged by the performance "
                                                                  "estimate only when the songs' probabilities "
                                                                  "add up to at least this many hits")
    max_error_rate: float = Field(0.01, description="largest share of requests answered 5xx")
    max_p99_ms: float = Field(250.0, description="largest p99 latency inside the replica, ms")
    max_memory_mb: float = Field(6_000.0, description="largest resident memory of the serving process tree")


class ServeConfig(BaseSettings):
    """How the serving process runs: address, limits, replicas, inference-log cadence (`HIT_SERVE_*`).
    The defaults keep everything on 127.0.0.1:8000 with two replicas."""

    model_config = SettingsConfigDict(env_prefix="HIT_SERVE_", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", description="address the HTTP endpoint listens on (loopback by default)")
    port: int = Field(8000, ge=1, le=65535, description="port of the HTTP endpoint")
    max_batch: int = Field(10_000, ge=1, description="most songs one /predict/batch request may carry (else 413)")
    replicas: int = Field(2, ge=1, description="Ray Serve replicas of the model deployment (two on two cores: "
                                               "one Python process alone answers ~0.7x the requests/s of plain "
                                               "uvicorn)")
    replica_cpus: float = Field(0.5, gt=0, description="Ray CPUs reserved per replica (leave room for a surge "
                                                       "replica during a code change)")
    ray_cpus: int = Field(2, ge=1, description="CPUs of the embedded Ray instance (ignored with RAY_ADDRESS)")
    max_ongoing_requests: int = Field(64, ge=1, description="concurrent requests per replica before queueing")
    batch_max_size: int = Field(64, ge=1, description="/predict: most concurrent songs a replica scores in one model "
                                                     "call (1 = one call per request)")
    batch_wait_ms: float = Field(0.0, ge=0, description="/predict: how long a batch waits for more requests (0: only "
                                                        "those that arrived together; a lone request never waits)")
    fast_proxy: bool = Field(True, description="serve through Ray Serve's HAProxy ingress and throughput-optimized "
                                               "mode (about 3.5x the requests/s of the default Python proxy)")
    log_flush_seconds: float = Field(1.0, gt=0, description="inference log: each replica seals (fsyncs) its journal "
                                                            "segment at least this often; a power cut loses at most "
                                                            "this much of the log")
    log_batch_rows: int = Field(5_000, ge=1, description="inference log: a replica seals its segment early once it "
                                                        "holds this many rows")
    log_buffer_rows: int = Field(50_000, ge=1, description="inference log: rows a replica keeps in memory while its "
                                                          "journal cannot be written; past them it answers 503")
    log_commit_seconds: float = Field(5.0, gt=0, description="inference log: journal files are committed to the lake "
                                                             "this often (one transaction for all replicas)")
    log_committer: Literal["auto", "process", "replica"] = Field(
        "auto", description="who commits the journal to the lake: the serving process (one writer; needs the "
                            "replicas on this machine), each replica (Ray cluster), or auto: the serving process "
                            "unless RAY_ADDRESS is set")
    journal_dir: Path | None = Field(None, description="inference log journal: rows served and not yet in the lake "
                                                       "(default <warehouse>/serving/journal)")
    ray_address: str | None = Field(
        None, validation_alias=AliasChoices("RAY_ADDRESS", "ray_address"),
        description="a Ray cluster to join (Ray's own RAY_ADDRESS); unset = an embedded Ray on this machine")
    start_timeout_s: float = Field(180.0, gt=0, description="how long `start` waits for /healthz")

    def state_dir(self, settings: "Settings") -> Path:
        """Where the serving process keeps its pid file, log and helpers."""
        return settings.warehouse / "serving"

    def journal(self, settings: "Settings") -> Path:
        return self.journal_dir or self.state_dir(settings) / "journal"

    def replicas_commit(self) -> bool:
        """Whether each replica commits its journal itself (Ray cluster) instead of the serving process."""
        if self.log_committer == "auto":
            return bool(self.ray_address)
        return self.log_committer == "replica"

    @property
    def endpoint(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def max_body_bytes(self) -> int:
        """A generous ceiling on a request body, checked before reading it (a song is ~400 bytes of JSON)."""
        return self.max_batch * 4096 + 65_536


class PromotionSettings(BaseSettings):
    """What a candidate that passes every gate becomes (`HIT_PROMOTION_*`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_PROMOTION_", extra="ignore")

    mode: Literal["immediate", "shadow"] = Field(
        "immediate", description="immediate: it becomes the champion at once; shadow: it becomes the registry "
                                 "alias `challenger`, scored on live traffic beside the champion, and is promoted "
                                 "by ml/shadow_promotion once ml/shadow_evaluation:shadow_gate passes")


class ShadowSettings(BaseSettings):
    """How a challenger is judged on live traffic (`HIT_SHADOW_*`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_SHADOW_", extra="ignore")

    min_requests: int = Field(500, ge=1, description="shadowed songs (answered by the champion, scored by the "
                                                     "challenger) before shadow_gate judges")
    max_mean_abs_diff: float = Field(0.10, ge=0, description="largest mean |challenger - champion| probability of "
                                                             "any country on the shadowed songs")
    min_top5_overlap: float = Field(0.5, ge=0, le=1, description="smallest mean share of the champion's top-5 "
                                                                 "countries the challenger also ranks top-5")
    max_prediction_psi: float = Field(0.25, ge=0, description="largest PSI of a country's challenger probabilities "
                                                              "against the champion's on the same songs")
    min_labelled_songs: int = Field(200, ge=1, description="shadowed songs with revealed labels before the two "
                                                           "models' ROC AUC on them is judged")
    max_auc_drop: float = Field(0.01, ge=0, description="largest drop of the challenger's mean ROC AUC below the "
                                                        "champion's on the same labelled shadowed songs")


class SensorSettings(BaseSettings):
    """How often the daemon looks (`HIT_*_INTERVAL_S`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_", extra="ignore")

    landing_sensor_interval_s: int = Field(15, ge=1, description="how often the landing sensor looks for new files")
    automation_interval_s: int = Field(30, ge=1, description="how often the daemon evaluates automation conditions")
    drift_sensor_interval_s: int = Field(30, ge=1, description="how often the drift sensor reads new drift alerts")
    shadow_sensor_interval_s: int = Field(60, ge=1, description="how often the shadow sensor counts the "
                                                                "challenger's shadowed songs")


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

    @field_validator("lake", "duckdb", "s3", "mlflow", "training", "gates", "monitors", "serving", "sensors",
                     "promotion", "shadow",
                     mode="before")
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
        s3, aws = self.s3, self.s3.aws
        raw_endpoint = s3.endpoint or _first(aws, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        endpoint, scheme_ssl = None, None
        if raw_endpoint:
            parts = urlsplit(raw_endpoint if "://" in raw_endpoint else "//" + raw_endpoint)
            endpoint = parts.netloc or parts.path.rstrip("/")
            if parts.scheme:
                scheme_ssl = parts.scheme == "https"
        use_ssl = s3.use_ssl if s3.use_ssl is not None else (scheme_ssl if scheme_ssl is not None else True)
        return S3Options(
            endpoint=endpoint,
            region=s3.region or _first(aws, "AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1",
            access_key_id=s3.access_key_id or _first(aws, "AWS_ACCESS_KEY_ID"),
            secret_access_key=_secret(s3.secret_access_key) or _first(aws, "AWS_SECRET_ACCESS_KEY"),
            session_token=_secret(s3.session_token) or _first(aws, "AWS_SESSION_TOKEN"),
            url_style=s3.url_style or ("path" if endpoint else "vhost"),
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


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
