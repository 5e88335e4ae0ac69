"""Issue 27, hole 8: no body is trusted for its size, however it is sent. A real serving process (Ray Serve
behind its HAProxy ingress on 127.0.0.1) gets bodies far past its limit as `Transfer-Encoding: chunked`
(no Content-Length to refuse on), on the lean /predict path, FastAPI's route and /predict/batch (JSON and
Arrow): each is answered 413 in the API's error shape, and no replica's memory grows by more than the limit.
The drill prints the figures (status, each replica's RSS before, at its peak and after)."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import psutil
import pytest

from hit_platform.serving import process
from hit_platform_tests.support.load import replica_pids
from hit_platform_tests.support.serving import promote_champion, serving_env, song

pytestmark = pytest.mark.slow

MAX_BATCH = 2_000  # a body limit of 2,000 * 4,096 + 65,536 = 8,257,536 bytes
MiB = 1 << 20
ARROW = "application/vnd.apache.arrow.stream"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    settings, config = serving_env(tmp_path_factory.mktemp("limits"), max_batch=MAX_BATCH)
    promote_champion(settings, seed=1)
    endpoint = process.start(settings, config)
    try:
        yield settings, config, endpoint
    finally:
        process.stop(settings, config)


def post_chunked(config, path: str, total: int, ctype: str = "application/json", chunk: int = 256 * 1024,
                 timeout_s: float = 60) -> tuple[int, dict, int]:
    """POST `total` bytes of JSON whitespace as a chunked body, as a client that reads the answer while it
    sends (and stops sending once answered) would. Returns (status, JSON body, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", config.port), timeout=timeout_s)
    answer, done = bytearray(), threading.Event()

    def read():
        try:
            while piece := sock.recv(65536):
                answer.extend(piece)
                head, sep, body = bytes(answer).partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), None)
                if sep and length is not None and len(body) >= length:
                    break
        except OSError:
            pass
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent = 0
    try:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        block = b" " * chunk
        while sent < total and not done.is_set():
            sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
            sent += len(block)
        if not done.is_set():
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server answered and closed while we were still sending: read what it said
    assert done.wait(timeout_s), f"no whole answer within {timeout_s} s; got {bytes(answer)[:300]!r}"
    sock.close()
    head, _, body = bytes(answer).partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body), sent


class RssWatch:
    """Each replica's RSS before, at its highest while watched (sampled every 10 ms), and after."""

    def __init__(self, pids: list[int]):
        self.procs = {pid: psutil.Process(pid) for pid in pids}
        self.before = {pid: p.memory_info().rss for pid, p in self.procs.items()}
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            for pid, p in self.procs.items():
                self.peak[pid] = max(self.peak[pid], p.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        time.sleep(0.3)  # a last look after the answer
        self._stop.set()
        self._thread.join()
        self.after = {pid: p.memory_info().rss for pid, p in self.procs.items()}

    def growth(self) -> int:
        return max(self.peak[pid] - self.before[pid] for pid in self.procs)

    def figures(self) -> str:
        return "; ".join(f"replica {pid}: RSS {self.before[pid] / MiB:.0f} MiB before, {self.peak[pid] / MiB:.0f} "
                         f"at peak, {self.after[pid] / MiB:.0f} after" for pid in self.procs)


def test_a_chunked_predict_body_many_times_the_limit_is_refused_413_and_never_held(app):
    """The drill: 128 MiB (16 times the limit) of chunked body to the lean /predict path, which never
    checked a size (before this, it read it all and answered 400)."""
    settings, config, endpoint = app
    limit = config.max_body_bytes()
    pids = replica_pids(json.loads(process.pid_file(settings, config).read_text())["pid"])
    assert len(pids) == config.replicas, pids
    with RssWatch(pids) as rss:
        t0 = time.monotonic()
        status, body, sent = post_chunked(config, "/predict", 128 * MiB)
        seconds = time.monotonic() - t0
    print(f"\nchunked /predict of 128 MiB against a limit of {limit:,} bytes: HTTP {status} after "
          f"{sent / MiB:.1f} MiB sent, {seconds:.2f} s; {rss.figures()}")
    assert status == 413, body
    assert body["detail"][0]["type"] == "too_large" and body["detail"][0]["loc"] == ["body"], body
    assert "HIT_SERVE_MAX_BATCH" in body["detail"][0]["msg"] and body["request_id"], body
    assert rss.growth() < limit + 32 * MiB, rss.figures()
    with httpx.Client(base_url=endpoint, timeout=30) as client:  # the replicas answer on as before
        assert client.post("/predict", json=song()).status_code == 200


@pytest.mark.parametrize("path, ctype", [("/predict?top_k=3&via=fastapi", "application/json"),
                                         ("/predict/batch", "application/json"),
                                         ("/predict/batch", ARROW)])
def test_every_route_refuses_a_chunked_body_past_the_limit(app, path, ctype):
    """FastAPI's /predict route (a query the lean path leaves to it) and /predict/batch, JSON and Arrow."""
    _, config, _ = app
    status, body, _ = post_chunked(config, path, 4 * config.max_body_bytes(), ctype=ctype)
    assert status == 413, (path, ctype, body)
    assert body["detail"][0]["type"] == "too_large" and body["request_id"], body


def test_a_chunked_body_within_the_limit_is_answered(app):
    """Chunked is a legitimate encoding: a song sent in small chunks is answered as any other."""
    _, config, endpoint = app
    payload = json.dumps({"songs": [song()] * 3}).encode()
    with httpx.Client(base_url=endpoint, timeout=30) as client:
        r = client.post("/predict/batch", content=iter([payload[:10], payload[10:]]),
                        headers={"content-type": "application/json"})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3, r.text[:300]
