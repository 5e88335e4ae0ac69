"""A daily feed of one fixed world: each run writes the days since the last run, up to yesterday.

The first run anchors the world: its first day is chosen so that the history and the first
daily files end yesterday, and the manifest keeps it. Every later run into the same folders
continues that world (same seed, same first day, same length), so the files already there
are never rewritten and only the new days' files land, as from a real daily feed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

from hit_platform.generator.config import GeneratorConfig
from hit_platform.generator.dump import OtherWorld, manifest_world, previous_manifest
from hit_platform.generator.worlds import DEFAULT_WORLD

# A world made here has this many days after its history: the daily files it can still land.
DAILY_FILES = 30

# Row faults are spread evenly over the world's files (the history and its daily files): with the
# default 31 files, about two of each kind per file, so every day's quarantine has something to show.
DEFAULT_FAULTS = {"missing_values": 62, "out_of_range": 62, "exact_duplicates": 62, "key_duplicates": 62,
                  "unknown_country": 62, "wrong_types": 62, "missing_audio_features": 5}
DEFAULTS = {"seed": 42, "songs": 20_000, "history_days": 120, "increments": 3, "fmt": "csv.gz",
            "csv_quoting": "minimal", "countries": None}


@dataclass(frozen=True)
class FeedDay:
    """What a run on `today` writes."""

    config: GeneratorConfig
    new_files: int          # daily files (or the history and its days, on the first run) not yet written
    first_run: bool
    ended: bool             # the world's last day is before yesterday: no file can bring it up to date


def _world_in(truth_dir: Path) -> dict | None:
    """The manifest of the world generated before, if any. It is continued even when its files are
    gone from the landing folder (ingested and cleared away): they are written again, byte for byte,
    and ingest knows them by their content."""
    before = previous_manifest(truth_dir)
    return before if before is not None and "config" in before else None


def feed_day(out_dir: Path, truth_dir: Path, today: date, faults: dict[str, int] | None = None,
             **asked) -> FeedDay:
    """The config that brings out_dir's world up to yesterday. `faults` and `asked` hold the world's
    settings a user gave (None = not given); on a later run they must agree with the world there."""
    out_dir, truth_dir = Path(out_dir), Path(truth_dir)
    yesterday = today - timedelta(days=1)
    given = {k: v for k, v in asked.items() if v is not None}
    before = _world_in(truth_dir)
    if before is None:
        world = {**DEFAULTS, **given}
        increments = world.pop("increments")
        world.setdefault("start_date", yesterday - timedelta(days=world["history_days"] + increments - 1))
        world.setdefault("world_days", world["history_days"] + DAILY_FILES)
        cfg = GeneratorConfig(out_dir=out_dir, truth_dir=truth_dir, increments=0, **world,
                              faults=DEFAULT_FAULTS if faults is None else faults)
        written = -1  # not even the history
    else:
        world = manifest_world(before)
        world["start_date"] = date.fromisoformat(world["start_date"])
        world.setdefault("world_name", DEFAULT_WORLD)  # so that asking for another one is refused
        old_faults = world.pop("faults")
        differ = {k: (world[k], v) for k, v in given.items() if k in world and world[k] != v}
        if differ or (faults is not None and faults != old_faults):
            what = ", ".join(f"{k} {a!r} (asked {b!r})" for k, (a, b) in differ.items()) or "its faults"
            raise OtherWorld(f"{out_dir} holds the files of a generated world that differs in {what}; it is "
                             "continued as it is, never rewritten. Run without those options to continue it, or "
                             "start a new world in an empty warehouse (HIT_WAREHOUSE=...)")
        cfg = GeneratorConfig(out_dir=out_dir, truth_dir=truth_dir, faults=old_faults, increments=0, **world)
        gone = [f["name"] for f in before["files"] if f["kind"] != "fault" and not (out_dir / f["name"]).exists()]
        written = before["window"]["increments"] if not gone else -1
    last_possible = cfg.horizon - cfg.history_days
    increments = max(0, min((yesterday - cfg.start_date).days + 1 - cfg.history_days, last_possible))
    if before is None and (yesterday - cfg.start_date).days + 1 < cfg.history_days:
        raise ValueError(f"the history ({cfg.history_days} days from {cfg.start_date}) ends after yesterday "
                         f"({yesterday}): choose an earlier --start-date")
    increments = max(increments, written)  # a clock set back never takes files away
    cfg = replace(cfg, increments=increments)
    ended = cfg.world_end_date < yesterday
    return FeedDay(cfg, increments - written, before is None, ended)

