"""`/predict/batch` in Apache Arrow: columns in, columns out, validated with numpy instead of per song.

For batch scoring (a lake extract, a DataFrame) JSON costs more than the
model: 10,000 songs are 3.9 MB of JSON in and 15.5 MB out, parsed and printed
per value. The same request as an Arrow IPC stream (`Content-Type:
application/vnd.apache.arrow.stream`) is one column per field, checked with
one vectorized comparison per column; an `Accept` of the same type answers
one Arrow stream of 72 probability columns plus `top_countries`.

The rules are the JSON Song's (`schemas.py`), so either format refuses the
same songs: every model input required and non-null; DOUBLE columns numeric
and finite, INTEGER columns integer-typed, `is_explicit` boolean; ranges of
`hit_platform.domain.schema`; the optional identifiers strings within their length;
no unknown columns. Errors use the JSON shape and locations
(`["body", "songs", row, field]`), so a client handles both alike.

A stream's buffers may be compressed (LZ4, ZSTD), so a small body can
declare gigabytes. Before anything is decoded, `_check_declared` reads each
message's metadata: the rows of all its batches together at most
HIT_SERVE_MAX_BATCH (else 413), and the bytes its buffers take once
decompressed at most the body limit (`ServeConfig.max_body_bytes`, else 413).
"""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.features import FEATURE_COLUMNS, feature_range
from hit_platform.domain.schema import COLUMNS
from hit_platform.serving.schemas import _EXTRA_MAX_LENGTH, SONG_EXTRAS, ApiError
from hit_platform.settings import ServeConfig

ARROW_STREAM = "application/vnd.apache.arrow.stream"
_MAX_ROWS_NAMED = 5  # bad rows named per field in one answer
_CODES = pa.array(COUNTRIES, pa.string())


def is_arrow(media_type: str) -> bool:
    return media_type.split(";", 1)[0].strip().lower() == ARROW_STREAM


def wants_arrow(accept: str) -> bool:
    return any(is_arrow(part) for part in accept.split(","))


def read_songs(body: bytes, max_batch: int, max_bytes: int | None = None) -> tuple[np.ndarray, list[tuple]]:
    """(n, 14) float64 features in FEATURE_COLUMNS order and per-song identifiers, from an Arrow stream.

    Raises ApiError: 400 (not an Arrow stream), 413 (more than max_batch songs, or buffers that take more
    than `max_bytes` decompressed: by default the body limit of a server with this max_batch), 422 (a field).
    """
    if max_bytes is None:
        max_bytes = ServeConfig.model_construct(max_batch=max_batch).max_body_bytes()
    try:
        _check_declared(pa.py_buffer(body), max_batch, max_bytes)
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, struct.error) as exc:
        raise ApiError(400, [{"loc": ["body"], "type": "arrow_invalid",
                              "msg": f"not an Arrow IPC stream: {exc}"}]) from None
    if table.num_rows > max_batch:
        raise ApiError(413, [{"loc": ["body", "songs"], "type": "too_long",
                              "msg": f"at most {max_batch} songs per request (HIT_SERVE_MAX_BATCH), "
                                     f"got {table.num_rows}"}])
    errors: list[dict] = []
    names = table.schema.names
    for name in names:
        if name not in FEATURE_COLUMNS and name not in SONG_EXTRAS:
            errors.append({"loc": ["body", name], "type": "extra_forbidden", "msg": "Extra inputs are not permitted"})
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        errors.append({"loc": ["body", dup[0]], "type": "duplicate", "msg": f"columns sent twice: {dup}"})
    if table.num_rows == 0:
        errors.append({"loc": ["body", "songs"], "type": "too_short",
                       "msg": "List should have at least 1 item after validation, not 0"})
    X = np.empty((table.num_rows, len(FEATURE_COLUMNS)), dtype=np.float64)
    for j, name in enumerate(FEATURE_COLUMNS):
        if name not in names:
            errors.append({"loc": ["body", name], "type": "missing", "msg": "Field required"})
            continue
        col = table.column(name)
        errors += _check_feature(name, col)
        if not errors:
            X[:, j] = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    extras = []
    for name in SONG_EXTRAS:
        if name in names:
            col = table.column(name)
            errors += _check_extra(name, col)
            extras.append(col.to_pylist() if not errors else None)
        else:
            extras.append(None)
    if errors:
        raise ApiError(422, errors[:50])
    blank = [None] * table.num_rows
    return X, list(zip(*[e if e is not None else blank for e in extras]))


