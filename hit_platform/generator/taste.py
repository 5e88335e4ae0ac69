"""The hidden truth: each chart's taste over audio features, and the sampled labels.

For chart c (72 countries + the global chart):

    logit p_c(x) = base_c + strength * (linear_c . z(x) + nonlinear_c(x))

* `linear_c` = the region's vector + a little country noise, so countries of
  one `countries.REGIONS` region share most of their taste;
* `nonlinear_c` are the effects a tree model exploits better than a linear one:
  a Gaussian bump over tempo around the region's preferred tempo, a
  danceability x energy interaction above thresholds, a speechiness threshold
  (hip-hop), explicit x valence, and a U-shape in acousticness;
* `base_c` is solved so the expected number of positives hits a target that is
  a plausible 3%..30% of the catalogue, clipped to what a 50-song chart can
  hold over the window (every positive charts at least one day, every chart
  day has exactly 50 songs).

Labels are sampled independently per (song, chart): y_c ~ Bernoulli(p_c).

A `TasteShift` (a concept shift, for drills) changes one region's taste for the
songs released from a given day on: `shifted_taste` moves the region's common
taste (every parameter above, each country keeping its own deviation) toward
another region's, or reverses it. The songs, and so the features a model sees,
do not change: only which of them chart there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from datetime import date
from typing import ClassVar

import numpy as np

from hit_platform.domain.countries import CHART_SIZE, COUNTRIES, GLOBAL_CHART, REGION_OF, REGIONS
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.generator.randomness import stream

# Every chart of the world, in a fixed order: index 0 is the global chart. The
# truth is built for all of them whatever subset a dump writes, so the world
# does not change with `countries`.
ALL_CHARTS: tuple[str, ...] = (GLOBAL_CHART, *COUNTRIES)

LINEAR_FEATURES = ("danceability", "energy", "loudness", "speechiness", "acousticness",
                   "instrumentalness", "liveness", "valence", "tempo", "duration", "explicit", "mode")
# Fixed (population) centring and scaling, so the taste does not depend on the catalogue size.
_CENTER = np.array([0.62, 0.62, -7.0, np.log(0.07), 0.25, 0.05, 0.17, 0.5, 121.0, np.log(198_000), 0.29, 0.57])
_SCALE = np.array([0.13, 0.16, 2.3, 0.75, 0.30, 0.15, 0.10, 0.20, 27.0, 0.2, 0.45, 0.5])

# Regional preferred tempo (BPM): reggaeton/dembow around 95, EDM/techno around 128 ...
REGION_TEMPO = {"latam": 96.0, "anglo": 122.0, "west_europe": 126.0, "south_europe": 104.0,
                "east_europe": 130.0, "asia": 114.0, "mena": 100.0}
# Regions where hip-hop / urbano (high speechiness) charts well get a positive prior.
REGION_SPEECH_PRIOR = {"latam": 1.2, "anglo": 1.3, "west_europe": 0.5, "south_europe": 0.3,
                       "east_europe": 0.2, "asia": -0.8, "mena": -0.4}

STRENGTH = 1.0          # overall scale of the taste; tuned for an oracle ROC AUC around 0.85
TEMPO_WIDTH = 11.0      # BPM: sd of the tempo bump
DANCE_THRESHOLD, ENERGY_THRESHOLD, SPEECH_THRESHOLD = 0.68, 0.62, 0.18
MIN_RATE, MAX_RATE = 0.03, 0.30
GLOBAL_RATE = 0.10
MAX_LABEL_DRAWS = 20_000  # rejection draws when the chart capacity is tight (tiny windows)
MIN_FEASIBLE_CHANCE = 0.01  # below this, redrawing would distort the truth: refuse the configuration


@dataclass
class Taste:
    """Per-chart taste parameters; row i of each array belongs to ALL_CHARTS[i]."""

    linear: np.ndarray          # (73, 12)
    tempo_center: np.ndarray    # (73,)
    tempo_amp: np.ndarray
    dance_energy_amp: np.ndarray
    speech_amp: np.ndarray
    explicit_valence_amp: np.ndarray
    acoustic_u_amp: np.ndarray
    nominal_rate: np.ndarray    # (73,) target share of positives before capacity clipping

    # key and time_signature play no part in this world's taste
    ignored_features: ClassVar[tuple[str, ...]] = ("key", "time_signature")

    def shape(self, X: np.ndarray) -> np.ndarray:
        """logit p - base for every (song, chart): float64 array (n_songs, 73); X is (n_songs, 14), the
        features in `features.FEATURE_COLUMNS` order."""
        f = {name: X[:, i] for i, name in enumerate(FEATURE_COLUMNS)}
        raw = np.column_stack([
            f["danceability"], f["energy"], f["loudness"], np.log(f["speechiness"]),
            f["acousticness"], f["instrumentalness"], f["liveness"], f["valence"], f["tempo"],
            np.log(f["duration_ms"]), f["is_explicit"], f["mode"],
        ])
        z = (raw - _CENTER) / _SCALE
        out = z @ self.linear.T
        tempo = f["tempo"][:, None]
        out += self.tempo_amp * np.exp(-0.5 * ((tempo - self.tempo_center) / TEMPO_WIDTH) ** 2)
        dance_energy = ((f["danceability"] > DANCE_THRESHOLD) & (f["energy"] > ENERGY_THRESHOLD)).astype(float)
        out += self.dance_energy_amp * dance_energy[:, None]
        out += self.speech_amp * (f["speechiness"] > SPEECH_THRESHOLD).astype(float)[:, None]
        out += self.explicit_valence_amp * (f["is_explicit"] * 2.0 * (f["valence"] - 0.5))[:, None]
        out += self.acoustic_u_amp * (4.0 * (f["acousticness"] - 0.5) ** 2)[:, None]
        return STRENGTH * out

    def shifted(self, shift: TasteShift) -> Taste:
        return shifted_taste(self, shift)


@dataclass(frozen=True)
class TasteShift:
    """One region's taste changes for the songs released on or after a day (a concept shift).

    region    a key of countries.REGIONS: its countries judge the new songs by the changed taste
    day       the first release day it applies to, in days from the world's start_date (a date is
              turned into that offset by GeneratorConfig); songs released earlier keep their truth
    strength  0..1: how far the region's common taste moves, from its own (0) to the target (1)
    toward    the region whose taste is the target; None = the region's own taste reversed (what
              charted there stops charting and the other way round)

    The region's charts keep their share of hits (the base is solved again), the other charts and
    the global chart are untouched, and so are the songs' features: a model's predictions do not
    move, only the labels they are judged by. A shifted world also keeps releasing songs from the
    day on, a steady number a day, held off every chart until their release (`dump.shift_truth`):
    strength 0 gives that calendar alone, the control of a drill.
    """

    region: str
    day: int | date
    strength: float = 1.0
    toward: str | None = None

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise ValueError(f"TasteShift.region={self.region!r}: expected one of {list(REGIONS)}")
        if self.toward is not None and self.toward not in REGIONS:
            raise ValueError(f"TasteShift.toward={self.toward!r}: expected None or one of {list(REGIONS)}")
        if self.toward == self.region:
            raise ValueError(f"TasteShift.toward={self.toward!r}: the same region; use None to reverse its taste")
        if not 0.0 <= float(self.strength) <= 1.0:
            raise ValueError(f"TasteShift.strength={self.strength}: expected a number in [0, 1]")
        if isinstance(self.day, bool) or not isinstance(self.day, (int, np.integer, date)):
            raise ValueError(f"TasteShift.day={self.day!r}: expected days from the start date (int) or a date")
        object.__setattr__(self, "strength", float(self.strength))
        if not isinstance(self.day, date):
            object.__setattr__(self, "day", int(self.day))

    @classmethod
    def parse(cls, text: str) -> TasteShift:
        """`REGION:DAY:STRENGTH[:TOWARD]`, DAY as days from the start date or an ISO date
        (e.g. `latam:100:0.8` or `latam:2026-04-11:1:anglo`)."""
        parts = text.split(":")
        if len(parts) not in (3, 4):
            raise ValueError(f"taste shift {text!r}: expected REGION:DAY:STRENGTH[:TOWARD]")
        day = date.fromisoformat(parts[1]) if "-" in parts[1] else int(parts[1])
        return cls(parts[0], day, float(parts[2]), parts[3] if len(parts) == 4 else None)

    @classmethod
    def of(cls, value) -> TasteShift | None:
        """A TasteShift from itself, its `as_json()` dict, its `parse` text or None."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, dict):
            day = value["day"]
            return cls(value["region"], date.fromisoformat(day) if isinstance(day, str) else day,
                       value.get("strength", 1.0), value.get("toward"))
        raise ValueError(f"taste_shift={value!r}: expected a TasteShift, a dict, 'REGION:DAY:STRENGTH' or None")

    def as_json(self) -> dict:
        day = self.day.isoformat() if isinstance(self.day, date) else self.day
        return {"region": self.region, "day": day, "strength": self.strength, "toward": self.toward}

    @property
    def chart_rows(self) -> np.ndarray:
        """The region's countries as rows of a Taste (indices into ALL_CHARTS)."""
        return region_rows(self.region)


