"""A generated world is a daily feed: more days of the same world add files and never rewrite any."""

from __future__ import annotations

from datetime import date

import pytest

from hit_platform.generator import GeneratorConfig, generate
from hit_platform.generator.dump import OtherWorld
from hit_platform.generator.writer import sha256_of

WORLD = dict(seed=5, songs=800, countries=3, history_days=6, world_days=12, start_date=date(2024, 5, 1), fmt="csv",
             faults={"missing_values": 6, "key_duplicates": 6})


def _files(folder):
    return {p.name: (sha256_of(p), p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()}


def test_the_next_days_add_one_file_each_and_leave_the_others_untouched(tmp_path):
    landing, truth = tmp_path / "landing", tmp_path / "generator"
    first = generate(GeneratorConfig(out_dir=landing, truth_dir=truth, increments=2, **WORLD))
    before = _files(landing)
    assert len(before) == 3 and all(f["status"] == "new" for f in first["files"])

    again = generate(GeneratorConfig(out_dir=landing, truth_dir=truth, increments=2, **WORLD))
    assert _files(landing) == before  # same day again: same files, not even rewritten
    assert [f["status"] for f in again["files"]] == ["unchanged"] * 3

    later = generate(GeneratorConfig(out_dir=landing, truth_dir=truth, increments=4, **WORLD))
    after = _files(landing)
    assert {k: after[k] for k in before} == before
    assert sorted(set(after) - set(before)) == ["charts_2024-05-09.csv", "charts_2024-05-10.csv"]
    assert [f["status"] for f in later["files"]] == ["unchanged"] * 3 + ["new"] * 2

    # the same world written at once, elsewhere: byte for byte the files the feed grew to
    at_once = generate(GeneratorConfig(out_dir=tmp_path / "elsewhere", truth_dir=tmp_path / "g2", increments=4, **WORLD))
    assert {f["name"]: f["sha256"] for f in at_once["files"]} == {k: v[0] for k, v in after.items()}
    # the world's faults are planned once: the files written show the same faults either way
    assert at_once["faults"] == later["faults"]


def test_another_world_in_the_same_folder_is_refused_and_nothing_is_written(tmp_path):
    landing, truth = tmp_path / "landing", tmp_path / "generator"
    generate(GeneratorConfig(out_dir=landing, truth_dir=truth, increments=1, **WORLD))
    before = _files(landing)
    with pytest.raises(OtherWorld, match=r"another generated world \(seed 5 -> 6"):
        generate(GeneratorConfig(out_dir=landing, truth_dir=truth, increments=2, **{**WORLD, "seed": 6}))
    shifted = {**WORLD, "start_date": date(2024, 5, 2)}  # the old demo's next day: the whole history shifted
    with pytest.raises(OtherWorld, match="start_date"):
        generate(GeneratorConfig(out_dir=landing, truth_dir=truth, increments=1, **shifted))
    assert _files(landing) == before


def test_a_file_of_the_same_name_with_other_bytes_is_kept_and_refused(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    foreign = landing / "charts_history.csv"
    foreign.write_text("spotify_id\nsomething else\n")
    with pytest.raises(OtherWorld, match="exists with other content"):
        generate(GeneratorConfig(out_dir=landing, truth_dir=tmp_path / "generator", increments=1, **WORLD))
    assert foreign.read_text() == "spotify_id\nsomething else\n"
    assert sorted(p.name for p in landing.iterdir()) == ["charts_history.csv"]  # no scratch file left


def test_a_world_shorter_than_the_days_asked_for_is_refused(tmp_path):
    with pytest.raises(ValueError, match="world_days=12: the world ends before the 13 days"):
        GeneratorConfig(out_dir=tmp_path / "landing", increments=7, **WORLD)