def _check_declared(body: pa.Buffer, max_batch: int, max_bytes: int) -> None:
    """What the stream's messages declare, read from their metadata before any buffer is decoded: 413 when
    its batches hold more than `max_batch` rows together or their buffers more than `max_bytes` once
    decompressed; 400 when a buffer lies outside its message (pa.ArrowInvalid, as Arrow would say)."""
    rows = decoded = 0
    for message in pa.ipc.MessageReader.open_stream(body):
        meta = message.metadata
        header_type, header = _Flat(meta, _Flat.root(meta)).union(1, 2)
        if header_type == _DICTIONARY_BATCH and header is not None:
            header = header.table(1)  # its data: a record batch of the dictionary's values
        elif header_type != _RECORD_BATCH or header is None:
            continue  # the schema (no buffers), or what Arrow's own reader refuses
        if header_type == _RECORD_BATCH:
            rows += header.scalar(0, "<q")
        decoded += _decoded_bytes(header, message.body, compressed=header.table(3) is not None)
        if rows > max_batch:
            raise ApiError(413, [{"loc": ["body", "songs"], "type": "too_long",
                                  "msg": f"at most {max_batch} songs per request (HIT_SERVE_MAX_BATCH), "
                                         f"the stream declares {rows} or more"}])
        if decoded > max_bytes:
            raise ApiError(413, [{"loc": ["body"], "type": "too_large",
                                  "msg": f"Arrow buffers of {decoded} bytes or more once decompressed, over "
                                         f"{max_bytes} bytes (HIT_SERVE_MAX_BATCH={max_batch} songs)"}])


_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3  # Arrow's MessageHeader union


def _decoded_bytes(batch: "_Flat", body: pa.Buffer | None, *, compressed: bool) -> int:
    """Bytes a record batch's buffers take decoded: their lengths, or for a compressed body the length each
    one declares in its first 8 bytes (what Arrow allocates to decompress it; -1: stored as is)."""
    view = memoryview(body) if body is not None else memoryview(b"")
    total = 0
    for offset, length in batch.structs(2, "<qq"):
        if offset < 0 or length < 0 or offset + length > len(view):
            raise pa.ArrowInvalid(f"buffer at {offset} of {length} bytes outside a message body of {len(view)}")
        if not compressed or length == 0:
            total += length
        elif length < 8:
            raise pa.ArrowInvalid(f"compressed buffer of {length} bytes has no length prefix")
        else:
            declared = struct.unpack_from("<q", view, offset)[0]
            total += length - 8 if declared == -1 else max(declared, 0)
    return total


class _Flat:
    """Just enough of a FlatBuffers reader for Arrow's Message metadata (Arrow's Message.fbs): a table's
    scalar, sub-table, union and vector-of-structs fields. Arrow has verified the buffer; every read is
    still bounds-checked (struct.error)."""

    def __init__(self, buf, pos: int):
        self.buf, self.pos = memoryview(buf), pos
        self.vtable = pos - self._at("<i", pos)
        self.vtable_size = self._at("<H", self.vtable)

    @staticmethod
    def root(buf) -> int:
        return struct.unpack_from("<I", memoryview(buf), 0)[0]

    def _at(self, fmt: str, pos: int):
        if pos < 0:
            raise struct.error(f"offset {pos} before the metadata")
        return struct.unpack_from(fmt, self.buf, pos)[0]

    def _field(self, i: int) -> int:
        slot = 4 + 2 * i
        return self._at("<H", self.vtable + slot) if slot < self.vtable_size else 0

    def scalar(self, i: int, fmt: str, default: int = 0) -> int:
        off = self._field(i)
        return self._at(fmt, self.pos + off) if off else default

    def table(self, i: int) -> "_Flat | None":
        off = self._field(i)
        if not off:
            return None
        at = self.pos + off
        return _Flat(self.buf, at + self._at("<I", at))

    def union(self, type_field: int, value_field: int) -> tuple[int, "_Flat | None"]:
        return self.scalar(type_field, "<B"), self.table(value_field)

    def structs(self, i: int, fmt: str) -> list[tuple]:
        off = self._field(i)
        if not off:
            return []
        at = self.pos + off
        start = at + self._at("<I", at)
        n, size = self._at("<I", start), struct.calcsize(fmt)
        if start + 4 + n * size > len(self.buf):
            raise struct.error(f"vector of {n} items past the metadata's end")
        return [struct.unpack_from(fmt, self.buf, start + 4 + k * size) for k in range(n)]


