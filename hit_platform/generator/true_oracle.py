"""The oracle as a function: a song's true per-country hit probability from its 14 features.

    from hit_platform.generator import world_oracle
    oracle = world_oracle(config)          # or oracle_from_manifest(warehouse / "generator" / "manifest.json")
    Q = oracle(X)                          # X: (n, 14) in features.FEATURE_COLUMNS order -> (n, 72)
    oracle.ignored_features                # the features it never reads, e.g. ("key", "time_signature")

`oracle(X)` is what `oracle.parquet` holds for the songs of a dump: the probability of charting in each
country of the dump (COUNTRIES order, all 72 unless the config's `countries` cuts them), given that the
song charted somewhere (`oracle.conditional_probability`). It is a pure, vectorised function of the
features: the world's taste, and each chart's base solved once on the world's catalogue (so the charts
hold their share of hits), are fixed numbers. Songs are independent: a row's answer does not depend on the
other rows. Missing features (NaN) give NaN.

There are no hidden per-song effects, but one: under a taste shift (`GeneratorConfig.taste_shift`) the
songs released from its day on are judged by the shifted taste in its region's countries. That is the
`shifted` mask (a bool per song; `Truth.shifted` for a catalogue); without it every song is judged by the
world's own taste, which is the truth of all songs of a world without a shift.

The model never sees any of this: it learns from the charts dumped into the landing folder; only
evaluation and the benches ask the oracle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.generator.config import GeneratorConfig
from hit_platform.generator.oracle import conditional_probability
from hit_platform.generator.songs import catalogue_features
from hit_platform.generator.taste import TasteShift, probabilities, solve_base, target_positives
from hit_platform.generator.worlds import make_taste_of
from hit_platform.generator.worlds.common import check_matrix, feature_matrix


@dataclass(frozen=True)
class Oracle:
    """The truth of one generated world as a function of a song's features (see the module docstring)."""

    world: str
    taste: object                  # the world's taste: shape(X) -> (n, 73) logits - base
    base: np.ndarray               # (73,) per chart of ALL_CHARTS
    chart_ids: tuple[int, ...]     # the dump's charts as indices into ALL_CHARTS (0 = the global chart)
    countries: tuple[str, ...]     # the columns of oracle(X)
    shift: TasteShift | None = None
    shifted_taste: object = None   # with a shift of strength > 0: the region's changed taste ...
    shifted_base: np.ndarray | None = None  # ... and its charts' bases, (countries of the region,)

    @property
    def features(self) -> tuple[str, ...]:
        return FEATURE_COLUMNS

    @property
    def ignored_features(self) -> tuple[str, ...]:
        """The features no chart's taste reads: changing them never changes the oracle."""
        return tuple(self.taste.ignored_features)

    def __call__(self, X, shifted: np.ndarray | None = None) -> np.ndarray:
        """(n, len(countries)) true probabilities of charting in each country, given the song charts."""
        world = self.world_probabilities(X, shifted)
        return conditional_probability(world[:, list(self.chart_ids)])[:, 1:]

    def world_probabilities(self, X, shifted: np.ndarray | None = None) -> np.ndarray:
        """(n, 73) unconditional p_c of every chart of ALL_CHARTS: the labels are drawn from these."""
        X = check_matrix(X)
        world = probabilities(self.taste.shape(X), self.base)
        if shifted is not None and self.shifted_base is not None:
            shifted = np.asarray(shifted, dtype=bool)
            if shifted.shape != (len(X),):
                raise ValueError(f"shifted: expected one bool per song ({len(X)}), got shape {shifted.shape}")
            world[np.ix_(shifted, self.shift.chart_rows)] = self.shifted_probabilities(X)[shifted]
        return world

    def shifted_probabilities(self, X: np.ndarray) -> np.ndarray:
        """(n, countries of the shifted region) p_c by the shifted taste."""
        moved = self.shifted_taste.shape(X)[:, self.shift.chart_rows]
        return probabilities(moved, self.shifted_base)


def build_oracle(cfg: GeneratorConfig, X: np.ndarray) -> Oracle:
    """The oracle of cfg's world, its bases solved on X, the world's catalogue (n_songs, 14)."""
    taste = make_taste_of(cfg.world_name, cfg.seed)
    target = target_positives(taste.nominal_rate, cfg.songs, cfg.horizon)
    shape = taste.shape(X)
    chart_ids = (0, *(1 + COUNTRIES.index(c) for c in cfg.selected_countries))
    oracle = Oracle(cfg.world_name, taste, solve_base(shape, target), chart_ids, cfg.selected_countries)
    shift = cfg.taste_shift
    if shift is None or shift.strength <= 0:
        return replace(oracle, shift=shift)
    moved_taste = taste.shifted(shift)
    moved = moved_taste.shape(X)[:, shift.chart_rows]
    return replace(oracle, shift=shift, shifted_taste=moved_taste,
                   shifted_base=solve_base(moved, target[shift.chart_rows]))


def world_oracle(cfg: GeneratorConfig) -> Oracle:
    """The oracle of the world `cfg` describes (no file is written; the catalogue is drawn again)."""
    return build_oracle(cfg, feature_matrix(*catalogue_features(cfg.seed, cfg.songs)))


def oracle_from_manifest(manifest: Path | dict) -> Oracle:
    """The oracle of the world a generator manifest (`<truth_dir>/manifest.json`) was written for."""
    from hit_platform.generator.dump import manifest_world

    if not isinstance(manifest, dict):
        manifest = json.loads(Path(manifest).read_text())
    world = manifest_world(manifest)
    world["start_date"] = date.fromisoformat(world["start_date"])
    cfg = GeneratorConfig(out_dir=Path(manifest["config"]["out_dir"]), truth_dir=manifest["config"]["truth_dir"],
                          increments=manifest["window"]["increments"], **world)
    return world_oracle(cfg)
