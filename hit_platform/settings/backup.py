"""Where `hit-platform backup` writes its backups (`HIT_BACKUP_*`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BackupSettings(BaseSettings):
    """Where `hit-platform backup` writes its backups (`HIT_BACKUP_*`)."""

    model_config = SettingsConfigDict(env_prefix="HIT_BACKUP_", extra="ignore")

    dir: Path | None = Field(None, description="folder of the backups, one subfolder each (default: `backups/` "
                                               "beside the warehouse, never inside it: a backup must outlive it)")
    attempts: int = Field(3, ge=1, description="times a backup starts again when a data file its catalog copy "
                                              "names was deleted under it (the maintenance job's cleanup)")
