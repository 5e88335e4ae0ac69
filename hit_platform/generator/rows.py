"""A block of dump rows in file order, as integer columns plus cell overrides.

Rows of one file are ordered by day, then chart (global first, then the
countries in `COUNTRIES` order), then rank; duplicate rows injected as faults
follow at the end of their day. Everything that is the same for all rows of
a song (names, audio features, ...) is looked up from the catalogue by the
writers, so a block stays small. Faults that replace a single cell (a null,
an out-of-range number, a string of the wrong type, an unknown country) are
kept as `overrides` for the writers to apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hit_platform.domain.countries import CHART_SIZE
from hit_platform.generator.charts import ChartDays


@dataclass
class RowBlock:
    song: np.ndarray            # int32 catalogue index
    chart: np.ndarray           # int32 index into the dump's charts (0 = global)
    day: np.ndarray             # int32 window day
    daily_rank: np.ndarray      # int32
    daily_movement: np.ndarray  # int32
    weekly_movement: np.ndarray  # int32
    popularity: np.ndarray      # int32
    # column -> {row position -> value}; value None = null, str = raw text
    overrides: dict[str, dict[int, object]] = field(default_factory=dict)

    INT_COLUMNS = ("song", "chart", "day", "daily_rank", "daily_movement", "weekly_movement", "popularity")

    def __len__(self) -> int:
        return len(self.song)

    @classmethod
    def from_chart_days(cls, charts: ChartDays) -> "RowBlock":
        n_days, n_charts, size = charts.song.shape
        shape = (n_days, n_charts, size)
        return cls(
            song=charts.song.reshape(-1),
            chart=np.broadcast_to(np.arange(n_charts, dtype=np.int32)[None, :, None], shape).reshape(-1),
            day=np.broadcast_to(charts.day.astype(np.int32)[:, None, None], shape).reshape(-1),
            daily_rank=np.broadcast_to(np.arange(1, CHART_SIZE + 1, dtype=np.int32), shape).reshape(-1),
            daily_movement=charts.daily_movement.reshape(-1),
            weekly_movement=charts.weekly_movement.reshape(-1),
            popularity=charts.popularity.reshape(-1),
        )

    def take(self, positions: np.ndarray) -> "RowBlock":
        """The rows at sorted `positions`, with their overrides renumbered."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) > 1 and np.any(np.diff(positions) <= 0):
            raise ValueError("RowBlock.take needs strictly increasing positions")
        overrides = {}
        for col, cells in (self.overrides.items() if len(positions) else ()):
            old = np.fromiter(cells, dtype=np.int64, count=len(cells))
            new = np.searchsorted(positions, old)
            hit = (new < len(positions)) & (positions[np.minimum(new, len(positions) - 1)] == old)
            overrides[col] = {int(n): cells[int(o)] for o, n, h in zip(old, new, hit) if h}
        return RowBlock(*(getattr(self, c)[positions] for c in self.INT_COLUMNS),
                        overrides={c: v for c, v in overrides.items() if v})

    def overridden_rows(self) -> np.ndarray:
        """Sorted positions of rows with at least one overridden cell."""
        rows = sorted({p for cells in self.overrides.values() for p in cells})
        return np.asarray(rows, dtype=np.int64)