def region_rows(region: str) -> np.ndarray:
    """A region's countries as indices into ALL_CHARTS (= rows of a Taste)."""
    return np.array([ALL_CHARTS.index(c) for c in REGIONS[region]])


def make_taste(seed: int) -> Taste:
    """Draw the regions' tastes, then each country's as region + small noise."""
    rng = stream(seed, "taste")
    n_feat = len(LINEAR_FEATURES)
    region_params = {}
    for region in REGIONS:  # dict order is fixed, so the draws are too
        region_params[region] = dict(
            linear=rng.normal(0.0, 0.33, n_feat),
            tempo_center=REGION_TEMPO[region] + rng.normal(0, 3.0),
            tempo_amp=rng.uniform(1.1, 2.0),
            dance_energy_amp=rng.normal(1.1, 0.5),
            speech_amp=REGION_SPEECH_PRIOR[region] + rng.normal(0, 0.3),
            explicit_valence_amp=rng.normal(0.0, 1.1),
            acoustic_u_amp=rng.uniform(0.6, 1.3),
            log_rate=rng.uniform(np.log(MIN_RATE * 1.3), np.log(MAX_RATE / 1.3)),
        )
    rows = []
    for code in COUNTRIES:
        r = region_params[REGION_OF[code]]
        rows.append(dict(
            linear=r["linear"] + rng.normal(0.0, 0.15, n_feat),
            tempo_center=r["tempo_center"] + rng.normal(0, 3.0),
            tempo_amp=r["tempo_amp"] * (1 + rng.normal(0, 0.15)),
            dance_energy_amp=r["dance_energy_amp"] + rng.normal(0, 0.15),
            speech_amp=r["speech_amp"] + rng.normal(0, 0.15),
            explicit_valence_amp=r["explicit_valence_amp"] + rng.normal(0, 0.15),
            acoustic_u_amp=r["acoustic_u_amp"] * (1 + rng.normal(0, 0.15)),
            rate=float(np.clip(np.exp(r["log_rate"] + rng.normal(0, 0.25)), MIN_RATE, MAX_RATE)),
        ))
    # The global chart listens like the average of the world.
    keys = [k for k in rows[0] if k != "rate"]
    global_row = {k: np.mean([row[k] for row in rows], axis=0) for k in keys}
    global_row["rate"] = GLOBAL_RATE
    table = [global_row, *rows]
    return Taste(
        linear=np.array([t["linear"] for t in table]),
        tempo_center=np.array([t["tempo_center"] for t in table]),
        tempo_amp=np.array([t["tempo_amp"] for t in table]),
        dance_energy_amp=np.array([t["dance_energy_amp"] for t in table]),
        speech_amp=np.array([t["speech_amp"] for t in table]),
        explicit_valence_amp=np.array([t["explicit_valence_amp"] for t in table]),
        acoustic_u_amp=np.array([t["acoustic_u_amp"] for t in table]),
        nominal_rate=np.array([t["rate"] for t in table]),
    )


