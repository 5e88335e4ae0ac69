"""A deterministic gzip file compressed on several threads.

gzip is the bottleneck of writing a large `.csv.gz` dump. The text is cut
into fixed 4 MiB blocks that worker threads compress independently with
Arrow's gzip codec (which, unlike this Python's zlib module, runs in parallel
threads); each block becomes one gzip member and the members are written in
order. A gzip file may be a series of members (RFC 1952, 2.2): gzip/zcat,
Python's gzip module, pandas, pyarrow and DuckDB all read it as one stream.

Deterministic: blocks are cut at fixed offsets of the uncompressed text, never
where a caller's write happens to end, and the members carry no time or name,
so equal text gives equal bytes whatever the chunking or thread timing.
"""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa

BLOCK_SIZE = 4 << 20        # uncompressed bytes per gzip member
DEFAULT_LEVEL = 1           # fastest: a 10M-row dump is ~2 GB of text
MAX_IN_FLIGHT_BLOCKS = 16   # 64 MiB of text queued, so workers stay busy while the caller renders


def _gzip_member(block: bytes, level: int) -> bytes:
    """One complete gzip member (header, deflate stream, crc32/size trailer)."""
    codec = pa.Codec("gzip", compression_level=level)  # one per call: codecs are not shared across threads
    return codec.compress(block, asbytes=True)


class HashingFile:
    """A binary file that counts and sha256-hashes what is written to it."""

    def __init__(self, path: Path):
        self._file = open(path, "wb")
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data) -> None:
        self._file.write(data)
        self.sha256.update(data)
        self.bytes += len(data)

    def close(self) -> None:
        self._file.close()

    abort = close


class ParallelGzipWriter:
    """Write text into a gzip file; compression runs on `workers` threads."""

    def __init__(self, path: Path, level: int = DEFAULT_LEVEL, workers: int = 2):
        self.out = HashingFile(path)
        self.level = level
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gzip")
        self._in_flight: deque[Future] = deque()
        self._block = bytearray()
        self._members = 0

    @property
    def sha256(self):
        """sha256 of the compressed bytes written so far."""
        return self.out.sha256

    @property
    def bytes(self) -> int:
        """Compressed bytes written so far."""
        return self.out.bytes

    def write(self, data) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            take = BLOCK_SIZE - len(self._block)
            self._block += view[:take]
            view = view[take:]
            if len(self._block) == BLOCK_SIZE:
                self._submit(bytes(self._block))
                self._block = bytearray()

    def _submit(self, block: bytes) -> None:
        self._in_flight.append(self._pool.submit(_gzip_member, block, self.level))
        self._members += 1
        while len(self._in_flight) > MAX_IN_FLIGHT_BLOCKS:
            self.out.write(self._in_flight.popleft().result())

    def close(self) -> None:
        """Compress what is left and write the remaining members in order."""
        try:
            if self._block or self._members == 0:  # an empty text is still one (empty) member
                self._submit(bytes(self._block))
                self._block = bytearray()
            while self._in_flight:
                self.out.write(self._in_flight.popleft().result())
        finally:
            self._pool.shutdown(wait=True)
            self.out.close()

    def abort(self) -> None:
        for fut in self._in_flight:
            fut.cancel()
        self._pool.shutdown(wait=True)
        self.out.close()
