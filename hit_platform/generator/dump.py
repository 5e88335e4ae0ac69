"""`generate(config)`: write a whole dump, its oracle and its manifest.

Steps: hidden truth (catalogue, taste, labels) -> chart schedule that makes
the labels true -> fault plan -> the data files, streamed a chunk of days at
a time -> bad files -> oracle -> manifest. Same config, same bytes.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hit_platform.generator.charts import ChartSchedule
from hit_platform.generator.config import GeneratorConfig
from hit_platform.generator.csv_render import FastCsvRenderer
from hit_platform.generator.faults import (FaultPlan, FileFault, apply_row_faults, plan_faults, summarize,
                                           write_file_faults)
from hit_platform.generator.files import DataFile, data_files, day_date
from hit_platform.generator.oracle import conditional_probability, oracle_table, write_oracle
from hit_platform.generator.randomness import stream
from hit_platform.generator.rows import RowBlock
from hit_platform.generator.songs import (Catalogue, base_popularity, make_catalogue, release_offsets,
                                         release_precision)
from hit_platform.generator.table import DumpColumns
from hit_platform.generator.taste import ALL_CHARTS, TasteShift, sample_labels
from hit_platform.generator.true_oracle import Oracle, build_oracle
from hit_platform.generator.worlds import DEFAULT_WORLD
from hit_platform.generator.writer import WrittenFile, open_writer, sha256_of

log = logging.getLogger(__name__)

# Under a taste shift, the songs released from its day on number NEW_RELEASE_SHARE of what releases
# spread evenly over the world would give, and at most MAX_NEW_SHARE of the catalogue: enough new songs
# a day for a drill, few enough that the charts can hold them back until their release days.
NEW_RELEASE_SHARE = 0.3
MAX_NEW_SHARE = 0.15

MANIFEST_NAME = "manifest.json"
ORACLE_NAME = "oracle.parquet"
MANIFEST_VERSION = 1


@dataclass
class Truth:
    """What the generator knows and the pipeline must learn."""

    catalogue: Catalogue
    chart_ids: list[int]       # the dump's charts as indices into ALL_CHARTS (0 = global)
    prob: np.ndarray           # (songs, charts of the dump): true p_c
    labels: np.ndarray         # (songs, charts of the dump): sampled, = "charted there"
    popularity: np.ndarray     # (songs,): base Spotify popularity
    redraws: dict[str, int]    # charts whose labels had to be redrawn to fit the window
    # With a taste shift only (None otherwise):
    shift: TasteShift | None = None
    shifted: np.ndarray | None = None      # (songs,) bool: released on/after the shift's day, judged anew
    release_day: np.ndarray | None = None  # (songs,) a shifted song's release day (from start_date); -1 for
    #                                        the others: released before the shift's day, dated by `generate`
    oracle: Oracle | None = None  # the truth as a function of a song's features (`true_oracle`)

    @property
    def in_dump(self) -> np.ndarray:
        """Songs that charted somewhere: the only ones the dump shows."""
        return self.labels.any(axis=1)

    @property
    def shifted_columns(self) -> np.ndarray:
        """Columns of `prob`/`labels` that belong to the shifted region's countries (empty: no shift)."""
        if self.shift is None:
            return np.zeros(0, dtype=np.int64)
        rows = set(self.shift.chart_rows.tolist())
        return np.array([j for j, chart in enumerate(self.chart_ids) if chart in rows], dtype=np.int64)

    def earliest_chart_day(self) -> np.ndarray | None:
        """(songs, charts of the dump): the first day a song may be on a chart (for ChartSchedule):
        a song released after the shift's day charts nowhere before its release."""
        if self.shift is None:
            return None
        earliest = np.zeros(self.labels.shape, dtype=np.int64)
        earliest[self.shifted] = self.release_day[self.shifted, None]
        return earliest


