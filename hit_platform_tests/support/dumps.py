"""Generated chart dumps in a warehouse's landing folder: a small one, and all 72 countries ending yesterday."""

from __future__ import annotations

from datetime import date, timedelta

from hit_platform.generator import GeneratorConfig, generate
from hit_platform.settings import Settings

HISTORY_DAYS, INCREMENTS = 24, 2


def generate_full(settings: Settings, seed: int = 11, songs: int = 4000, increments: int = INCREMENTS,
                  faults: dict | None = None) -> dict:
    """All 72 countries: one world of HISTORY_DAYS + INCREMENTS days ending yesterday, written up to
    its `increments`-th daily file (fewer increments end earlier, within the freshness gate's 3 days;
    a later call with more lands the next daily files of the same world)."""
    start = date.today() - timedelta(days=HISTORY_DAYS + INCREMENTS)
    return generate(GeneratorConfig(out_dir=settings.landing_dir, truth_dir=settings.generator_dir, seed=seed,
                                    songs=songs, history_days=HISTORY_DAYS, increments=increments,
                                    world_days=HISTORY_DAYS + max(increments, INCREMENTS),
                                    start_date=start, fmt="csv.gz", faults=faults or {}))


def small_dump(settings: Settings, *, faults: dict | None = None, seed: int = 7, fmt: str = "csv.gz",
               countries: int = 4, history_days: int = 3, increments: int = 2, songs: int = 600) -> dict:
    """A small generated dump in the settings' landing folder; returns the manifest."""
    from hit_platform.generator import GeneratorConfig, generate

    return generate(GeneratorConfig(
        out_dir=settings.landing_dir, truth_dir=settings.generator_dir, seed=seed, songs=songs,
        history_days=history_days, increments=increments, start_date=date(2024, 3, 1), fmt=fmt,
        countries=countries, faults=faults or {}))
