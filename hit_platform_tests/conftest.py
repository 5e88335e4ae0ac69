"""Shared fixtures: a temp warehouse with a real DuckLake, and small generated dumps."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from hit_platform.adapters.lake.connection import Lake
from hit_platform.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(warehouse=tmp_path / "warehouse")


@pytest.fixture
def lake(settings: Settings) -> Lake:
    return Lake(settings)


def small_dump(settings: Settings, *, faults: dict | None = None, seed: int = 7, fmt: str = "csv.gz",
               countries: int = 4, history_days: int = 3, increments: int = 2, songs: int = 600) -> dict:
    """A small generated dump in the settings' landing folder; returns the manifest."""
    from hit_platform.generator import GeneratorConfig, generate

    return generate(GeneratorConfig(
        out_dir=settings.landing_dir, truth_dir=settings.generator_dir, seed=seed, songs=songs,
        history_days=history_days, increments=increments, start_date=date(2024, 3, 1), fmt=fmt,
        countries=countries, faults=faults or {}))
