"""Which data files a dump consists of, their names and their days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from hit_platform.generator.config import GeneratorConfig

HISTORY_STEM = "charts_history"


@dataclass(frozen=True)
class DataFile:
    """One landing file of chart rows: window days [day_lo, day_hi)."""

    name: str
    kind: str  # "history" | "increment"
    day_lo: int
    day_hi: int

    @property
    def days(self) -> int:
        return self.day_hi - self.day_lo


def day_date(config: GeneratorConfig, day: int) -> date:
    """The calendar date of window day `day`."""
    return config.start_date + timedelta(days=int(day))


def data_files(config: GeneratorConfig) -> list[DataFile]:
    """The world's files in the order they land: the history, then one file per day after it
    (the first `config.increments` of them are written)."""
    ext = config.extension
    files = [DataFile(f"{HISTORY_STEM}.{ext}", "history", 0, config.history_days)]
    for i in range(config.horizon - config.history_days):
        day = config.history_days + i
        files.append(DataFile(f"charts_{day_date(config, day).isoformat()}.{ext}", "increment", day, day + 1))
    return files
