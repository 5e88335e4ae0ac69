"""Fault injection: the kinds of damage real dumps have, planned and applied exactly.

Three families (see `FAULT_KINDS`):

* row faults, inside the dump files, each on its own row (a row never carries
  two faults, and never a fault plus missing audio features):
  - missing_values:   a REQUIRED column of an existing row set to null
  - out_of_range:     one numeric cell of an existing row outside its range
  - unknown_country:  an existing row's country replaced by a code not in COUNTRIES
  - wrong_types:      one typed cell holds text that does not parse ("3rd",
                      "not-a-date", ...); in Parquet that file's column is a string column
  - exact_duplicates: an extra identical copy of an existing row, later in the file
  - key_duplicates:   an extra row, later in the file, with an existing row's
                      (snapshot_date, country, spotify_id), a different popularity
                      and another valid rank
  The count asked for is spread over the history and the increment files.
* song fault `missing_audio_features`: the 12 audio features are null in every
  row of some newly released songs (released in the window's last 30 days).
  Realistic rows (not to be quarantined); the count is a number of songs.
* file faults, each a whole extra landing file next to the dump, named
  `charts_<date>_<tag>.<ext>`: truncated_gzip (a .csv.gz cut mid-stream),
  missing_column, renamed_column (a typo in one header), empty_file (0 bytes).
"""

from __future__ import annotations

import gzip
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from hit_platform.domain.countries import CHART_SIZE, COUNTRIES
from hit_platform.domain.schema import COLUMNS, DUMP_COLUMNS
from hit_platform.generator.charts import ChartSchedule
from hit_platform.generator.config import (FAULT_KINDS, FILE_FAULT_KINDS, ROW_FAULT_KINDS,
                                           GeneratorConfig)
from hit_platform.generator.csv_render import render_table_csv
from hit_platform.generator.files import DataFile, day_date
from hit_platform.generator.randomness import stream
from hit_platform.generator.rows import RowBlock
from hit_platform.generator.table import DumpColumns
from hit_platform.generator.writer import WrittenFile, partial_path, sha256_of

NEW_TRACK_DAYS = 30  # "new tracks": album released in the history's last 30 days, charting in it

MISSING_VALUE_COLUMNS: tuple[str, ...] = tuple(c.name for c in DUMP_COLUMNS if c.required)
OUT_OF_RANGE_VALUES: tuple[tuple[str, object], ...] = (
    ("danceability", 1.7), ("tempo", -5.0), ("daily_rank", 51), ("popularity", 130), ("key", 12),
    ("mode", 2), ("energy", -0.2), ("loudness", 12.5), ("duration_ms", 4_000_000), ("time_signature", 9),
    ("speechiness", 1.3), ("daily_movement", 75), ("valence", 1.25), ("liveness", -0.3),
    ("acousticness", 1.1), ("instrumentalness", 2.0), ("weekly_movement", -60), ("tempo", 320.0),
)
WRONG_TYPE_VALUES: tuple[tuple[str, str], ...] = (
    ("daily_rank", "3rd"), ("danceability", "high"), ("snapshot_date", "not-a-date"),
    ("duration_ms", "3:45"), ("is_explicit", "maybe"), ("popularity", "eighty"), ("tempo", "fast"),
    ("key", "C#"), ("mode", "major"), ("energy", "loud"), ("album_release_date", "sometime"),
    ("weekly_movement", "up"),
)
UNKNOWN_COUNTRIES: tuple[str, ...] = ("UK", "XX", "ZZ", "EU", "QZ")

FILE_FAULT_TAGS = {"truncated_gzip": "truncated", "missing_column": "missing_column",
                   "renamed_column": "renamed_column", "empty_file": "empty"}
DROPPED_COLUMNS = ("danceability", "country", "daily_rank", "snapshot_date", "tempo", "spotify_id",
                   "popularity", "energy")
RENAMED_COLUMNS = (("danceability", "danceabilty"), ("popularity", "popularty"),
                   ("snapshot_date", "snapshotdate"), ("spotify_id", "spotify_identifier"),
                   ("daily_rank", "dialy_rank"), ("energy", "enrgy"), ("country", "contry"),
                   ("tempo", "tempo_bpm"))
CELL_FAULT_KINDS = ("missing_values", "out_of_range", "unknown_country", "wrong_types")
DUPLICATE_FAULT_KINDS = ("exact_duplicates", "key_duplicates")


