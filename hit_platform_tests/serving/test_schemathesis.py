"""Schemathesis against the served API: every operation of the live `/openapi.json`, every built-in check.

A real serving process (Ray Serve on 127.0.0.1, a registered champion) started once for the module, as
test_api.py starts its own: the hundreds of generated requests must stay out of the inference log that
test_api.py checks request by request.

Schemathesis runs through its command line (`st run`) in a child process: its pytest integration for a
schema served by a fixture (`schemathesis.pytest.from_fixture`) fails under pytest 9 (it reads and sets
`Function._nodeid`, which pytest 9's nodes no longer have). Generation is deterministic and bounded, so a run is
repeatable and takes seconds.

What schemathesis does not generate: `/predict/batch`'s Arrow stream body (documented as a binary
string, with no serializer in schemathesis), so it sends JSON only. The last test here sends malformed
Arrow streams itself; valid ones are test_api.py's and test_arrow_batch.py's.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter

import httpx
import pyarrow as pa
import pytest

from hit_platform.serving import process
from hit_platform.serving.arrow_batch import ARROW_STREAM
from hit_platform_tests.support.serving import promote_champion, serving_env, song

pytestmark = pytest.mark.slow

MAX_BATCH = 20  # the schema's maxItems: the coverage phase sends maxItems + 1 songs, so keep it small

# `[checks.negative_data_rejection]`: 413 is how this API refuses more songs (or bytes) than it takes,
# documented on both /predict routes; the other statuses are schemathesis's defaults for that check.
CONFIG = """
[generation]
max-examples = 100
deterministic = true
database = "none"

[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]
"""


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    settings, config = serving_env(tmp_path_factory.mktemp("schemathesis"), max_batch=MAX_BATCH)
    promote_champion(settings, seed=3, explained=True)  # a version /explain can explain (issue 31)
    url = process.start(settings, config)
    try:
        yield url
    finally:
        process.stop(settings, config)


def test_schemathesis_finds_nothing_on_any_operation(endpoint, tmp_path):
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    report = tmp_path / "report.json"
    st = [sys.executable, "-m", "schemathesis.cli", "--config-file", "schemathesis.toml", "run"]
    run = subprocess.run([*st, f"{endpoint}/openapi.json", "--checks", "all", "--no-color",
                          "--output-sanitize", "false",  # else it prints the field `key` as [Filtered]
                          "--report", "json", "--report-json-path", str(report)],
                         cwd=tmp_path,  # its .hypothesis/ and .schemathesis/ caches land here, not in the repo
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"{run.stdout[-30_000:]}\n{run.stderr[-3_000:]}"
    print(run.stdout[-1_500:])  # the summary, shown with -s or -rA

    result = json.loads(report.read_text())
    served = httpx.get(f"{endpoint}/openapi.json", timeout=30).json()["paths"]
    operations = {f"{method.upper()} {path}" for path, ops in served.items() for method in ops}
    assert set(result["valid_rates"]) == operations  # every served operation was generated for ...
    assert result["operations"]["tested"] == len(operations) == 5  # ... and tested, /explain included
    assert result["phases"]["coverage"]["status"] == result["phases"]["fuzzing"]["status"] == "success"
    assert (result["failures"], result["errors"], result["test_cases"]["with_failures"]) == ([], [], 0)
    assert result["test_cases"]["generated"] > 400, result["test_cases"]


@pytest.mark.parametrize("value, status", [(3, 200), (3.0, 200), (5.5, 422), (4.0000000001, 422),
                                           (2.589e-42, 422)])
def test_an_integer_field_is_what_json_schema_calls_an_integer(endpoint, value, status):
    """3.0 is an integer; 5.5 is not, nor is a number a hair off a whole one (pydantic's `multiple_of`
    lets through anything within 1e-9 of one, until schemathesis sent 2.589e-42 as a time signature)."""
    r = httpx.post(f"{endpoint}/predict", json=song(time_signature=value), timeout=60)
    assert r.status_code == status, r.text[:300]
    if status == 422:
        assert r.json()["detail"][0]["loc"] == ["body", "time_signature"]


def test_a_malformed_arrow_stream_is_a_4xx_never_a_5xx(endpoint):
    """The Arrow body schemathesis cannot generate: every prefix of a valid stream, and random bytes."""
    table = pa.table({k: [v] * 3 for k, v in song().items()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    stream = sink.getvalue().to_pybytes()
    rng = random.Random(7)
    bodies = [stream[:n] for n in range(len(stream) + 1)] + [rng.randbytes(rng.randint(1, 600)) for _ in range(50)]
    answers = Counter()
    with httpx.Client(base_url=endpoint, timeout=60, headers={"content-type": ARROW_STREAM}) as client:
        for body in bodies:
            r = client.post("/predict/batch", content=body)
            answers[r.status_code, r.json()["detail"][0]["type"] if r.status_code != 200 else "ok"] += 1
    # 200: the whole stream, and the stream without its end-of-stream marker (Arrow reads it);
    # 422 too_short: the schema message alone, a stream of no songs; 400 arrow_invalid: all the rest
    assert set(answers) == {(200, "ok"), (422, "too_short"), (400, "arrow_invalid")}, answers
