"""Same config, same bytes; chunking changes nothing; the seed changes everything."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from hit_platform.generator import GeneratorConfig, generate

SMALL = dict(songs=800, countries=8, history_days=12, increments=2,
             faults={"missing_values": 3, "out_of_range": 4, "exact_duplicates": 2, "key_duplicates": 2,
                     "unknown_country": 2, "wrong_types": 4, "truncated_gzip": 1, "missing_column": 1,
                     "renamed_column": 1, "empty_file": 1, "missing_audio_features": 2})


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _make(root: Path, **kw) -> dict:
    return generate(GeneratorConfig(out_dir=root / "landing", truth_dir=root / "generator", **kw))


def test_same_seed_gives_byte_identical_files_and_manifest(tmp_path):
    root = tmp_path / "dump"
    _make(root, seed=9, **SMALL)
    first = _digests(root)
    shutil.rmtree(root)
    _make(root, seed=9, **SMALL)
    assert _digests(root) == first
    assert "generator/manifest.json" in first and "generator/oracle.parquet" in first
    assert not [name for name in first if name.endswith(".partial")]


def test_output_does_not_depend_on_the_folder(tmp_path):
    a, b = _make(tmp_path / "a", seed=9, **SMALL), _make(tmp_path / "b", seed=9, **SMALL)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b") | {
        "generator/manifest.json": _digests(tmp_path / "a")["generator/manifest.json"]}
    for m in (a, b):
        m["config"].pop("out_dir"), m["config"].pop("truth_dir")
    assert a == b


def test_a_different_seed_gives_a_different_dump(tmp_path):
    a, b = _make(tmp_path / "a", seed=1, **SMALL), _make(tmp_path / "b", seed=2, **SMALL)
    assert {f["sha256"] for f in a["files"]}.isdisjoint(f["sha256"] for f in b["files"] if f["bytes"])
    assert a["oracle"]["sha256"] != b["oracle"]["sha256"]


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet"])
def test_chunk_size_does_not_change_the_output(tmp_path, fmt):
    small = _make(tmp_path / "small", seed=4, fmt=fmt, chunk_days=1, **SMALL)
    large = _make(tmp_path / "large", seed=4, fmt=fmt, chunk_days=1000, **SMALL)
    assert [f["sha256"] for f in small["files"]] == [f["sha256"] for f in large["files"]]
    assert _digests(tmp_path / "small") == _digests(tmp_path / "large") | {
        "generator/manifest.json": _digests(tmp_path / "small")["generator/manifest.json"]}
    for m in (small, large):
        m["config"].pop("out_dir"), m["config"].pop("truth_dir")
    assert json.dumps(small) == json.dumps(large)