def _check_fault_values() -> None:
    """The fault values must really be faults (and only the intended one)."""
    for name, value in OUT_OF_RANGE_VALUES:
        col = COLUMNS[name]
        assert col.numeric and ((col.min is not None and value < col.min) or (col.max is not None and value > col.max)), name
    for name, _ in WRONG_TYPE_VALUES:
        assert COLUMNS[name].sql_type != "VARCHAR", name
    assert not set(UNKNOWN_COUNTRIES) & set(COUNTRIES)
    assert all(old != new and old.lower() != new.lower() for old, new in RENAMED_COLUMNS)


_check_fault_values()


@dataclass(frozen=True)
class RowFault:
    """One faulty row: where (file, day, chart, rank of the clean row) and what."""

    kind: str
    file: str
    day: int
    chart: int
    rank: int
    column: str | None = None       # cell faults: the damaged column
    value: object = None            # cell faults: the value written
    new_rank: int | None = None     # key_duplicates: the duplicate's rank
    popularity_shift: int = 0       # key_duplicates: popularity change (sign flipped if it would leave 0..100)


@dataclass(frozen=True)
class FileFault:
    kind: str
    name: str
    day: int
    column: str | None = None       # dropped or renamed column
    renamed_to: str | None = None


@dataclass
class FaultPlan:
    row_faults: list[RowFault] = field(default_factory=list)
    missing_audio_songs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    file_faults: list[FileFault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_day: dict[int, list[RowFault]] = defaultdict(list)
        for f in self.row_faults:
            self._by_day[f.day].append(f)

    def row_faults_between(self, day_lo: int, day_hi: int) -> list[RowFault]:
        return [f for d in range(day_lo, day_hi) for f in self._by_day.get(d, ())]

    def string_columns(self, file: str) -> frozenset[str]:
        """Columns of `file` holding wrong-type text (Parquet writes them as strings)."""
        return frozenset(f.column for f in self.row_faults if f.kind == "wrong_types" and f.file == file)


# -- planning ----------------------------------------------------------------------

def plan_faults(config: GeneratorConfig, files: list[DataFile], schedule: ChartSchedule,
                release_day: np.ndarray, first_chart_day: np.ndarray, in_dump: np.ndarray) -> FaultPlan:
    """Decide every fault of the world's files up front (deterministic for the seed)."""
    rng = stream(config.seed, "faults")
    missing_audio = _plan_missing_audio(config, rng, release_day, first_chart_day, in_dump)
    row_faults = _plan_row_faults(config, rng, files, schedule, missing_audio)
    return FaultPlan(row_faults, missing_audio, _plan_file_faults(config))


def _plan_missing_audio(config: GeneratorConfig, rng: np.random.Generator, release_day: np.ndarray,
                        first_chart_day: np.ndarray, in_dump: np.ndarray) -> np.ndarray:
    """New tracks without audio features: released in the history's last NEW_TRACK_DAYS days and
    charting in it (so the first files of a world already show them, however long it runs)."""
    n = config.fault_count("missing_audio_features")
    if not n:
        return np.zeros(0, dtype=np.int64)
    h = config.history_days
    new_tracks = np.flatnonzero(in_dump & (release_day >= h - NEW_TRACK_DAYS) & (first_chart_day < h))
    if n > len(new_tracks):
        raise ValueError(f"faults['missing_audio_features']={n}: only {len(new_tracks)} songs were released in "
                         f"the history's last {NEW_TRACK_DAYS} days and charted in it; ask for fewer or more songs")
    return np.sort(rng.choice(new_tracks, size=n, replace=False))


def _plan_row_faults(config: GeneratorConfig, rng: np.random.Generator, files: list[DataFile],
                     schedule: ChartSchedule, missing_audio: np.ndarray) -> list[RowFault]:
    n_charts = schedule.n_charts
    avoid = np.zeros(config.songs, dtype=bool)
    avoid[missing_audio] = True
    songs_on_day: dict[int, np.ndarray] = {}
    used: set[tuple[int, int, int]] = set()
    per_file_total = defaultdict(int)
    faults: list[RowFault] = []
    for kind in ROW_FAULT_KINDS:
        n = config.fault_count(kind)
        if not n:
            continue
        # Spread evenly over the files (history and increments alike), in a seeded order.
        order = rng.permutation(len(files))
        per_file = np.bincount(order[np.arange(n) % len(files)], minlength=len(files))
        cycle = int(rng.integers(0, 1 << 16))  # where to start in the kind's list of values
        for f, m in zip(files, per_file):
            per_file_total[f.name] += int(m)
            capacity = f.days * n_charts * CHART_SIZE
            if per_file_total[f.name] > capacity // 2:
                raise ValueError(f"{per_file_total[f.name]} row faults asked for in {f.name}, which has only "
                                 f"{capacity} rows; ask for fewer faults or a larger dump")
            for _ in range(int(m)):
                day, chart, rank = _free_row(rng, f, n_charts, used, avoid, schedule, songs_on_day)
                faults.append(_row_fault(kind, f.name, day, chart, rank, cycle, rng))
                cycle += 1
    return faults


def _free_row(rng, f: DataFile, n_charts: int, used: set, avoid: np.ndarray, schedule: ChartSchedule,
              songs_on_day: dict) -> tuple[int, int, int]:
    """A random clean row of file f: not already faulty, not a missing-audio song."""
    for _ in range(10_000):
        day = int(rng.integers(f.day_lo, f.day_hi))
        chart = int(rng.integers(0, n_charts))
        rank = int(rng.integers(1, CHART_SIZE + 1))
        if (day, chart, rank) in used:
            continue
        if day not in songs_on_day:
            songs_on_day[day] = schedule.songs_on(day)
        if avoid[songs_on_day[day][chart, rank - 1]]:
            continue
        used.add((day, chart, rank))
        return day, chart, rank
    raise ValueError(f"could not find a clean row for a fault in {f.name}; ask for fewer faults")


def _row_fault(kind: str, file: str, day: int, chart: int, rank: int, cycle: int,
               rng: np.random.Generator) -> RowFault:
    where = dict(kind=kind, file=file, day=day, chart=chart, rank=rank)
    if kind == "missing_values":
        return RowFault(**where, column=MISSING_VALUE_COLUMNS[cycle % len(MISSING_VALUE_COLUMNS)], value=None)
    if kind == "out_of_range":
        column, value = OUT_OF_RANGE_VALUES[cycle % len(OUT_OF_RANGE_VALUES)]
        return RowFault(**where, column=column, value=value)
    if kind == "unknown_country":
        return RowFault(**where, column="country", value=UNKNOWN_COUNTRIES[cycle % len(UNKNOWN_COUNTRIES)])
    if kind == "wrong_types":
        column, value = WRONG_TYPE_VALUES[cycle % len(WRONG_TYPE_VALUES)]
        return RowFault(**where, column=column, value=value)
    if kind == "exact_duplicates":
        return RowFault(**where)
    if kind == "key_duplicates":
        new_rank = (rank - 1 + int(rng.integers(1, CHART_SIZE))) % CHART_SIZE + 1  # valid, never the same
        shift = int(rng.integers(1, 9)) * (1 if rng.random() < 0.5 else -1)
        return RowFault(**where, new_rank=new_rank, popularity_shift=shift)
    raise ValueError(f"not a row fault kind: {kind!r}")


def _plan_file_faults(config: GeneratorConfig) -> list[FileFault]:
    """Whole bad files, one per count, dated on the window's last days (distinct names)."""
    D = config.total_days
    faults = []
    for kind in FILE_FAULT_KINDS:
        for i in range(config.fault_count(kind)):
            day = D - 1 - (i % D)
            again = f"_{i // D + 1}" if i >= D else ""
            ext = "csv.gz" if kind == "truncated_gzip" else config.extension
            name = f"charts_{day_date(config, day).isoformat()}_{FILE_FAULT_TAGS[kind]}{again}.{ext}"
            column = renamed_to = None
            if kind == "missing_column":
                column = DROPPED_COLUMNS[i % len(DROPPED_COLUMNS)]
            elif kind == "renamed_column":
                column, renamed_to = RENAMED_COLUMNS[i % len(RENAMED_COLUMNS)]
            faults.append(FileFault(kind, name, day, column, renamed_to))
    return faults


# -- applying ----------------------------------------------------------------------

def apply_row_faults(block: RowBlock, faults: list[RowFault], day_lo: int, n_charts: int) -> RowBlock:
    """Damage a clean block of whole days starting at `day_lo`: cell overrides, then extra rows.

    Duplicate rows go at the end of their day (after all charts of that day)."""
    if not faults:
        return block

    def position(f: RowFault) -> int:
        return ((f.day - day_lo) * n_charts + f.chart) * CHART_SIZE + f.rank - 1

    overrides: dict[str, dict[int, object]] = defaultdict(dict)
    for f in faults:
        if f.kind in CELL_FAULT_KINDS:
            overrides[f.column][position(f)] = f.value
    extras = sorted((f for f in faults if f.kind in DUPLICATE_FAULT_KINDS),
                    key=lambda f: (f.day, f.chart, f.rank))
    if extras:
        source = np.array([position(f) for f in extras], dtype=np.int64)
        at = np.array([(f.day - day_lo + 1) * n_charts * CHART_SIZE for f in extras], dtype=np.int64)
        values = {c: getattr(block, c)[source].copy() for c in RowBlock.INT_COLUMNS}
        for i, f in enumerate(extras):
            if f.kind == "key_duplicates":
                values["daily_rank"][i] = f.new_rank
                pop = int(values["popularity"][i])
                values["popularity"][i] = pop + f.popularity_shift if 0 <= pop + f.popularity_shift <= 100 \
                    else pop - f.popularity_shift
        block = RowBlock(*(np.insert(getattr(block, c), at, values[c]) for c in RowBlock.INT_COLUMNS))
        # Rows after an insertion point moved down by the number of rows inserted before them.
        for col, cells in overrides.items():
            old = np.fromiter(cells, dtype=np.int64, count=len(cells))
            new = old + np.searchsorted(at, old, side="right")
            overrides[col] = {int(n): cells[int(o)] for o, n in zip(old, new)}
    block.overrides = dict(overrides)
    return block


# -- file faults ---------------------------------------------------------------------

def write_file_faults(plan: FaultPlan, config: GeneratorConfig, schedule: ChartSchedule,
                      columns: DumpColumns) -> list[tuple[FileFault, WrittenFile]]:
    """Write every planned bad file into out_dir; returns what was written."""
    written = []
    for fault in plan.file_faults:
        path = Path(config.out_dir) / fault.name
        tmp = partial_path(path)
        rows = 0
        if fault.kind == "empty_file":
            tmp.write_bytes(b"")
        else:
            table = columns.table(RowBlock.from_chart_days(schedule.days(fault.day, fault.day + 1)))
            rows = table.num_rows
            if fault.kind == "missing_column":
                table = table.drop_columns([fault.column])
            elif fault.kind == "renamed_column":
                table = table.rename_columns([fault.renamed_to if n == fault.column else n
                                              for n in table.column_names])
            quote_all = config.csv_quoting == "all"
            if fault.kind == "truncated_gzip":
                whole = gzip.compress(render_table_csv(table, quote_all=quote_all), compresslevel=6, mtime=0)
                tmp.write_bytes(whole[: len(whole) // 2])  # cut mid-stream: no end marker, no trailer
            elif path.name.endswith(".parquet"):
                pq.write_table(table, tmp, compression="zstd")
            elif path.name.endswith(".csv.gz"):
                tmp.write_bytes(gzip.compress(render_table_csv(table, quote_all=quote_all), compresslevel=6, mtime=0))
            else:
                tmp.write_bytes(render_table_csv(table, quote_all=quote_all))
        tmp.replace(path)
        written.append((fault, WrittenFile(fault.name, rows, sha256_of(path), path.stat().st_size)))
    return written


# -- manifest ------------------------------------------------------------------------

def summarize(plan: FaultPlan, file_faults_written: list[tuple[FileFault, WrittenFile]],
              missing_audio_rows: dict[str, int], spotify_ids: np.ndarray, written: set[str]) -> dict:
    """The manifest's `faults` section: every kind with its count and per-file counts, in the
    `written` data files (a world's later daily files carry the rest of its row faults)."""
    out: dict[str, dict] = {}
    for kind in FAULT_KINDS:
        if kind in ROW_FAULT_KINDS:
            mine = [f for f in plan.row_faults if f.kind == kind and f.file in written]
            entry = {"count": len(mine), "per_file": _counts(f.file for f in mine)}
            if kind in CELL_FAULT_KINDS:
                entry["columns"] = _counts(f.column for f in mine)
            if kind == "unknown_country":
                entry["values"] = _counts(f.value for f in mine)
        elif kind in FILE_FAULT_KINDS:
            mine = [(f, w) for f, w in file_faults_written if f.kind == kind]
            entry = {"count": len(mine), "per_file": {w.name: 1 for _, w in mine},
                     "files": [{"name": w.name, "column": f.column, "renamed_to": f.renamed_to,
                                "rows_before_damage": w.rows} for f, w in mine]}
        else:  # missing_audio_features: counted in songs, with the rows they touch
            entry = {"count": int(len(plan.missing_audio_songs)),
                     "rows": int(sum(missing_audio_rows.values())),
                     "per_file": {k: int(v) for k, v in missing_audio_rows.items() if v},
                     "spotify_ids": [str(s) for s in spotify_ids[plan.missing_audio_songs]]}
        out[kind] = entry
    return out


def _counts(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[str(v)] = counts.get(str(v), 0) + 1
    return dict(sorted(counts.items()))
