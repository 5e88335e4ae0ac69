"""The writers' building blocks: fast CSV rendering and the parallel gzip stream."""

from __future__ import annotations

import gzip
from datetime import date

import numpy as np
import pyarrow.csv
import pytest

from hit_platform.domain.schema import COLUMN_NAMES
from hit_platform.generator.csv_render import FastCsvRenderer, header_line, lines_bytes, render_lines
from hit_platform.generator.gzip_stream import BLOCK_SIZE, ParallelGzipWriter
from hit_platform.generator.rows import RowBlock
from hit_platform.generator.songs import make_catalogue
from hit_platform.generator.table import DumpColumns


@pytest.fixture(scope="module")
def columns() -> DumpColumns:
    catalogue = make_catalogue(3, 300)
    missing = np.zeros(300, dtype=bool)
    missing[[5, 7]] = True
    release = np.arange(300) - 400
    precision = np.arange(300) % 3  # day, month and year precision
    return DumpColumns(catalogue, release, precision, date(2024, 1, 1), ("", "AR", "US"), missing)


def _block(n: int = 600) -> RowBlock:
    rng = np.random.default_rng(0)
    return RowBlock(
        song=rng.integers(0, 300, n).astype(np.int32), chart=rng.integers(0, 3, n).astype(np.int32),
        day=np.sort(rng.integers(0, 5, n)).astype(np.int32), daily_rank=rng.integers(1, 51, n).astype(np.int32),
        daily_movement=rng.integers(-49, 50, n).astype(np.int32),
        weekly_movement=rng.integers(-49, 50, n).astype(np.int32),
        popularity=rng.integers(0, 101, n).astype(np.int32))


@pytest.mark.parametrize("quote_all", [False, True], ids=["minimal", "kaggle"])
def test_fast_csv_rows_equal_the_generic_rendering(columns, quote_all):
    block = _block()
    block.overrides = {"danceability": {3: 1.7}, "daily_rank": {10: "3rd", 11: 51}, "country": {12: "XX"},
                       "spotify_id": {13: None}, "is_explicit": {14: "maybe"}, "snapshot_date": {15: "not-a-date"}}
    fast = FastCsvRenderer(columns, quote_all).lines(block)
    generic = render_lines(columns.table(block), quote_all)
    assert fast.to_pylist() == generic.to_pylist()
    text = header_line(quote_all=quote_all) + bytes(lines_bytes(fast))
    parsed = pyarrow.csv.read_csv(pyarrow.py_buffer(text), convert_options=pyarrow.csv.ConvertOptions(
        column_types={c: pyarrow.string() for c in COLUMN_NAMES}, strings_can_be_null=True))
    assert parsed.num_rows == len(block) and parsed.column_names == list(COLUMN_NAMES)
    assert parsed["daily_rank"][10].as_py() == "3rd" and parsed["country"][12].as_py() == "XX"
    assert parsed["spotify_id"][13].as_py() is None and parsed["is_explicit"][14].as_py() == "maybe"


def test_names_with_commas_and_quotes_are_quoted(columns):
    text = bytes(lines_bytes(FastCsvRenderer(columns).lines(_block())))
    parsed = pyarrow.csv.read_csv(pyarrow.py_buffer(header_line() + text))
    artists = [a for a in parsed["artists"].to_pylist() if a]
    assert any(", " in a for a in artists)  # multi-artist songs survive the round trip
    assert len(parsed.column_names) == 25


@pytest.mark.parametrize("sizes", [[10], [BLOCK_SIZE - 1, 2], [3 * BLOCK_SIZE + 5], [1] * 50])
def test_parallel_gzip_is_a_plain_gzip_independent_of_write_sizes(tmp_path, sizes):
    rng = np.random.default_rng(1)
    data = bytes(rng.integers(97, 123, sum(sizes), dtype=np.uint8))
    one, many = tmp_path / "one.gz", tmp_path / "many.gz"
    w = ParallelGzipWriter(one)
    w.write(data)
    w.close()
    w = ParallelGzipWriter(many)
    pos = 0
    for s in sizes:
        w.write(data[pos: pos + s])
        pos += s
    w.close()
    assert one.read_bytes() == many.read_bytes()
    assert gzip.decompress(one.read_bytes()) == data


def test_parallel_gzip_of_nothing_is_a_valid_empty_gzip(tmp_path):
    path = tmp_path / "empty.gz"
    w = ParallelGzipWriter(path)
    w.close()
    assert gzip.decompress(path.read_bytes()) == b""


def test_kaggle_style_quotes_every_field_and_writes_nulls_as_empty_quotes(columns):
    lines = FastCsvRenderer(columns, quote_all=True).lines(_block()).to_pylist()
    assert header_line(quote_all=True).startswith(b'"spotify_id","name","artists","daily_rank"')
    for line in lines[:50]:
        assert line.startswith('"') and line.endswith('"\n')
    global_rows = [line for line in lines if line.split('","')[6] == ""]  # country: the global chart
    assert global_rows
    missing = [line for line in lines if '"","","",""' in line]  # a song without audio features
    assert missing
    dates = {line.split('","')[12] for line in lines}
    assert {len(d) for d in dates} == {4, 7, 10}  # release dates at year, month and day precision
