"""The layout holds: an asset's key prefix, Dagster group and module name the same thing, checks
live with their asset, the four layers import only downward, and the Definitions load as Dagster
loads them."""

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg

import hit_platform
import hit_platform.defs
from hit_platform.definitions import defs

PACKAGE = Path(hit_platform.__file__).parent


def _defs_modules():
    for info in pkgutil.walk_packages(hit_platform.defs.__path__, "hit_platform.defs."):
        yield importlib.import_module(info.name)


def _defined_in(fn) -> str:
    return getattr(fn, "decorated_fn", fn).__module__


def _home(key: dg.AssetKey) -> str:
    return f"hit_platform.defs.{key.path[0]}"


def test_every_asset_lives_in_the_module_of_its_key_prefix_and_group():
    where: dict[dg.AssetKey, str] = {}
    for module in _defs_modules():
        for asset in dg.load_assets_from_modules([module]):
            if isinstance(asset, dg.SourceAsset):  # the landing folder, observed
                fn, specs = asset.observe_fn, [(asset.key, asset.group_name)]
            else:
                fn, specs = asset.node_def.compute_fn, [(s.key, s.group_name) for s in asset.specs]
            if _defined_in(fn) != module.__name__:
                continue  # imported here, defined elsewhere
            first = specs[0][0]
            for key, group in specs:
                where[key] = module.__name__
                assert group == key.path[0], (key, group)
                # a multi-asset that writes two schemas lives with the first
                assert module.__name__ == _home(first) or module.__name__.startswith(_home(first) + "."), \
                    (key, module.__name__)
    assert set(where) == set(defs.resolve_asset_graph().get_all_asset_keys())


def test_every_check_lives_with_its_asset():
    found = set()
    for module in _defs_modules():
        for checks in dg.load_asset_checks_from_modules([module]):
            if _defined_in(checks.node_def.compute_fn) != module.__name__:
                continue
            for key in checks.check_keys:
                found.add(key)
                assert module.__name__ == _home(key.asset_key) or \
                    module.__name__.startswith(_home(key.asset_key) + "."), (key, module.__name__)
    assert found == set(defs.resolve_asset_graph().asset_check_keys)


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or path.is_dir()


