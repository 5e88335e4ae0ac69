"""MLflow tracking and the model registry (`HIT_MLFLOW_*`, and `HIT_MODEL_NAME`)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