def hidden_truth(cfg: GeneratorConfig) -> Truth:
    """Catalogue, per-chart taste (cfg's world) and sampled labels. The world does not depend on
    which charts a dump shows; only the labels of the shown charts are drawn."""
    catalogue = make_catalogue(cfg.seed, cfg.songs)
    X = catalogue.matrix()
    oracle = build_oracle(cfg, X)
    chart_ids = list(oracle.chart_ids)
    world = oracle.world_probabilities(X)
    prob = world[:, chart_ids]
    labels, redraws = sample_labels(cfg.seed, prob, chart_ids, cfg.horizon)
    truth = Truth(catalogue, chart_ids, prob, labels, base_popularity(cfg.seed, world.mean(axis=1)), redraws,
                  oracle=oracle)
    if cfg.taste_shift is None:
        return truth
    return shift_truth(cfg, truth, X, world)


def shift_truth(cfg: GeneratorConfig, truth: Truth, X: np.ndarray, world: np.ndarray) -> Truth:
    """The truth under cfg.taste_shift.

    The songs released from its day on are a random share of the catalogue (NEW_RELEASE_SHARE of
    what releases spread evenly over the world would give, at most MAX_NEW_SHARE), dated evenly
    over the days left. Drawn before any label, they are like every other song but for their date
    (a world's own calendar releases few songs late in its window, and those few are the songs
    that chart in few places). In the region's countries they are judged by the shifted taste,
    whose base is solved again so the chart keeps its share of hits (`Oracle.shifted_probabilities`).
    Labels come from the same per-chart streams, so every other (song, chart) keeps its label;
    popularity stays the unshifted world's. `generate` holds the new songs off every chart until
    their release day."""
    shift = cfg.taste_shift
    rng = stream(cfg.seed, "taste_shift_releases")
    days_left = cfg.horizon - shift.day
    shifted = rng.random(cfg.songs) < min(NEW_RELEASE_SHARE * days_left / cfg.horizon, MAX_NEW_SHARE)
    release_day = np.where(shifted, rng.integers(shift.day, cfg.horizon, cfg.songs), -1)
    world = world.copy()
    if shift.strength > 0:
        world[np.ix_(shifted, shift.chart_rows)] = truth.oracle.shifted_probabilities(X)[shifted]
    prob = world[:, truth.chart_ids]
    labels, redraws = sample_labels(cfg.seed, prob, truth.chart_ids, cfg.horizon)
    return Truth(truth.catalogue, truth.chart_ids, prob, labels, truth.popularity, redraws, shift, shifted,
                 release_day, truth.oracle)


class OtherWorld(FileExistsError):
    """The landing folder already holds files of another world; nothing was overwritten."""


def previous_manifest(truth_dir: Path) -> dict | None:
    path = Path(truth_dir) / MANIFEST_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def manifest_world(manifest: dict) -> dict:
    """The world a manifest was written for, as `GeneratorConfig.world()` gives it (JSON values; a
    manifest from before worlds had a length of their own: its window, minimal quoting)."""
    world = {k: manifest["config"].get(k) for k in ("seed", "songs", "start_date", "history_days", "fmt",
                                                    "countries", "faults")}
    world.update(world_days=manifest.get("world", {}).get("days", manifest["window"]["days"]),
                 csv_quoting=manifest["config"].get("csv_quoting", "minimal"), faults=world["faults"] or {})
    if manifest["config"].get("taste_shift") is not None:
        world["taste_shift"] = manifest["config"]["taste_shift"]
    if manifest["config"].get("world_name") is not None:
        world["world_name"] = manifest["config"]["world_name"]
    return world


def check_same_world(cfg: GeneratorConfig) -> None:
    """Refuse to write into a folder that holds files generated for another world: its daily
    files would not continue them (and a file of the same name would be replaced)."""
    before = previous_manifest(cfg.truth_dir)
    if before is None or "config" not in before:
        return
    old, new = ({"world_name": DEFAULT_WORLD, **w} for w in (manifest_world(before), cfg.world()))
    present = [f["name"] for f in before.get("files", []) if (Path(cfg.out_dir) / f["name"]).exists()]
    if present and old != new:
        differ = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in [*new, *(k for k in old if k not in new)]
                           if old.get(k) != new.get(k))
        raise OtherWorld(f"{cfg.out_dir} holds {len(present)} file(s) of another generated world ({differ}); "
                         "nothing was written. Use the same world (same seed, songs, start date, history and "
                         "world days, format, countries, faults and --world) to add its next daily files, or an empty folder")


