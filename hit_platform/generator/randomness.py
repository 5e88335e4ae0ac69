"""Deterministic randomness: named random streams and counter-based hashes.

Two kinds of randomness keep the generator reproducible *and* independent of
how the work is chunked:

* `stream(seed, "purpose", ...)` gives an independent numpy Generator per named
  purpose (catalogue, taste, labels of one chart, ...), so adding a draw in one
  place never shifts the numbers drawn in another.
* `hash_uniform(seed, "purpose", keys...)` maps integer keys (chart, day, song)
  to uniform numbers in [0, 1) with a stateless hash (splitmix64). Per-row
  noise comes from here, so a row's values do not depend on which chunk of
  days it was generated in.
"""

from __future__ import annotations

import zlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def purpose_code(purpose: str) -> int:
    """A stable 32-bit code for a purpose name (crc32 is stable across runs)."""
    return zlib.crc32(purpose.encode("utf-8"))


def stream(seed: int, purpose: str, *keys: int) -> np.random.Generator:
    """An independent random stream for `purpose` (and optional integer keys)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, purpose_code(purpose), *map(int, keys)])


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrap-around arithmetic is intended)."""
    x = (x ^ (x >> np.uint64(30))) * _MUL1
    x = (x ^ (x >> np.uint64(27))) * _MUL2
    return x ^ (x >> np.uint64(31))


def hash_uint64(seed: int, purpose: str, *keys: np.ndarray) -> np.ndarray:
    """A uint64 hash of broadcast integer key arrays, keyed by seed and purpose."""
    shape = np.broadcast_shapes(*(np.shape(k) for k in keys)) if keys else ()
    start = np.uint64((int(seed) * 0x100000001B3 + purpose_code(purpose)) & 0xFFFFFFFFFFFFFFFF)
    h = _mix(np.full(shape, start, dtype=np.uint64))
    with np.errstate(over="ignore"):
        for k in keys:
            h = _mix(h ^ (np.asarray(k).astype(np.int64).astype(np.uint64) + _GOLDEN))
    return h


def hash_uniform(seed: int, purpose: str, *keys: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from a stateless hash of the keys."""
    return (hash_uint64(seed, purpose, *keys) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def hash_logistic(seed: int, purpose: str, *keys: np.ndarray) -> np.ndarray:
    """Standard-logistic noise (bell-shaped, sd ~1.8) from a stateless hash."""
    u = hash_uniform(seed, purpose, *keys)
    u = np.clip(u, 1e-12, 1 - 1e-12)
    return np.log(u / (1.0 - u))
