"""The zoo of worlds: each deterministic, each oracle the truth its labels were drawn from, the ignored
features ignored, the demo's world unchanged byte for byte, and the oracle a function of features alone."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.generator import (DEFAULT_WORLD, WORLDS, GeneratorConfig, generate, oracle_from_manifest,
                                    world_oracle)
from hit_platform.generator.dump import OtherWorld, hidden_truth
from hit_platform.generator.feed import feed_day
from hit_platform.generator.oracle import conditional_probability

ROOT = Path(__file__).resolve().parents[2]
NEW_WORLDS = [w for w in WORLDS if w != DEFAULT_WORLD]
SMALL = dict(songs=800, countries=8, history_days=12, increments=2,
             faults={"missing_values": 3, "missing_audio_features": 2})
# sha256 of the demo world's files, written by the generator before the zoo existed (commit f155bcf)
PINNED = {"generator/oracle.parquet": "16fb3184819dae452e5f49b348c7825ea45bd8501a4ba87390bd09dc7e0f95a9",
          "landing/charts_2024-01-13.csv.gz": "ea9986fb799778da8472b371ff3c7a8050149129ac192d6b1167ea603393eba3",
          "landing/charts_2024-01-14.csv.gz": "e7f7ecee409ff68d85d2a632da73e5cc779381bf797ee509f35dfdd79cd65ab1",
          "landing/charts_history.csv.gz": "c6f15c17f0e9d10939948f07a71e7d419444ca0cca3e08c6fbfee6ca6115fdd8"}
PINNED_SHIFT = ("f334112977271c80f2a59b93b3b484e01a02e61acbca4611843b88f3f8988437",
                ["55fe9570a8e3a12fdf917ca732c85fb453b7ae3d7b1c64e1424bca4fc38187a9",
                 "5630a39707f95f4bc9cbbb6834a6e171e254214da26db1b7b4cdb2934a152fbb"])
SHIFT = dict(seed=5, songs=1500, history_days=20, increments=1, taste_shift="latam:10:1:anglo",
             start_date=date(2026, 1, 1))


def _config(tmp: Path, **kw) -> GeneratorConfig:
    return GeneratorConfig(out_dir=tmp / "landing", truth_dir=tmp / "generator", **kw)


def _world(world: str, seed: int = 3, songs: int = 20_000) -> GeneratorConfig:
    return GeneratorConfig(out_dir=Path("/nonexistent/landing"), seed=seed, songs=songs, history_days=150,
                           increments=0, world_name=world)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def test_the_default_world_is_the_demo_world_byte_for_byte(tmp_path):
    manifest = generate(_config(tmp_path / "a", seed=9, **SMALL))
    assert _digests(tmp_path / "a") == PINNED
    assert "world_name" not in manifest["config"]  # its manifest reads as before the zoo
    named = generate(_config(tmp_path / "b", seed=9, world_name="additive", **SMALL))
    assert _digests(tmp_path / "b") == PINNED and named["config"] == {
        **manifest["config"], "out_dir": named["config"]["out_dir"], "truth_dir": named["config"]["truth_dir"]}
    shifted = generate(_config(tmp_path / "c", **SHIFT))
    # the shifted world's files byte for byte; its oracle's probabilities agree to the last bits only: NumPy's
    # exp takes another SIMD path on another CPU (AVX-512 on this one), and the oracle is not drawn from
    assert [f["sha256"] for f in shifted["files"]] == PINNED_SHIFT[1]


@pytest.mark.parametrize("world", NEW_WORLDS)
def test_a_world_is_the_same_for_its_seed_and_another_for_another_seed(world):
    a, b, c = (hidden_truth(_world(world, seed, songs=3000)) for seed in (3, 3, 4))
    assert np.array_equal(a.prob, b.prob) and np.array_equal(a.labels, b.labels)
    assert not np.allclose(a.prob, c.prob)
    demo = hidden_truth(_world(DEFAULT_WORLD, 3, songs=3000))
    assert np.array_equal(a.catalogue.matrix(), demo.catalogue.matrix())  # the same songs ...
    if world == "rare":  # ... the demo's taste, hits rarer (a small catalogue keeps the 64 a chart needs)
        assert a.labels[:, 1:].mean() < demo.labels[:, 1:].mean() / 2.5
    else:  # ... judged otherwise
        assert np.corrcoef(a.prob[:, 1:].ravel(), demo.prob[:, 1:].ravel())[0, 1] < 0.5


def test_a_world_writes_the_same_bytes_twice_and_says_which_world_it_is(tmp_path):
    first = generate(_config(tmp_path / "a", seed=9, world_name="prototypes", **SMALL))
    again = generate(_config(tmp_path / "b", seed=9, world_name="prototypes", **SMALL))
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert first["config"]["world_name"] == "prototypes"
    assert set(_digests(tmp_path / "a").values()).isdisjoint(PINNED.values())
    assert [f["sha256"] for f in first["files"]] == [f["sha256"] for f in again["files"]]


@pytest.mark.parametrize("world", list(WORLDS))
def test_the_oracle_is_the_truth_its_labels_were_drawn_from(world):
    truth = hidden_truth(_world(world))
    dumped = truth.in_dump
    Y = truth.labels[dumped][:, 1:]
    Q = truth.oracle(truth.catalogue.matrix()[dumped])
    assert Q.shape == (dumped.sum(), 72)
    # what oracle.parquet holds, to the last bits (NumPy's exp/log take other SIMD paths for other layouts
    # and CPUs: 1.6e-14 relative at most on an AVX-512 machine)
    np.testing.assert_allclose(Q, conditional_probability(truth.prob)[dumped][:, 1:], rtol=1e-12, atol=0)
    # per country, the share of hits agrees with the mean oracle probability within sampling error
    z = (Y.sum(axis=0) - Q.sum(axis=0)) / np.sqrt((Q * (1 - Q)).sum(axis=0))
    assert np.abs(z).max() < 4.5, dict(zip(COUNTRIES, z.round(1)))
    assert abs(z.sum() / np.sqrt(len(z))) < 4.5
    # and it knows which songs: hits have a higher oracle probability than misses, in every country
    assert all(Q[Y[:, j], j].mean() > 1.5 * Q[~Y[:, j], j].mean() for j in range(72))


@pytest.mark.parametrize("world", list(WORLDS))
def test_the_ignored_features_do_not_change_the_oracle_and_the_others_do(world):
    oracle = world_oracle(_world(world, songs=4000))
    X = hidden_truth(_world(world, songs=4000)).catalogue.matrix()
    ignored = [FEATURE_COLUMNS.index(c) for c in oracle.ignored_features]
    other = X[np.random.default_rng(0).permutation(len(X))]
    for j in range(X.shape[1]):
        changed = X.copy()
        changed[:, j] = other[:, j]
        moved = np.abs(oracle(changed) - oracle(X)).max()
        assert (moved == 0.0) == (j in ignored), (FEATURE_COLUMNS[j], moved)


def test_the_sparse_world_reads_four_features():
    oracle = world_oracle(_world("sparse"))
    assert len(oracle.ignored_features) == 10
    X = hidden_truth(_world("sparse")).catalogue.matrix()
    scrambled = X.copy()
    for c in oracle.ignored_features:
        scrambled[:, FEATURE_COLUMNS.index(c)] = np.random.default_rng(1).uniform(0.01, 1e3, len(X))
    assert np.array_equal(oracle(scrambled), oracle(X))


@pytest.mark.parametrize("world", list(WORLDS))
def test_the_oracle_of_a_song_does_not_depend_on_the_other_songs(world):
    oracle = world_oracle(_world(world, songs=3000))
    X = hidden_truth(_world(world, songs=3000)).catalogue.matrix()
    whole = oracle(X)
    np.testing.assert_allclose(oracle(X[:7]), whole[:7], rtol=1e-12)
    np.testing.assert_allclose(oracle(X[::-1]), whole[::-1], rtol=1e-12)
    with pytest.raises(ValueError, match=r"expected an \(n, 14\) matrix"):
        oracle(X[:, :13])


def test_the_oracle_from_a_manifest_gives_the_written_oracle_from_the_dumped_features(tmp_path):
    manifest = generate(_config(tmp_path, seed=2, songs=3000, history_days=30, increments=0, fmt="parquet",
                                world_name="interactions"))
    rows = pd.read_parquet(tmp_path / "landing" / "charts_history.parquet")
    songs = rows.drop_duplicates("spotify_id").set_index("spotify_id")
    songs["is_explicit"] = songs["is_explicit"].astype(float)
    written = pd.read_parquet(tmp_path / "generator" / "oracle.parquet").pivot(
        index="spotify_id", columns="country", values="probability")[list(COUNTRIES)]
    oracle = oracle_from_manifest(tmp_path / "generator" / "manifest.json")
    assert oracle.world == manifest["config"]["world_name"] == "interactions"
    X = songs.loc[written.index, list(FEATURE_COLUMNS)].to_numpy(dtype=float)
    np.testing.assert_allclose(oracle(X), written.to_numpy(), rtol=1e-9)


@pytest.mark.parametrize("world", ["sparse", "idiosyncratic"])
def test_a_taste_shift_moves_the_labels_of_any_world_and_the_oracle_knows_which_songs(world):
    cfg = _world(world, songs=6000)
    shifted_cfg = GeneratorConfig(**{**cfg.__dict__, "taste_shift": "latam:100:1"})
    truth, shifted = hidden_truth(cfg), hidden_truth(shifted_cfg)
    X = truth.catalogue.matrix()
    rows = shifted.shifted_columns
    assert shifted.shifted.any() and not np.allclose(shifted.prob[:, rows], truth.prob[:, rows])
    others = np.setdiff1d(np.arange(truth.prob.shape[1]), rows)
    assert np.array_equal(shifted.prob[:, others], truth.prob[:, others])
    expect = conditional_probability(shifted.prob)[:, 1:]
    assert np.array_equal(shifted.oracle(X, shifted=shifted.shifted), expect)
    assert not np.allclose(shifted.oracle(X), expect)  # without the mask: every song judged by the old taste


def test_an_unknown_world_is_refused_and_a_feed_keeps_its_world(tmp_path):
    with pytest.raises(ValueError, match="world_name='jazz': expected one of"):
        _config(tmp_path, world_name="jazz")
    kw = dict(seed=5, songs=800, countries=3, history_days=6, world_days=12, start_date=date(2024, 5, 1))
    generate(_config(tmp_path, increments=1, world_name="sparse", **kw))
    with pytest.raises(OtherWorld, match="world_name 'sparse' -> 'additive'"):
        generate(_config(tmp_path, increments=2, **kw))
    today = date(2024, 5, 9)
    assert feed_day(tmp_path / "landing", tmp_path / "generator", today, {}).config.world_name == "sparse"
    with pytest.raises(OtherWorld, match="world_name 'sparse' \\(asked 'prototypes'\\)"):
        feed_day(tmp_path / "landing", tmp_path / "generator", today, {}, world_name="prototypes")


def test_the_command_line_writes_any_world_and_refuses_an_unknown_one(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hit_platform.cli", "generate", "--out", str(tmp_path / "landing"),
                               "--songs", "800", "--countries", "3", "--history-days", "6", "--increments", "0",
                               *args], capture_output=True, text=True, env={**os.environ, "HIT_WAREHOUSE": str(tmp_path)})

    done = run("--world", "idiosyncratic")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "generator" / "manifest.json").read_text())
    assert manifest["config"]["world_name"] == "idiosyncratic"
    assert oracle_from_manifest(manifest).countries == tuple(COUNTRIES[:3])
    refused = run("--world", "jazz")
    assert refused.returncode == 2 and "invalid choice: 'jazz'" in refused.stderr, refused.stderr


def test_nothing_the_model_sees_imports_the_generator():
    for folder in ("domain", "steps", "adapters", "defs", "serving"):
        for path in (ROOT / "hit_platform" / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                assert not any(n.startswith("hit_platform.generator") for n in names), path
