"""The prediction answers as JSON bytes, written by numpy instead of per-value Python.

A batch of 10,000 songs answers 720,000 probabilities. Building dicts and
serializing them costs ~20x the model call; but every prediction object has
the same layout, so we fill a byte template: the probabilities are printed
with a fixed number of decimals (`DECIMALS`, 0.000000001 resolution), their
digits computed for all songs at once. The result is plain JSON
(`{"AE":0.123456789,...}`); `domain.probabilities.answered(P)` gives the exact values printed,
which the inference log stores.
"""

import json
from collections.abc import Sequence

import numpy as np

from hit_platform.domain.countries import COUNTRIES
from hit_platform.domain.probabilities import DECIMALS, answered
from hit_platform.serving.predictor import top_k

_SCALE = 10 ** DECIMALS
_WIDTH = 2 + DECIMALS  # "0." + digits
# "000".."999" packed in 4 bytes (the 4th is zero): one aligned gather per group of three digits
_DIGITS3 = np.array([list(f"{i:03d}".encode()) + [0] for i in range(1000)], dtype=np.uint8).view(np.uint32).ravel()
_CODES = np.array([list(c.encode()) for c in COUNTRIES], dtype=np.uint8)


def _numbers(P: np.ndarray) -> np.ndarray:
    """(n, m, _WIDTH) uint8: each value of P in [0, 1] as b"d.ddddddddd"."""
    q = np.rint(np.clip(P, 0.0, 1.0) * _SCALE).astype(np.int32)  # <= 10**9 fits
    whole = q >= _SCALE
    frac = q - whole.astype(np.int32) * _SCALE
    # one spare byte per number: each 4-byte group write spills into the next group's first byte
    out = np.empty((*P.shape, _WIDTH + 1), dtype=np.uint8)
    out[..., 0] = whole + ord("0")
    out[..., 1] = ord(".")
    for g in range(DECIMALS // 3):
        group = (frac // 10 ** (DECIMALS - 3 * (g + 1))) % 1000
        out[..., 2 + 3 * g:6 + 3 * g].view(np.uint32)[..., 0] = _DIGITS3[group]
    return out[..., :_WIDTH]


def _const(s: str, n: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(s.encode(), dtype=np.uint8), (n, len(s.encode())))


# ',"AE":' for every country; the block's first comma is dropped
_KEYS = np.array([list(f',"{c}":'.encode()) for c in COUNTRIES], dtype=np.uint8)
_TOP_OPEN, _TOP_MID = b',{"country":"', b'","probability":'


def _tails(P: np.ndarray, top_idx: np.ndarray, sep: str = "") -> np.ndarray:
    """(n, row_bytes) uint8: each prediction object of the rows of P after its head (`prediction_head`):
    `,"probabilities":{72},"top_countries":[k]}` listing the countries of `top_idx` (n, k), then `sep`.
    Built from slices of constant bytes and of the printed numbers (no per-value Python)."""
    n, k = P.shape[0], top_idx.shape[1]
    numbers = _numbers(np.concatenate([P, np.take_along_axis(P, top_idx, axis=1)], axis=1))  # (n, 72 + k, W)

    probs = np.empty((n, len(COUNTRIES), _KEYS.shape[1] + _WIDTH), dtype=np.uint8)
    probs[:, :, :_KEYS.shape[1]] = _KEYS
    probs[:, :, _KEYS.shape[1]:] = numbers[:, :len(COUNTRIES)]

    a, b = len(_TOP_OPEN), len(_TOP_OPEN) + 2 + len(_TOP_MID)
    top = np.empty((n, k, b + _WIDTH + 1), dtype=np.uint8)
    top[:, :, :a] = np.frombuffer(_TOP_OPEN, dtype=np.uint8)
    top[:, :, a:a + 2] = _CODES[top_idx]
    top[:, :, a + 2:b] = np.frombuffer(_TOP_MID, dtype=np.uint8)
    top[:, :, b:b + _WIDTH] = numbers[:, len(COUNTRIES):]
    top[:, :, -1] = ord("}")

    return np.concatenate([_const(',"probabilities":{', n), probs.reshape(n, -1)[:, 1:],
                           _const('},"top_countries":[', n), top.reshape(n, -1)[:, 1:], _const("]}" + sep, n)],
                          axis=1)


def prediction_head(request_id: str, model_version: str) -> bytes:
    """The start of a prediction object, up to its model version: what differs between requests."""
    return json.dumps({"request_id": request_id, "model_version": model_version})[:-1].encode()


def predictions_json(P: np.ndarray, top_idx: np.ndarray, request_id: str, model_version: str,
                     sep: str = "") -> np.ndarray:
    """(n, row_bytes) uint8: one prediction object per row of P, listing the countries of `top_idx` (n, k),
    each followed by `sep`: {"request_id", "model_version", "probabilities": {72}, "top_countries": [k]}."""
    head = np.frombuffer(prediction_head(request_id, model_version), dtype=np.uint8)
    return np.concatenate([np.broadcast_to(head, (P.shape[0], len(head))), _tails(P, top_idx, sep)], axis=1)


def prediction_bytes(P: np.ndarray, top_idx: np.ndarray, request_id: str, model_version: str) -> bytes:
    """The JSON answer of /predict: one prediction object (P has one row)."""
    return prediction_head(request_id, model_version) + _tails(P, top_idx)[0].tobytes()


def song_answers(P: np.ndarray, ks: Sequence[int]) -> list[tuple[np.ndarray, bytes]]:
    """Rows of raw probabilities P, each as /predict answers it with its own top_k `ks[i]`: the
    probabilities as printed, (1, 72), and the answer's bytes after `prediction_head`.

    One pass over the rows per distinct k, so a batch of concurrent requests is encoded at once
    (one song costs ~40 us of numpy calls, three cost about the same). Each row's bytes depend on
    that row alone: `answered`, `top_k` and the printing work row by row.
    """
    A = answered(P)
    out: list = [None] * len(ks)
    for k in sorted(set(ks)):
        rows = [i for i, x in enumerate(ks) if x == k] if len(ks) > 1 else [0]
        sub = A[rows]
        for i, tail in zip(rows, _tails(sub, top_k(sub, k)[0])):
            out[i] = (A[i:i + 1], tail.tobytes())
    return out


def batch_bytes(P: np.ndarray, top_idx: np.ndarray, request_id: str, model_version: str) -> bytes:
    """The JSON answer of /predict/batch: {"request_id", "model_version", "predictions": [...]}."""
    body = predictions_json(P, top_idx, request_id, model_version, sep=",").tobytes()[:-1]  # joined by ","
    return prediction_head(request_id, model_version) + b',"predictions":[' + body + b"]}"