def shifted_taste(taste: Taste, shift: TasteShift) -> Taste:
    """The taste after `shift`: in the region's rows every parameter moves by strength x (target -
    the region's mean), so each country keeps its own deviation from its region. The target is the
    `toward` region's mean, or (toward=None) the region's mean reversed: the linear taste and every
    bump's amplitude change sign; the preferred tempo stays where it was."""
    rows = shift.chart_rows
    moved = {}
    for f in fields(Taste):
        if f.name == "nominal_rate":
            continue
        values = getattr(taste, f.name).copy()
        own = values[rows].mean(axis=0)
        if shift.toward is not None:
            target = values[region_rows(shift.toward)].mean(axis=0)
        else:
            target = own if f.name == "tempo_center" else -own
        values[rows] += shift.strength * (target - own)
        moved[f.name] = values
    return replace(taste, **moved)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def target_positives(nominal_rate: np.ndarray, n_songs: int, total_days: int) -> np.ndarray:
    """Expected positives per chart: nominal rate, clipped to what the chart can hold.

    A chart holds CHART_SIZE songs a day, each positive at least one day, so
    CHART_SIZE <= k <= CHART_SIZE * days; keep ~5 sd of sampling noise inside."""
    capacity = CHART_SIZE * total_days
    want = nominal_rate * n_songs * 0.85  # ~85% of the catalogue charts somewhere
    lo = ((5 + np.sqrt(25 + 4 * CHART_SIZE)) / 2) ** 2   # k - 5 sqrt(k) >= 50
    hi = ((-5 + np.sqrt(25 + 4 * capacity)) / 2) ** 2    # k + 5 sqrt(k) <= capacity
    hi = min(hi, 0.6 * n_songs)
    target = np.clip(want, lo, hi) if lo <= hi else np.full_like(want, (CHART_SIZE + min(capacity, n_songs)) / 2)
    return np.minimum(target, 0.9 * n_songs)