def _rows(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask)[:_MAX_ROWS_NAMED].tolist()


def _check_feature(name: str, col: pa.ChunkedArray) -> list[dict]:
    t, sql_type = col.type, COLUMNS[name].sql_type
    if name == "is_explicit":
        ok, expected = pa.types.is_boolean(t), "bool_type"
    elif sql_type == "DOUBLE":
        ok, expected = pa.types.is_integer(t) or pa.types.is_floating(t), "float_type"
    else:  # an integer, as JSON Schema has it: a float column is fine where every value is whole
        ok, expected = pa.types.is_integer(t) or pa.types.is_floating(t), "int_type"
    if not ok:
        return [{"loc": ["body", name], "type": expected, "msg": f"column of type {t} is not {expected[:-5]}"}]
    out = []
    if col.null_count:
        nulls = col.is_null().to_numpy(zero_copy_only=False)
        out += [{"loc": ["body", "songs", i, name], "type": "missing", "msg": "Field required (null)"}
                for i in _rows(nulls)]
    if name == "is_explicit":
        return out
    v = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    valid = np.ones(len(v), bool) if not col.null_count else ~col.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(t):
        bad = ~np.isfinite(v) & valid
        out += [{"loc": ["body", "songs", i, name], "type": "finite_number",
                 "msg": "Input should be a finite number"} for i in _rows(bad)]
        valid &= np.isfinite(v)
        if sql_type != "DOUBLE":
            bad = (np.mod(v, 1.0, where=valid, out=np.zeros_like(v)) != 0) & valid
            out += [{"loc": ["body", "songs", i, name], "type": "int_from_float", "input": float(v[i]),
                     "msg": "Input should be a valid integer, got a number with a fractional part"}
                    for i in _rows(bad)]
            valid &= ~bad
    lo, hi = feature_range(name)
    for bound, op, word in ((lo, np.less, "greater_than_equal"), (hi, np.greater, "less_than_equal")):
        if bound is None:
            continue
        with np.errstate(invalid="ignore"):
            bad = op(v, bound) & valid
        sign = ">=" if op is np.less else "<="
        out += [{"loc": ["body", "songs", i, name], "type": word, "input": float(v[i]),
                 "msg": f"Input should be {'greater' if sign == '>=' else 'less'} than or equal to {bound}"}
                for i in _rows(bad)]
    return out


def _check_extra(name: str, col: pa.ChunkedArray) -> list[dict]:
    t = col.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)):
        return [{"loc": ["body", name], "type": "string_type", "msg": f"column of type {t} is not string"}]
    if pa.types.is_null(t):
        return []
    lengths = pc.fill_null(pc.utf8_length(col), 0).to_numpy(zero_copy_only=False)
    limit = _EXTRA_MAX_LENGTH[name]
    return [{"loc": ["body", "songs", i, name], "type": "string_too_long",
             "msg": f"String should have at most {limit} characters"} for i in _rows(lengths > limit)]


def predictions_stream(P: np.ndarray, top_idx: np.ndarray, request_id: str, model_version: str) -> bytes:
    """The batch answer as one Arrow IPC stream: a float64 column per country (the answered
    probabilities), `top_countries` (list of {country, probability}, most likely first), and the
    request id and model version in the schema metadata."""
    n, k = top_idx.shape
    top = pa.StructArray.from_arrays(
        [_CODES.take(pa.array(top_idx.ravel())), pa.array(np.take_along_axis(P, top_idx, axis=1).ravel())],
        names=["country", "probability"])
    top_countries = pa.ListArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), top)
    by_country = np.ascontiguousarray(P.T)  # one copy; each country's column is then a zero-copy view
    columns = [pa.array(by_country[j]) for j in range(P.shape[1])] + [top_countries]
    schema = pa.schema([(c, pa.float64()) for c in COUNTRIES] + [("top_countries", top_countries.type)],
                       metadata={"request_id": request_id, "model_version": model_version})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(pa.record_batch(columns, schema=schema))
    return sink.getvalue().to_pybytes()
