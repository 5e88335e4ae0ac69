"""The Arrow form of /predict/batch without Ray: the same songs accepted and refused as in JSON."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS
from hit_platform.serving import arrow_batch
from hit_platform.serving.http import parse_body
from hit_platform.domain.probabilities import answered
from hit_platform.serving.predictor import features_of, top_k
from hit_platform.serving.schemas import ApiError, batch_model
from pydantic import TypeAdapter
from hit_platform_tests.support.serving import song


def stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def table_of(songs: list[dict], **override) -> pa.Table:
    cols = {c: [s.get(c) for s in songs] for c in songs[0]}
    cols.update(override)
    return pa.table(cols)


def refusal(body: bytes, max_batch: int = 100) -> ApiError:
    with pytest.raises(ApiError) as info:
        arrow_batch.read_songs(body, max_batch)
    return info.value


SONGS = [song(energy=e, is_explicit=bool(i % 2), spotify_id=f"id{i}") for i, e in enumerate((0.1, 0.5, 0.9))]


def test_arrow_songs_give_the_json_features_and_identifiers():
    X, extras = arrow_batch.read_songs(stream(table_of(SONGS)), 100)
    parsed = parse_body(json.dumps({"songs": SONGS}).encode(), TypeAdapter(batch_model(100)))["songs"]
    assert np.array_equal(X, features_of(parsed))
    assert [e[0] for e in extras] == ["id0", "id1", "id2"] and all(e[1:] == (None, None, None) for e in extras)


def test_integers_may_come_as_whole_floats_as_json_schema_has_it():
    t = table_of(SONGS, key=pa.array([5.0, -1.0, 11.0]), time_signature=pa.array([0.0, 1.0, 4.0], pa.float32()))
    X, _ = arrow_batch.read_songs(stream(t), 100)
    assert X[:, FEATURE_COLUMNS.index("key")].tolist() == [5.0, -1.0, 11.0]
    assert X[:, FEATURE_COLUMNS.index("time_signature")].tolist() == [0.0, 1.0, 4.0]


def test_narrower_numeric_types_are_accepted():
    t = table_of(SONGS, energy=pa.array([0.1, 0.5, 0.9], pa.float32()), key=pa.array([5, 5, 5], pa.int8()),
                 tempo=pa.array([120, 120, 120], pa.int32()))  # an integer for a DOUBLE, as JSON allows
    X, _ = arrow_batch.read_songs(stream(t), 100)
    assert X[:, FEATURE_COLUMNS.index("tempo")].tolist() == [120.0] * 3


@pytest.mark.parametrize("override, status, loc", [
    ({"energy": pa.array([0.1, 1.5, 0.2])}, 422, ("body", "songs", 1, "energy")),
    ({"loudness": pa.array([-5.0, -5.0, -61.0])}, 422, ("body", "songs", 2, "loudness")),
    ({"energy": pa.array([0.1, float("nan"), 0.2])}, 422, ("body", "songs", 1, "energy")),
    ({"energy": pa.array([0.1, None, 0.2], pa.float64())}, 422, ("body", "songs", 1, "energy")),
    ({"energy": pa.array(["high", "low", "mid"])}, 422, ("body", "energy")),
    ({"key": pa.array([1.0, 2.5, 1.0])}, 422, ("body", "songs", 1, "key")),  # an integer has no fraction
    ({"key": pa.array(["1", "2", "3"])}, 422, ("body", "key")),
    ({"is_explicit": pa.array([1, 0, 1])}, 422, ("body", "is_explicit")),
    ({"popularity": pa.array([80, 80, 80])}, 422, ("body", "popularity")),
    ({"spotify_id": pa.array([1, 2, 3])}, 422, ("body", "spotify_id")),
    ({"name": pa.array(["x" * 1001, "a", "b"])}, 422, ("body", "songs", 0, "name")),
])
def test_bad_columns_are_refused_naming_field_and_row(override, status, loc):
    err = refusal(stream(table_of(SONGS, **override)))
    assert err.status == status and loc in [tuple(d["loc"]) for d in err.detail], err.detail


def test_missing_column_empty_batch_too_many_songs_and_garbage():
    no_tempo = table_of(SONGS).drop_columns(["tempo"])
    assert ("body", "tempo") in [tuple(d["loc"]) for d in refusal(stream(no_tempo)).detail]
    empty = refusal(stream(table_of(SONGS).slice(0, 0)))
    assert empty.status == 422 and empty.detail[0]["loc"] == ["body", "songs"]
    assert refusal(stream(table_of(SONGS)), max_batch=2).status == 413
    garbage = refusal(b'{"songs": []}')
    assert garbage.status == 400 and "Arrow" in garbage.detail[0]["msg"]


def test_answer_stream_holds_probabilities_top_countries_and_ids():
    P = answered(np.random.default_rng(0).random((4, len(COUNTRIES))))
    idx = top_k(P, 3)[0]
    out = pa.ipc.open_stream(arrow_batch.predictions_stream(P, idx, "req-1", "7")).read_all()
    assert out.schema.metadata == {b"request_id": b"req-1", b"model_version": b"7"}
    assert out.column_names[:len(COUNTRIES)] == list(COUNTRIES) and out.num_rows == 4
    assert np.array_equal(np.column_stack([out.column(c).to_numpy() for c in COUNTRIES]), P)
    top = out.column("top_countries").to_pylist()
    for row, t in zip(range(4), top):
        assert [x["country"] for x in t] == [COUNTRIES[i] for i in idx[row]]
        assert [x["probability"] for x in t] == [P[row, i] for i in idx[row]]


def test_media_types():
    assert arrow_batch.is_arrow("application/vnd.apache.arrow.stream; charset=binary")
    assert arrow_batch.wants_arrow("application/json;q=0.5, application/vnd.apache.arrow.stream")
    assert not arrow_batch.wants_arrow("application/json") and not arrow_batch.wants_arrow("")


def compressed(table: pa.Table, codec: str = "zstd", max_chunksize: int | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=codec)) as w:
        w.write_table(table, max_chunksize=max_chunksize)
    return sink.getvalue().to_pybytes()


def test_compressed_songs_are_read_as_uncompressed_ones():
    for codec in ("lz4", "zstd"):
        X, extras = arrow_batch.read_songs(compressed(table_of(SONGS), codec), 100)
        assert np.array_equal(X, arrow_batch.read_songs(stream(table_of(SONGS)), 100)[0]) and extras[0][0] == "id0"


def test_a_stream_whose_batches_together_hold_too_many_songs_is_refused():
    many = compressed(pa.concat_tables([table_of(SONGS)] * 40), max_chunksize=3)  # 40 batches of 3 songs
    err = refusal(many, max_batch=100)
    assert err.status == 413 and err.detail[0]["loc"] == ["body", "songs"], err.detail


def test_a_lying_or_cut_stream_is_a_400():
    body = stream(table_of(SONGS))
    assert refusal(body[: len(body) - 24]).status == 400


# A compressed Arrow body is read in a fresh process that prints its status and the most memory Arrow held.
_PEAK = """
import sys, pyarrow as pa
from hit_platform.serving import arrow_batch
from hit_platform.serving.schemas import ApiError
body = open(sys.argv[1], "rb").read()
try:
    arrow_batch.read_songs(body, 100)
    status = 200