def generate(config: GeneratorConfig) -> dict:
    """Write the dump described by `config`; return the manifest (also in truth_dir/manifest.json).

    Files already in out_dir with the same bytes are left as they are (a daily feed re-run writes only
    its new days); a file of the same name with other bytes stops the run (OtherWorld)."""
    cfg = config
    out_dir, truth_dir = Path(cfg.out_dir), Path(cfg.truth_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    check_same_world(cfg)

    truth = hidden_truth(cfg)
    charts = tuple(ALL_CHARTS[i] for i in truth.chart_ids)
    schedule = ChartSchedule(cfg.seed, truth.labels, truth.prob, truth.popularity, cfg.horizon, truth.chart_ids,
                             truth.earliest_chart_day())
    first_chart_day = schedule.first_chart_day(cfg.songs)
    release_day = release_offsets(cfg.seed, first_chart_day)
    if truth.shift is not None:
        # the shift's new songs were dated before their labels (and chart from then on); every
        # other song is released before the shift's day
        release_day = np.where(truth.shifted, truth.release_day, np.minimum(release_day, truth.shift.day - 1))

    files = data_files(cfg)  # the world's files; the first 1 + increments are written
    plan = plan_faults(cfg, files, schedule, release_day, first_chart_day, truth.in_dump)
    missing_audio = np.zeros(cfg.songs, dtype=bool)
    missing_audio[plan.missing_audio_songs] = True
    precision = release_precision(cfg.seed, release_day, first_chart_day)
    columns = DumpColumns(truth.catalogue, release_day, precision, cfg.start_date, charts, missing_audio)

    written, missing_audio_rows = write_data_files(cfg, files[: 1 + cfg.increments], schedule, plan, columns,
                                                   missing_audio)
    bad_files = write_file_faults(plan, cfg, schedule, columns)

    in_dump = truth.in_dump
    q = conditional_probability(truth.prob)[in_dump][:, 1:]  # column 0 is the global chart
    oracle = oracle_table(truth.catalogue.spotify_id[in_dump], cfg.selected_countries, q,
                          truth.labels[in_dump][:, 1:])
    write_oracle(truth_dir / ORACLE_NAME, oracle)

    manifest = build_manifest(cfg, truth, written, bad_files, plan, missing_audio_rows,
                              {"file": ORACLE_NAME, "rows": oracle.num_rows,
                               "sha256": sha256_of(truth_dir / ORACLE_NAME)})
    tmp = truth_dir / f".{MANIFEST_NAME}.partial"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(truth_dir / MANIFEST_NAME)
    return manifest


def write_data_files(cfg: GeneratorConfig, files: list[DataFile], schedule: ChartSchedule, plan: FaultPlan,
                     columns: DumpColumns, missing_audio: np.ndarray):
    """Stream every data file, `chunk_days` days at a time; returns what was written
    and, per file, the rows whose audio features are missing.

    A file already in place is rendered beside it and compared: same bytes, it stays (status
    "unchanged"); other bytes raise OtherWorld."""
    renderer = FastCsvRenderer(columns, quote_all=cfg.csv_quoting == "all") if cfg.fmt != "parquet" else None
    n_charts = schedule.n_charts
    written: list[tuple[DataFile, WrittenFile]] = []
    missing_audio_rows: dict[str, int] = defaultdict(int)
    for f in files:
        target = Path(cfg.out_dir) / f.name
        exists = target.exists()
        path = target.with_name(f".{f.name}.check") if exists else target
        writer = open_writer(cfg.fmt, path, columns, renderer, plan.string_columns(f.name))
        try:
            for lo in range(f.day_lo, f.day_hi, cfg.chunk_days):
                hi = min(lo + cfg.chunk_days, f.day_hi)
                block = RowBlock.from_chart_days(schedule.days(lo, hi))
                block = apply_row_faults(block, plan.row_faults_between(lo, hi), lo, n_charts)
                missing_audio_rows[f.name] += int(missing_audio[block.song].sum())
                writer.write(block)
        except BaseException:
            writer.abort()
            raise
        result = writer.close()
        status = "new"
        if exists:
            same = sha256_of(target) == result.sha256
            path.unlink()
            if not same:
                raise OtherWorld(f"{target} exists with other content than this world's {f.name}; it was left as "
                                 "it is. Generate into an empty folder, or with the world that wrote it")
            status = "unchanged"
        result = WrittenFile(f.name, result.rows, result.sha256, result.bytes, status)
        log.info("%s %s: %d rows", "wrote" if status == "new" else "kept (same bytes)", f.name, result.rows)
        written.append((f, result))
    return written, dict(missing_audio_rows)


def build_manifest(cfg: GeneratorConfig, truth: Truth, written: list[tuple[DataFile, WrittenFile]],
                   bad_files: list[tuple[FileFault, WrittenFile]], plan: FaultPlan,
                   missing_audio_rows: dict[str, int], oracle: dict) -> dict:
    """Everything a test or a judge needs to know about the dump (no timestamps: deterministic)."""
    countries = cfg.selected_countries
    return {
        "manifest_version": MANIFEST_VERSION,
        "config": cfg.as_json(),
        "seed": cfg.seed,
        "window": {"start_date": cfg.start_date.isoformat(), "end_date": cfg.end_date.isoformat(),
                   "days": cfg.total_days, "history_days": cfg.history_days, "increments": cfg.increments},
        # Labels, positives and the oracle describe the whole world; the files show its first days.
        "world": {"days": cfg.horizon, "end_date": cfg.world_end_date.isoformat()},
        "charts": {"countries": list(countries), "global_chart": True, "count": len(truth.chart_ids)},
        "files": [_data_file_entry(cfg, f, w) for f, w in written]
        + [_fault_file_entry(cfg, ff, w) for ff, w in bad_files],
        "rows_per_file": {w.name: w.rows for _, w in written},
        "total_rows": int(sum(w.rows for _, w in written)),
        "songs_in_catalogue": cfg.songs,
        "songs_in_dump": int(truth.in_dump.sum()),
        "positives_per_country": {c: int(k) for c, k in zip(countries, truth.labels[:, 1:].sum(axis=0))},
        "positives_global": int(truth.labels[:, 0].sum()),
        "label_redraws": {(c or "global"): n for c, n in truth.redraws.items()},
        "faults": summarize(plan, bad_files, missing_audio_rows, truth.catalogue.spotify_id,
                            {w.name for _, w in written}),
        "oracle": oracle,
        # Only with a taste shift, so a world without one keeps its manifest byte for byte.
        **({"taste_shift": _taste_shift_entry(cfg, truth)} if truth.shift is not None else {}),
    }


def _taste_shift_entry(cfg: GeneratorConfig, truth: Truth) -> dict:
    cols = truth.shifted_columns
    new = truth.shifted & truth.in_dump
    return {**truth.shift.as_json(), "first_release_date": day_date(cfg, truth.shift.day).isoformat(),
            "countries": [ALL_CHARTS[truth.chart_ids[j]] for j in cols],
            "songs_shifted_in_dump": int(new.sum()),
            "new_songs_per_day_in_dump": round(int(new.sum()) / (cfg.horizon - truth.shift.day), 1),
            "positives_of_shifted_songs": int(truth.labels[np.ix_(new, cols)].sum())}


def _data_file_entry(cfg: GeneratorConfig, f: DataFile, w: WrittenFile) -> dict:
    return {"name": w.name, "kind": f.kind, "fault": None, "format": cfg.fmt, "rows": w.rows,
            "sha256": w.sha256, "bytes": w.bytes, "first_date": day_date(cfg, f.day_lo).isoformat(),
            "last_date": day_date(cfg, f.day_hi - 1).isoformat(), "status": w.status}


def _fault_file_entry(cfg: GeneratorConfig, ff: FileFault, w: WrittenFile) -> dict:
    fmt = "parquet" if w.name.endswith(".parquet") else "csv.gz" if w.name.endswith(".csv.gz") else "csv"
    day = day_date(cfg, ff.day).isoformat()
    return {"name": w.name, "kind": "fault", "fault": ff.kind, "format": fmt, "rows": w.rows,
            "sha256": w.sha256, "bytes": w.bytes, "first_date": day, "last_date": day}
