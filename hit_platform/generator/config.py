"""What to generate: the one configuration object of the dump generator."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from hit_platform.domain.countries import CHART_SIZE, COUNTRIES
from hit_platform.generator.taste import TasteShift
from hit_platform.generator.worlds import DEFAULT_WORLD, WORLDS

FORMATS: dict[str, str] = {"csv": "csv", "csv.gz": "csv.gz", "parquet": "parquet"}
# "minimal": fields quoted only when they must be; "all": the public Kaggle file's style (every field
# quoted, nulls and the global chart's country written as "").
CSV_QUOTING: tuple[str, ...] = ("minimal", "all")

# Row-level faults modify or add rows inside the dump files; file-level faults
# are whole extra files that a loader must refuse.
ROW_FAULT_KINDS: tuple[str, ...] = (
    "missing_values", "out_of_range", "exact_duplicates", "key_duplicates",
    "unknown_country", "wrong_types",
)
FILE_FAULT_KINDS: tuple[str, ...] = ("truncated_gzip", "missing_column", "renamed_column", "empty_file")
SONG_FAULT_KINDS: tuple[str, ...] = ("missing_audio_features",)
FAULT_KINDS: tuple[str, ...] = (
    "missing_values", "out_of_range", "exact_duplicates", "key_duplicates",
    "unknown_country", "wrong_types", "truncated_gzip", "missing_column",
    "renamed_column", "empty_file", "missing_audio_features",
)
assert sorted(FAULT_KINDS) == sorted(ROW_FAULT_KINDS + FILE_FAULT_KINDS + SONG_FAULT_KINDS)

DEFAULT_CHUNK_DAYS = 60  # ~220k rows per chunk with all 73 charts: bounded memory, low overhead


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that determines a dump; equal configs give byte-identical output.

    out_dir      landing files only (history + daily increments + fault files)
    truth_dir    oracle.parquet + manifest.json; never inside out_dir
                 (default: out_dir.parent / "generator")
    seed         the one source of randomness
    songs        size of the song catalogue (songs that never chart are not in the dump)
    history_days days in the one historical file, from start_date
    increments   number of one-day increment files after the history
    fmt          "csv" | "csv.gz" | "parquet"
    countries    None = all 72; n = the first n of COUNTRIES (the global chart is always in)
    faults       {kind: count} with kinds from FAULT_KINDS; empty = a clean dump
    chunk_days   days generated and written per streaming step (output does not depend on it)
    taste_shift  None = one taste for the whole world; a TasteShift (or its dict or
                 'REGION:DAY:STRENGTH[:TOWARD]' text) = one region's taste changes for the songs
                 released from its day on, a concept shift for drills (its day is kept as days
                 from start_date)
    world_name   the structure of the countries' tastes, a world of the zoo (`generator.worlds.WORLDS`):
                 "additive" (the demo's, default), "prototypes", "interactions", "idiosyncratic", "sparse"
    """

    out_dir: Path
    truth_dir: Path | None = None
    seed: int = 42
    songs: int = 20_000
    history_days: int = 90
    increments: int = 7
    start_date: date = date(2024, 1, 1)
    fmt: str = "csv.gz"
    csv_quoting: str = "minimal"
    world_days: int | None = None
    countries: int | None = None
    faults: dict[str, int] = field(default_factory=dict)
    chunk_days: int = DEFAULT_CHUNK_DAYS
    taste_shift: TasteShift | None = None
    world_name: str = DEFAULT_WORLD

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        shift = TasteShift.of(self.taste_shift)
        if shift is not None and isinstance(shift.day, date):
            shift = TasteShift(shift.region, (shift.day - self.start_date).days, shift.strength, shift.toward)
        object.__setattr__(self, "taste_shift", shift)
        truth = Path(self.truth_dir) if self.truth_dir is not None else self.out_dir.parent / "generator"
        object.__setattr__(self, "truth_dir", truth)
        object.__setattr__(self, "faults", {k: int(v) for k, v in dict(self.faults).items()})
        self.validate()

    # -- derived -----------------------------------------------------------------
    @property
    def total_days(self) -> int:
        return self.history_days + self.increments

    @property
    def end_date(self) -> date:
        """The last chart day written (inclusive)."""
        return self.start_date + timedelta(days=self.total_days - 1)

    @property
    def horizon(self) -> int:
        """Days in the world: what the hidden truth, the chart schedule and the fault plan span."""
        return self.world_days if self.world_days is not None else self.total_days

    @property
    def world_end_date(self) -> date:
        return self.start_date + timedelta(days=self.horizon - 1)

    @property
    def selected_countries(self) -> tuple[str, ...]:
        return COUNTRIES if self.countries is None else COUNTRIES[: self.countries]

    @property
    def extension(self) -> str:
        return FORMATS[self.fmt]

    def fault_count(self, kind: str) -> int:
        return self.faults.get(kind, 0)

    # -- checks ------------------------------------------------------------------
    def validate(self) -> None:
        """Refuse configurations that cannot produce a valid dump, saying which field."""
        if self.world_name not in WORLDS:
            raise ValueError(f"GeneratorConfig.world_name={self.world_name!r}: expected one of {list(WORLDS)}")
        if self.fmt not in FORMATS:
            raise ValueError(f"GeneratorConfig.fmt={self.fmt!r}: expected one of {sorted(FORMATS)}")
        if self.csv_quoting not in CSV_QUOTING:
            raise ValueError(f"GeneratorConfig.csv_quoting={self.csv_quoting!r}: expected one of {list(CSV_QUOTING)}")
        if self.world_days is not None and self.world_days < self.total_days:
            raise ValueError(f"GeneratorConfig.world_days={self.world_days}: the world ends before the "
                             f"{self.total_days} days asked for (history_days + increments)")
        if self.history_days < 1:
            raise ValueError(f"GeneratorConfig.history_days={self.history_days}: need at least 1 day")
        if self.increments < 0:
            raise ValueError(f"GeneratorConfig.increments={self.increments}: must be >= 0")
        if self.songs < CHART_SIZE:
            raise ValueError(f"GeneratorConfig.songs={self.songs}: need at least {CHART_SIZE} songs to fill a chart")
        if self.countries is not None and not 1 <= int(self.countries) <= len(COUNTRIES):
            raise ValueError(f"GeneratorConfig.countries={self.countries}: expected None or 1..{len(COUNTRIES)}")
        if self.chunk_days < 1:
            raise ValueError(f"GeneratorConfig.chunk_days={self.chunk_days}: must be >= 1")
        if self.taste_shift is not None and not 0 <= self.taste_shift.day < self.horizon:
            raise ValueError(f"GeneratorConfig.taste_shift: day {self.taste_shift.day} is outside the world's "
                             f"days 0..{self.horizon - 1} (from start_date {self.start_date})")
        unknown = sorted(set(self.faults) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"GeneratorConfig.faults: unknown fault kinds {unknown}; known: {list(FAULT_KINDS)}")
        negative = {k: v for k, v in self.faults.items() if v < 0}
        if negative:
            raise ValueError(f"GeneratorConfig.faults: counts must be >= 0, got {negative}")
        out, truth = self.out_dir.resolve(), Path(self.truth_dir).resolve()
        if truth == out or out in truth.parents:
            raise ValueError(f"GeneratorConfig.truth_dir={self.truth_dir} is inside out_dir={self.out_dir}: "
                             "the pipeline must never see the oracle")

    def world(self) -> dict:
        """What makes a world and the bytes of its files: equal worlds write identical daily files,
        however many of them (`increments`) and wherever (`out_dir`)."""
        return {
            "seed": self.seed,
            "songs": self.songs,
            "start_date": self.start_date.isoformat(),
            "history_days": self.history_days,
            "world_days": self.horizon,
            "fmt": self.fmt,
            "csv_quoting": self.csv_quoting,
            "countries": self.countries,
            "faults": {k: self.faults[k] for k in FAULT_KINDS if k in self.faults},
            # chunk_days is left out on purpose: it changes how, not what, is written.
            # A world without a taste shift reads as it did before shifts existed.
            **({"taste_shift": self.taste_shift.as_json()} if self.taste_shift is not None else {}),
            # likewise a world of the default structure
            **({"world_name": self.world_name} if self.world_name != DEFAULT_WORLD else {}),
        }

    def as_json(self) -> dict:
        """The config as JSON-friendly values (for the manifest); everything that shapes the output."""
        return {"out_dir": str(self.out_dir), "truth_dir": str(self.truth_dir), **self.world(),
                "increments": self.increments}
