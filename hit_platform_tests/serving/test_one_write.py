"""A replica's death cuts no answer in half: the status line, headers and body leave in one write.

A replica killed between writing an answer's head and its body leaves the client a cut response that no
proxy can retry (the ingress retries only a request that got nothing back). Here the real replica (its
class, app and journal, no Ray) runs under the HTTP server Serve runs it with behind HAProxy (uvicorn, as
`ray.serve._private.http_util.start_asgi_http_server` configures it), and the process is killed with
SIGKILL the moment it has made its first write of an answer to a client's socket.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hit_platform.serving.inference_log import journal_files, read_segment
from hit_platform.serving.inference_log.journal import OPEN
from hit_platform_tests.support.serving import promote_champion, serving_env, song

pytestmark = pytest.mark.slow

KILLED_AFTER_ITS_FIRST_WRITE = """
import asyncio, json, os, signal, socket, sys
import uvicorn
from hit_platform.serving.replica import ModelReplica

replica = ModelReplica(json.loads(sys.argv[1]), json.loads(sys.argv[2]))
app = replica.__serve_build_asgi_app__()  # what Serve does once the constructor returns
sent = socket.socket.send

def send_then_die(self, data, *args):
    n = sent(self, data, *args)
    if bytes(data[:5]) == b"HTTP/":  # the first write of an answer: the replica is killed right after it
        os.kill(os.getpid(), signal.SIGKILL)
    return n

socket.socket.send = send_then_die
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
server = uvicorn.Server(uvicorn.Config(lambda: app, factory=True, lifespan="off", access_log=False,
                                       log_level=None, log_config=None))
server.install_signal_handlers = lambda: None
print("PORT", sock.getsockname()[1], flush=True)
asyncio.run(server.serve(sockets=[sock]))
"""


def post_raw(port: int, body: bytes, timeout: float = 60.0) -> bytes:
    """POST /predict over a plain socket; everything the server sent before its end (FIN or reset)."""
    request = (b"POST /predict HTTP/1.1\r\nhost: replica\r\ncontent-type: application/json\r\n"
               b"content-length: %d\r\n\r\n" % len(body)) + body
    got = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        try:
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
    return bytes(got)


def test_a_replica_killed_right_after_its_first_write_leaves_the_client_a_whole_answer(tmp_path: Path):
    settings, config = serving_env(tmp_path, log_committer="process", log_flush_seconds=60)
    version = promote_champion(settings, seed=3)
    err = tmp_path / "replica.err"
    with err.open("w") as stderr:
        child = subprocess.Popen([sys.executable, "-c", KILLED_AFTER_ITS_FIRST_WRITE,
                                  json.dumps(settings.dump_for_child(), default=str), config.model_dump_json()],
                                 stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=Path(__file__).parents[2])
    try:
        lines = iter(child.stdout.readline, "")
        port_line = next((line for line in lines if line.startswith("PORT ")), "")
        assert port_line, f"the replica did not start: {err.read_text()[-3000:]}"
        port = int(port_line.split()[1])
        deadline, raw = time.monotonic() + 60, b""
        while time.monotonic() < deadline:  # the server listens a moment after it printed its port
            try:
                raw = post_raw(port, json.dumps(song(spotify_id="one-write")).encode())
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        assert child.wait(timeout=60) == -9, "the replica was not killed after its first write"
    finally:
        if child.poll() is None:
            child.kill()
    head, _, body = raw.partition(b"\r\n\r\n")
    length = [int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
    assert head.startswith(b"HTTP/1.1 200") and length, raw[:300]
    assert len(body) == length[0], (f"the client got a cut answer: {len(head)} bytes of head and {len(body)} "
                                    f"of the {length[0]} body bytes it announced")
    answer = json.loads(body)
    assert answer["model_version"] == version
    # it was journaled before it left: the killed replica's open segment holds it
    [segment] = journal_files(config.journal(settings), (OPEN,))
    assert [e.request_id for e in read_segment(segment).entries] == [answer["request_id"]]
