"""Private upstream APIs: read in one module only, for the versions it was written for.

A Dagster or Ray upgrade may move what `hit_platform/private_apis.py` reads without a warning. The pin
makes the upgrade fail here, by name, so someone reads those few functions against the new release.
"""

import re
from importlib.metadata import version
from pathlib import Path

import hit_platform
from hit_platform import private_apis

PACKAGE = Path(hit_platform.__file__).parent
PRIVATE = re.compile(r"\bdagster\._|\bdagster_shared\._|\bray\.[\w.]*_private\b|\b_internal\s*=|"
                     r"from\s+ray\.[\w.]*\s+import\s+_private")


def test_private_apis_are_read_only_for_the_versions_they_were_written_for():
    installed = {name: version(name) for name in private_apis.WRITTEN_FOR}
    assert installed == private_apis.WRITTEN_FOR, (
        f"hit_platform/private_apis.py was written for {private_apis.WRITTEN_FOR}, but {installed} is installed: "
        "read each of its functions against the new release, fix what moved, then update WRITTEN_FOR")


def offenders(text: str) -> list[str]:
    return [f"{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1) if PRIVATE.search(line)]


def test_no_module_but_private_apis_uses_a_private_upstream_api():
    found = {str(p.relative_to(PACKAGE)): offenders(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))
             if p.name != "private_apis.py"}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_rule_sees_every_kind_of_private_use():
    caught = ["from dagster._core.instance.ref import InstanceRef",
              "import ray.serve._private.replica as replica",
              "deployment.options(version=v, _internal=True)",
              "x = dagster._time.get_current_datetime()"]
    assert [line for line in caught if not offenders(line)] == []
    assert offenders("column_of, codes = _internal_layout(hgb)") == []  # a private name of our own is fine