except ApiError as exc:
    status = exc.status
print(status, pa.default_memory_pool().max_memory())
"""


@pytest.mark.parametrize("bomb", ["rows", "bytes"])
def test_a_small_compressed_stream_that_declares_too_much_is_refused_before_it_is_decompressed(bomb, tmp_path):
    """Issue 27, hole 8: Arrow batch buffers were decompressed before their row count was checked. A few KB of
    ZSTD declaring 4 million songs (32 MB per column), or one song whose name takes 64 MiB: 413, and the
    reading process never holds more than a fraction of what the stream declares."""
    import subprocess
    import sys

    if bomb == "rows":  # 4M songs of one column: 32 MB decompressed
        table = pa.table({"energy": pa.array(np.zeros(4_000_000))})
    else:  # one song whose name is 64 MiB (its buffer alone, far past the body limit of 100 songs)
        table = table_of(SONGS[:1], name=pa.array(["x" * (64 << 20)]))
    path = tmp_path / "bomb.arrows"
    path.write_bytes(compressed(table))
    assert path.stat().st_size < 64 * 1024
    out = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    status, peak = map(int, out.stdout.split())
    assert status == 413, (bomb, status)
    assert peak < 4 << 20, f"{bomb}: Arrow held {peak:,} bytes reading a {path.stat().st_size:,}-byte body"