def solve_base(shape: np.ndarray, target: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """base_c with sum_i sigmoid(base_c + shape_ic) == target_c, for all charts at once.

    Safeguarded Newton: the sum is increasing in base_c, so keep a bracket and
    fall back to bisection whenever a Newton step would leave it."""
    lo = np.full(shape.shape[1], -50.0)
    hi = np.full(shape.shape[1], 50.0)
    frac = np.clip(target / shape.shape[0], 1e-9, 1 - 1e-9)
    base = np.clip(np.log(frac / (1 - frac)) - np.median(shape, axis=0), lo + 1, hi - 1)
    for _ in range(100):
        p = _sigmoid(shape + base)
        excess = p.sum(axis=0) - target
        if np.all(np.abs(excess) <= tol * np.maximum(target, 1.0)):
            break
        hi = np.where(excess > 0, base, hi)
        lo = np.where(excess > 0, lo, base)
        slope = (p * (1 - p)).sum(axis=0)
        step = base - excess / np.maximum(slope, 1e-12)
        inside = (step > lo) & (step < hi)
        base = np.where(inside, step, 0.5 * (lo + hi))
    return base


def probabilities(shape: np.ndarray, base: np.ndarray) -> np.ndarray:
    return _sigmoid(shape + base)


def sample_labels(seed: int, prob: np.ndarray, chart_ids: list[int],
                  total_days: int) -> tuple[np.ndarray, dict[str, int]]:
    """Bernoulli labels; column j of `prob` belongs to chart ALL_CHARTS[chart_ids[j]].

    Each chart draws from its own stream keyed by its world id, so a chart's
    labels do not depend on which other charts are in the dump. A chart needs
    between CHART_SIZE and CHART_SIZE * days positives. With the clipped
    targets this virtually always holds on the first draw; for tiny windows
    (a one-day smoke dump needs exactly 50) the chart's labels are redrawn,
    which conditions the draw on a feasible count (reported in the manifest
    as `label_redraws`)."""
    capacity = CHART_SIZE * total_days
    labels = np.zeros(prob.shape, dtype=bool)
    redraws: dict[str, int] = {}
    for j, chart in enumerate(chart_ids):
        rng = stream(seed, "labels", chart)
        p = prob[:, j]
        name = ALL_CHARTS[chart] or "the global chart"
        # Redrawing conditions the labels on a feasible count: fine when that is a
        # likely event, dishonest to the oracle when it is rare. Refuse the latter.
        chance = _feasible_chance(p, CHART_SIZE, capacity)
        if chance < MIN_FEASIBLE_CHANCE:
            raise ValueError(
                f"chart {name}: {len(p)} songs and a {total_days}-day window cannot give the "
                f"{CHART_SIZE}..{capacity} positive songs its charts need (chance {chance:.1e}); "
                "increase songs or history_days/increments")
        for attempt in range(MAX_LABEL_DRAWS):
            y = rng.random(len(p)) < p
            k = int(y.sum())
            if CHART_SIZE <= k <= capacity:
                break
        else:
            raise ValueError(
                f"chart {name}: sampled {k} positive songs but a {total_days}-day window holds "
                f"{CHART_SIZE}..{capacity}; increase history_days/increments or songs")
        if attempt:
            redraws[ALL_CHARTS[chart]] = attempt
        labels[:, j] = y
    return labels, redraws


def _feasible_chance(p: np.ndarray, lo: int, hi: int) -> float:
    """P(lo <= sum of Bernoulli(p) <= hi), normal approximation with continuity correction."""
    mean, sd = float(p.sum()), float(np.sqrt((p * (1 - p)).sum()))
    if sd < 1e-9:
        return float(lo <= round(mean) <= hi)

    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf((x - mean) / (sd * math.sqrt(2))))

    return cdf(hi + 0.5) - cdf(lo - 0.5)
