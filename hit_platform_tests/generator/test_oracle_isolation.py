"""The oracle as a function is the generator's public API, and nothing the model sees can reach it.

What the model learns from, is served by and is judged with at promotion lives in domain/, steps/, adapters/,
serving/ and defs/ (and `hit_platform.definitions`, which assembles them). Their whole import graph, every
`import` of every module they reach (imports inside functions too, which a run only meets on some paths),
must never reach `hit_platform.generator`: the truth is for the benches and the tests alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hit_platform
import hit_platform.generator as generator
from hit_platform.generator.true_oracle import Oracle

PACKAGE = Path(hit_platform.__file__).parent
WHAT_THE_MODEL_SEES = ("domain", "steps", "adapters", "serving", "defs", "definitions.py")


def _file(module: str) -> Path | None:
    path = PACKAGE.parent.joinpath(*module.split("."))
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    return None


def _module_of(path: Path) -> str:
    if not path.is_relative_to(PACKAGE.parent):
        return str(path)
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    """The package's modules a file imports anywhere in it, with the packages they are in (whose
    __init__ runs first)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    out = set()
    for name in names:
        if name == "hit_platform" or name.startswith("hit_platform."):
            parts = name.split(".")
            out |= {m for i in range(1, len(parts) + 1) if _file(m := ".".join(parts[:i]))}
    return out


def reachable(*starts: Path) -> dict[str, str]:
    """Every module of the package the files import, transitively: {module: a module that imports it}."""
    seen: dict[str, str] = {}
    todo = [(_module_of(p), p) for p in starts]
    done = set()
    while todo:
        module, path = todo.pop()
        if module in done:
            continue
        done.add(module)
        for name in _imported(path):
            seen.setdefault(name, module)
            if name not in done:
                todo.append((name, _file(name)))
    return seen


def _starts() -> list[Path]:
    files = []
    for part in WHAT_THE_MODEL_SEES:
        root = PACKAGE / part
        files += [root] if root.is_file() else sorted(root.rglob("*.py"))
    return files


def test_the_oracle_function_is_in_the_generators_public_api():
    assert "world_oracle" in generator.__all__ and "oracle_from_manifest" in generator.__all__
    assert generator.world_oracle.__module__ == "hit_platform.generator.true_oracle"
    assert "ignored_features" in dir(Oracle) and callable(Oracle.__call__)


def test_nothing_the_model_sees_can_import_the_generator():
    starts = _starts()
    assert len(starts) > 80 and any(p.name == "truth.py" for p in starts)   # the truth drill's own module too
    seen = reachable(*starts)
    assert "hit_platform.domain.models" in seen and "hit_platform.serving" in seen   # the walk does walk
    leaks = {m: by for m, by in seen.items() if m.split(".")[:2] == ["hit_platform", "generator"]}
    assert not leaks, f"the model's side reaches the generator: {leaks}"


def test_the_check_finds_a_module_that_does_import_it(tmp_path):
    # the CLI's demo imports the generator inside its functions: the walk must see that
    demo = reachable(PACKAGE / "cli" / "demo.py")
    assert "hit_platform.generator" in demo
    # and a module that did, inside a function and two imports away, would be found
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from hit_platform.cli import demo\n")
    found = reachable(probe)
    assert found["hit_platform.cli.demo"] == str(probe) and found["hit_platform.generator"] == "hit_platform.cli.demo"