def _imports(path: Path) -> set[str]:
    """The modules a file imports (`from package import module` names the module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            modules = [n for n in names if n.startswith("hit_platform.") and _is_module(n)]
            out |= set(modules) if modules else {node.module}
    return out


# What each layer may import from the package (besides itself) and from outside it.
LAYERS = {
    # the domain is given its thresholds as plain values; it never reads the settings
    "domain": ({"hit_platform.domain"}, {"dagster", "mlflow", "ray", "duckdb"}),
    # the settings need the column names (plain Python) and convert a section to the promotion rules' values
    "settings": ({"hit_platform.settings", "hit_platform.domain.columns", "hit_platform.domain.promotion"},
                 {"dagster", "mlflow", "ray", "duckdb", "pandas", "pandera"}),
    "steps": ({"hit_platform.domain", "hit_platform.steps", "hit_platform.adapters.lake", "hit_platform.settings"},
              {"dagster", "mlflow", "ray"}),
    "adapters": ({"hit_platform.domain", "hit_platform.steps", "hit_platform.adapters", "hit_platform.settings"},
                 {"dagster", "ray"}),
    # private_apis: the pinned Serve code version and the replicas' loopback gRPC (no Dagster is loaded)
    "serving": ({"hit_platform.domain", "hit_platform.adapters", "hit_platform.serving", "hit_platform.settings",
                 "hit_platform.private_apis"},
                {"dagster"}),
    "generator": ({"hit_platform.domain", "hit_platform.generator"}, {"dagster", "mlflow", "ray", "duckdb"}),
    # a Ray cluster on this machine (network namespaces, `ray start`) and the training's tasks on one
    "cluster": ({"hit_platform.cluster"}, {"dagster", "mlflow", "duckdb"}),
}


def test_layers_import_only_downward():
    wrong = []
    for layer, (allowed, banned) in LAYERS.items():
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            for name in _imports(path):
                top = name.split(".")[0]
                if top in banned:
                    wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
                elif top == "hit_platform" and not any(name == a or name.startswith(a + ".") for a in allowed):
                    wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_domain_never_reads_the_settings():
    readers = [f"{path.relative_to(PACKAGE)} imports {name}" for path in sorted((PACKAGE / "domain").rglob("*.py"))
               for name in _imports(path) if name == "hit_platform.settings" or name.startswith("hit_platform.settings.")]
    assert not readers, "\n".join(readers)


MAX_LINES = 400  # a longer module holds more than one idea


def test_no_module_is_longer_than_one_idea():
    long = {str(path.relative_to(PACKAGE)): n for path in sorted(PACKAGE.rglob("*.py"))
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_dagster_definitions_validate_loads_the_code_location():
    out = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
                          "-m", "hit_platform.definitions"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


# Test folders that have no package folder of the same name, and why.
TEST_ONLY = {"support": "helpers shared by the tests and bench/", "scale": "the scale profile, across the layers"}


def test_the_tests_mirror_the_package():
    tests = Path(__file__).resolve().parents[1]
    test_dirs = {p.relative_to(tests).as_posix() for p in tests.rglob("*") if p.is_dir() and p.name != "__pycache__"}
    package_dirs = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")
                    if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))}
    strays = {d for d in test_dirs if d.split("/")[0] not in TEST_ONLY and d not in package_dirs}
    assert not strays, f"test folders with no package folder of that name: {sorted(strays)}"
    layers = {"domain", "steps", "adapters", "defs", "serving", "generator", "cli"}
    assert layers <= test_dirs, sorted(layers - test_dirs)


# -- defs/ is wiring: no SQL, no MLflow; the CLI does not reach into it --------------------------------

# SQL as DuckDB would run it: the keyword in capitals and what follows it in a statement (prose that says
# "select" or "update" is not SQL). An f-string is read whole, its {fields} as "{}".
SQL = re.compile(r"\bSELECT\b.*?\bFROM\b|\bINSERT\s+INTO\b|\bCREATE\s+(OR\s+REPLACE\s+)?(TEMP(ORARY)?\s+)?"
                 r"(TABLE|SCHEMA|VIEW|SECRET|SEQUENCE|MACRO)\b|\bDELETE\s+FROM\b|\bUPDATE\s+[\w.\"{}]+\s+(\w+\s+)?SET\b"
                 r"|\bALTER\s+TABLE\b|\bDROP\s+(TABLE|SCHEMA|VIEW)\b|\bDESCRIBE\s+[\w.{}]", re.S)
# What a connection runs SQL with: `con.execute(...)` and its kin.
RUNS_SQL = {"execute", "executemany", "sql", "query", "from_query"}


def _defs_sources():
    for path in sorted((PACKAGE / "defs").rglob("*.py")):
        yield path.relative_to(PACKAGE), ast.parse(path.read_text())


def _strings(tree: ast.AST):
    """Every string literal of a module (docstrings too), an f-string joined with "{}" for its fields."""
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_defs_hold_no_sql():
    """An asset reads its inputs, calls a step (which takes a connection and returns values) or an adapter,
    and writes its metadata: SQL lives in `steps/` (and the lake's own adapter), where DuckDB runs it and a
    test can run it without Dagster."""
    found = [f"{path}:{line}: {m.group(0)!r}" for path, tree in _defs_sources()
             for line, text in _strings(tree) for m in [SQL.search(text)] if m]
    found += [f"{path}:{node.lineno}: .{node.func.attr}(...)" for path, tree in _defs_sources()
              for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in RUNS_SQL]
    assert not found, "SQL in defs/ (move it into a step):\n" + "\n".join(found)


def test_the_rule_finds_sql_where_it_is():
    assert SQL.search('SELECT count(*) FROM {}') and SQL.search("INSERT INTO ml.batch_predictions SELECT 1")
    assert SQL.search("CREATE OR REPLACE TABLE core.songs AS") and SQL.search("UPDATE {} e SET realized = 1")
    assert SQL.search("DELETE FROM ops.alerts") and SQL.search("DESCRIBE {}")
    assert not SQL.search("Select the songs, update the champion and create a report from them")


def test_defs_never_import_mlflow():
    """MLflow is the tracking adapter's (`adapters/tracking.py`) and the model adapters' (`adapters/model_*`):
    an asset asks them, it never calls MLflow itself."""
    found = [f"{path} imports {name}" for path in sorted((PACKAGE / "defs").rglob("*.py"))
             for name in _imports(path) if name.split(".")[0] == "mlflow"]
    assert not found, "\n".join(found)


# Modules of defs/ the CLI may import whole, and why.
CLI_MAY_IMPORT_MODULES = {
    "hit_platform.defs.gate_policy": "`hit-platform build` asks the question every asset asks (may I run?) up "
                                     "front, to report what the gates leave unbuilt",
    "hit_platform.defs.sensors": "`hit-platform build` asks the landing sensor which files are new, as the daemon does",
}


def _what_definitions_are_made_of(value) -> bool:
    """An asset key or check key (or a collection of them), or one of the things `hit_platform.definitions`
    assembles: an asset, a job, a sensor, a resource."""
    if isinstance(value, (dg.AssetKey, dg.AssetCheckKey)):
        return True
    if isinstance(value, (set, frozenset, list, tuple)) and value:
        return all(isinstance(v, (dg.AssetKey, dg.AssetCheckKey)) for v in value)
    if isinstance(value, (dg.AssetsDefinition, dg.SourceAsset, dg.AssetChecksDefinition, dg.JobDefinition,
                          dg.SensorDefinition, dg.ScheduleDefinition)):
        return True
    return isinstance(value, type) and issubclass(value, dg.ConfigurableResource)


def test_the_cli_takes_from_defs_only_keys_and_definitions():
    """The CLI calls steps and adapters for the work, and Dagster with `hit_platform.definitions` for a run.
    From `hit_platform.defs` it may import only what the Definitions are made of: asset and check keys
    (`CHAMPION`, `BY_SENSOR`), assets, jobs, sensors and resources (to materialize one asset, as
    `hit-platform ingest` does), and the modules of CLI_MAY_IMPORT_MODULES. Never an asset's helper: what an
    asset and a command both need (a rebuild, a snapshot check, a decision) lives in adapters/, steps/ or
    domain/, where both import it."""
    wrong = []
    for path in sorted((PACKAGE / "cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                wrong += [f"{path.relative_to(PACKAGE)}: import {a.name}" for a in node.names
                          if a.name.startswith("hit_platform.defs") and a.name not in CLI_MAY_IMPORT_MODULES]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hit_platform.defs"):
                for alias in node.names:
                    dotted = f"{node.module}.{alias.name}"
                    if _is_module(dotted):
                        ok = dotted in CLI_MAY_IMPORT_MODULES
                    else:
                        ok = _what_definitions_are_made_of(getattr(importlib.import_module(node.module), alias.name))
                    if not ok:
                        wrong.append(f"{path.relative_to(PACKAGE)}: from {node.module} import {alias.name}")
    assert not wrong, "the CLI reaches into defs/:\n" + "\n".join(wrong)
