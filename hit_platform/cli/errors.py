"""One-line refusals: what a person can fix (a bad option, an unknown id, a write in analyst SQL, no lake
yet) is printed as `hit-platform COMMAND: error: what and where` on stderr, exit code 2. A bug is not a
refusal: it keeps its traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

REFUSED = 2


class Refused(Exception):
    """A request this command will not carry out, said in one line."""


def _refusals() -> tuple[type[BaseException], ...]:
    """The exceptions that are a person's mistake, not a bug (imported here: each is light)."""
    from hit_platform.adapters.backup import BackupRefused
    from hit_platform.adapters.lake.connection import NoLake
    from hit_platform.adapters.reports.audit import AuditError
    from hit_platform.cli.rebuild import RebuildRefused
    from hit_platform.cli.rollback import RollbackRefused

    return Refused, NoLake, AuditError, RebuildRefused, RollbackRefused, BackupRefused


def bad_settings(exc) -> str:
    """A pydantic ValidationError of the settings as the variables a person set: `HIT_SERVE_PORT='eighty':
    Input should be a valid integer, ...`."""
    from hit_platform.settings import Settings

    prefixes = {f.annotation.__name__: f.annotation.model_config.get("env_prefix", "")
                for f in Settings.model_fields.values() if hasattr(f.annotation, "model_config")}
    prefix = prefixes.get(exc.title, "HIT_")
    parts = []
    for e in exc.errors():
        where = "_".join(str(part) for part in e["loc"]).upper()
        parts.append(f"{prefix}{where}={e['input']!r}: {e['msg']}" if where else e["msg"])
    return "bad setting: " + "; ".join(parts)


def one_line(text: str, limit: int = 600) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def say_refused(command: str, what: object) -> int:
    name = f"hit-platform {command}" if command and not command.startswith("-") else "hit-platform"
    print(f"{name}: error: {one_line(str(what))}", file=sys.stderr, flush=True)
    return REFUSED


def run_refusing(command: str, body: Callable[[], int]) -> int:
    """`body()`, with a refusal turned into one line and exit code 2."""
    try:
        return body()
    except _refusals() as exc:
        return say_refused(command, exc)
    except SystemExit as exc:  # a command's own `raise SystemExit("why")`
        if isinstance(exc.code, str):
            return say_refused(command, exc.code)
        raise


class OneLineParser(argparse.ArgumentParser):
    """argparse, whose usage errors are one line (the usage is one `--help` away); `commands`: the
    subcommands' parsers, by name."""

    commands: dict[str, argparse.ArgumentParser] = {}

    def error(self, message: str):
        print(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)", file=sys.stderr, flush=True)
        sys.exit(REFUSED)
