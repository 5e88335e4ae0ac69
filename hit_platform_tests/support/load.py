"""Load from a client no one here wrote (wrk), and the processes a drill kills.

Used by the kill drills in the tests and by bench/bench_serving.py. With `record=` a wrk Lua
script writes the status and request id of every response it got, so a drill can check each
answered request against the inference log.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil

_SCRIPT = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
"""
# Several bodies in turn (a list of songs): requests formatted once per thread, then cycled.
_BODIES = """local bodies = {{{bodies}}}
local requests, k = {{}}, 0
function request()
  if #requests == 0 then
    for j, b in ipairs(bodies) do requests[j] = wrk.format(nil, nil, nil, b) end
  end
  k = k % #requests + 1
  return requests[k]
end
"""
_RECORDING = """local counter = 0
function setup(thread)
  thread:set("n", counter)
  counter = counter + 1
end
function init(args)
  out = io.open({prefix} .. n, "w")
end
function response(status, headers, body)
  local id = string.match(body, '"request_id":%s*"([^"]+)"') or "-"
  out:write(status, " ", id, "\\n")
  out:flush()
end
"""


@dataclass
class WrkResult:
    rps: float
    p50: float
    p99: float
    requests: int  # responses wrk counted
    non2xx: int
    socket_errors: dict[str, int]
    answered: dict[str, int] = field(default_factory=dict)  # request id -> status (with record=)

    @property
    def socket_error_total(self) -> int:
        return sum(self.socket_errors.values())

    def line(self) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in self.socket_errors.items()) or "none"
        return (f"{self.rps:8.0f} req/s   p50 {self.p50:6.1f} ms   p99 {self.p99:6.1f} ms   "
                f"({self.requests:,} requests, non-2xx {self.non2xx}, socket errors {errors})")


class Wrk:
    """`wrk -t -c -d --latency` POSTing one JSON body (or a list of bodies in turn), started in the background."""

    def __init__(self, url: str, body: dict | list[dict], duration: float, *, threads: int = 2,
                 connections: int = 16, record: bool = False):
        self.dir = Path(tempfile.mkdtemp(prefix="wrk-"))
        if isinstance(body, list):
            script = _SCRIPT.format(body=json.dumps(json.dumps(body[0]))) + _BODIES.format(
                bodies=", ".join(json.dumps(json.dumps(b)) for b in body))
        else:
            script = _SCRIPT.format(body=json.dumps(json.dumps(body)))
        if record:
            script += _RECORDING.format(prefix=json.dumps(str(self.dir / "answers-")))
        (self.dir / "script.lua").write_text(script)
        self.record = record
        self.proc = subprocess.Popen(["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(duration)}s", "--latency",
                                      "-s", str(self.dir / "script.lua"), url],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self, timeout: float = 300) -> WrkResult:
        out, err = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({self.proc.returncode}): {err or out}")
        result = parse(out)
        if self.record:
            for path in self.dir.glob("answers-*"):
                for line in path.read_text().splitlines():
                    status, _, rid = line.partition(" ")
                    result.answered[rid] = int(status)
        return result


def wrk(url: str, body: dict, duration: float, **kw) -> WrkResult:
    return Wrk(url, body, duration, **kw).result()


def parse(out: str) -> WrkResult:
    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m is None:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = {}
    if errors:
        socket_errors = {k: int(v) for k, v in zip(("connect", "read", "write", "timeout"), errors.groups()) if int(v)}
    total = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return WrkResult(float(rps.group(1)) if rps else 0.0, ms("50%"), ms("99%"), int(total.group(1)) if total else 0,
                     int(non2xx.group(1)) if non2xx else 0, socket_errors)


def replica_pids(serving_pid: int) -> list[int]:
    """The Ray Serve replica processes of the model deployment under a serving process."""
    try:
        procs = psutil.Process(serving_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for p in procs:
        try:
            if "ServeReplica" in " ".join(p.cmdline()) and "HitModelServer" in " ".join(p.cmdline()):
                found.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
