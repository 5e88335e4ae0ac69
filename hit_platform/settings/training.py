"""What candidate training runs (`HIT_TRAIN_*`, and `HIT_ORACLE_PATH`)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainingSettings(BaseSettings):
    """What candidate training runs (`HIT_TRAIN_*`, and `HIT_ORACLE_PATH`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_TRAIN_", extra="ignore", populate_by_name=True)

    families: list[str] = Field(
        [], description='model families the candidates asset trains, e.g. ["linear", "trees"] (JSON in env); '
                        "empty = every family; the prior baseline is always trained")
    seed: int = Field(0, description="seed of candidate training (a change retrains, like a code change)")
    workers: int = Field(2, ge=1, description="processes fitting a family's grid points side by side "
                                              "(the models are the same for any value)")
    budget_s: float | None = Field(
        60.0, gt=0, description="seconds the model search may take (HIT_TRAIN_BUDGET_S; unset in env = 60): the "
                                "heavy families' grids are searched by successive halving, and points whose "
                                "projected seconds would pass the budget are not started (each family still gets "
                                "its best point fitted on all train songs; what was skipped is logged). A bigger "
                                "budget searches more; part of the candidates' code version")
    ray_address: str | None = Field(
        None, validation_alias=AliasChoices("HIT_TRAIN_RAY_ADDRESS", "RAY_ADDRESS", "ray_address"),
        description="a Ray cluster whose tasks fit the grid points (HIT_TRAIN_RAY_ADDRESS, else Ray's own "
                    "RAY_ADDRESS; the training runs on one of its nodes); unset = `workers` local processes")
    snapshot: int | None = Field(
        None, ge=0, description="train the candidates from this past lake snapshot (DuckLake time travel) instead "
                                "of the newest; unset = the newest. Part of the candidates' code version, like the "
                                "seed (`hit-platform rebuild --snapshot N` sets it for one build)")
    importance_songs: int = Field(
        64, ge=1, description="validation songs (a sample drawn by the seed) each candidate's global importance per "
                              "country is averaged over, logged with its MLflow run (explain/importance.json). The "
                              "cost is linear in it: at 64, ~0.4-0.6 s CPU for the mlp and blend candidates, ~6 s "
                              "for a blend with isotonic calibration (bench/bench_importance.py)")
    oracle_path: str | None = Field(
        None, validation_alias=AliasChoices("HIT_ORACLE_PATH", "oracle_path"),
        description="generator oracle for evaluation (default <warehouse>/generator/oracle.parquet; "
                    "absent on real data)")

