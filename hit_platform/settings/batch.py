"""The batch work of the `ml` group beside the predictions (`HIT_BATCH_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BatchSettings(BaseSettings):
    """How much batch work one run of an `ml` batch asset does (`HIT_BATCH_*`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_BATCH_", extra="ignore")

    explain_songs: int = Field(200, ge=0, description="most songs of the champion's latest batch that one run of "
                                                      "ml/batch_explanations explains (the next ones by spotify_id "
                                                      "not yet explained for that model version; 0: none). A "
                                                      "blend with platt explains ~100 songs/s on 2 cores, one "
                                                      "with isotonic calibration ~11")
