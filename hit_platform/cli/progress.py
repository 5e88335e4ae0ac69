"""What a person sees while a command works: a line per asset as it starts and ends, with its seconds and a
running count, the training's fits done with the time left, and every gate that fails or warns.

On a terminal a `rich` progress bar sits under those lines; elsewhere (CI, a pipe) they are plain lines.
`--quiet` shows none of it, `--json` writes each event as one JSON object a line instead.

The events come from the Dagster run's own event log (`DagsterInstance.get_records_for_run`, read every
half second beside the run): the same events the UI shows, so a run in this process and a run the
daemon launched are told alike. Training says how far it is with `context.log.info` lines that start
with `TRAINING_LOG_PREFIX` (`domain/models/candidates.py`).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Dagster loads when a run is followed, not when the CLI starts
    import dagster as dg

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0  # the longest silence while a step runs
NOT_EXECUTING = "Not executing."  # how Dagster's engine ends the line of a step it skips
_STEP_EVENTS = {"STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED", "STEP_UP_FOR_RETRY"}


class Progress:
    """Where progress goes: `mode` is "auto" (a bar on a terminal, plain lines elsewhere), "plain", "quiet"
    or "json". `planned` assets so far (a build plans round after round) and those finished make the count."""

    def __init__(self, mode: str = "auto", stream=None, verbose: bool = False):
        self.stream = stream or sys.stdout
        self.verbose = verbose
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "plain"
        self.mode = mode
        self.planned = 0
        self.started = 0
        self.done = 0
        self._lock = threading.Lock()
        self._bar = None
        self._task = None
        self._last_training = 0.0
        self._last_family = ""
        self.last_line = time.monotonic()  # when a line was last written
        self._when_done: dict[str, Callable[[], None]] = {}

    # -- what commands say ----------------------------------------------------------------------------

    def line(self, text: str) -> None:
        """A line of progress (not in quiet or json mode)."""
        if self.mode in ("quiet", "json"):
            return
        with self._lock:
            self.last_line = time.monotonic()
            if self._bar is not None:
                self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                print(text, file=self.stream, flush=True)

    def say(self, text: str) -> None:
        """A line of the command's own output (its result: also with --quiet; with --json it goes where
        the command's other prints go)."""
        with self._lock:
            if self._bar is not None and self.mode != "json":
                self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                print(text, flush=True)

    def event(self, kind: str, text: str | None = None, **fields) -> None:
        """One event: a JSON object in json mode, else `text` as a line (when given)."""
        if self.mode == "json":
            self.last_line = time.monotonic()
            record = {"event": kind, "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **fields}
            with self._lock:
                print(json.dumps(record, default=str), file=self.stream, flush=True)
        elif text is not None:
            self.line(text)

    def plan(self, assets: int) -> None:
        with self._lock:
            self.planned += assets
            if self._task is not None:
                self._bar.update(self._task, total=self.planned)

    @contextmanager
    def bar(self) -> Iterator[Progress]:
        """The bar under the lines while the block runs (a terminal only)."""
        if self.mode != "bar":
            yield self
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

        bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(file=self.stream), transient=True)
        with bar:
            with self._lock:
                self._bar, self._task = bar, bar.add_task("starting", total=self.planned or None)
            try:
                yield self
            finally:
                with self._lock:
                    self._bar = self._task = None

    def _describe(self, text: str) -> None:
        if self._task is not None:
            self._bar.update(self._task, description=text, completed=self.done)

    # -- a Dagster run ----------------------------------------------------------------------------------

    @contextmanager
    def following(self, instance: dg.DagsterInstance, run_id: str, steps: Steps) -> Iterator[None]:
        """Tell the events of run `run_id` while the block runs it (and those left when it returns)."""
        if self.mode == "quiet":
            yield
            return
        follower = _RunFollower(self, instance, run_id, steps)
        thread = threading.Thread(target=follower.run, name="progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            follower.stop.set()
            thread.join(30)
            follower.read()  # what came after the last look

    def _step_started(self, label: str, index: int) -> None:
        self.event("asset_started", f"[{index}/{self.planned}] {label} …", asset=label, index=index,
                   planned=self.planned)
        with self._lock:
            self._describe(f"{label} …")

    def _step_ended(self, label: str, index: int, seconds: float, outcome: str) -> None:
        with self._lock:
            self.done += 1
            self._describe(label)
        word = {"success": f"{seconds:.1f} s", "failure": f"FAILED after {seconds:.1f} s",
                "skipped": "skipped (a gate upstream holds it, or it had nothing new)"}[outcome]
        self.event("asset_ended", f"[{index}/{self.planned}] {label} {word}", asset=label, index=index,
                   planned=self.planned, seconds=round(seconds, 3), outcome=outcome)
        hook = self._when_done.pop(label, None) if outcome == "success" else None
        if hook is not None:
            try:
                hook()
            except Exception as exc:  # what the command wanted to show then; the build goes on
                self.event("warning", f"   warning: after {label}: {type(exc).__name__}: {exc}", message=str(exc))

    def when_done(self, asset: str, hook: Callable[[], None]) -> None:
        """Call `hook` once, as soon as `asset` (as the user reads it) is materialized, while the run goes on."""
        self._when_done[asset] = hook

    def _not_run(self, label: str) -> None:
        self.event("asset_not_run", f"[-/{self.planned}] {label} not run: a gate or step it needs failed",
                   asset=label, planned=self.planned)

    def _check(self, asset: str, check: str, passed: bool, severity: str, description: str | None) -> None:
        if passed:
            self.event("gate", asset=asset, check=check, passed=True)
            return
        mark = "WARN" if severity == "WARN" else "FAIL"
        self.event("gate", f"      gate {mark} {asset}:{check}: {_one_line(description or '')}", asset=asset,
                   check=check, passed=False, severity=severity, description=description)

    def _message(self, step: str | None, level: int, text: str) -> None:
        from hit_platform.domain.models.candidates import TRAINING_LOG_PREFIX  # loaded with the run already

        if text.startswith(TRAINING_LOG_PREFIX):
            what = text[len(TRAINING_LOG_PREFIX):]
            with self._lock:
                self._describe(f"training {what}")
            now = time.monotonic()
            if self.mode == "json":
                self.event("training", what=what)
            family = what.split(" ", 1)[0]
            if self.mode == "plain" and (now - self._last_training >= 5 or family != self._last_family):
                self._last_training, self._last_family = now, family  # each family, and every 5 s at most
                self.line(f"         training {what}")
            return
        if level >= 30:  # a warning from inside a run: one line, the whole message in the log
            kind = "error" if level >= 40 else "warning"
            self.event(kind, f"   {kind}: {step or 'run'}: {_one_line(text)}", step=step, message=text)


class _RunFollower:
    """Reads one run's events from the instance and tells them to a Progress."""

    def __init__(self, progress: Progress, instance: dg.DagsterInstance, run_id: str, steps: Steps):
        self.progress, self.instance, self.run_id = progress, instance, run_id
        self.steps = steps
        self.assets_of_step = steps.assets
        self.cursor: str | None = None
        self.started: dict[str, tuple[int, float]] = {}  # asset step -> (its number, when it started)
        self.running: dict[str, float] = {}  # every step running (checks too) -> when it started (monotonic)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            try:
                self.read()
                self.still_working()
            except Exception:  # progress must never break the run it tells of; the next look retries
                pass

    def still_working(self) -> None:
        """After HEARTBEAT_SECONDS without a line, say which step is still running, and for how long."""
        now = time.monotonic()
        if not self.running or now - self.progress.last_line < HEARTBEAT_SECONDS:
            return
        step, since = min(self.running.items(), key=lambda item: item[1])
        label = self.steps.label(step) or step
        self.progress.event("working", f"         … still working: {label} ({now - since:.0f} s)", step=label,
                            seconds=round(now - since, 1))

    def read(self) -> None:
        while True:
            conn = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, limit=500)
            for record in conn.records:
                self.tell(record.event_log_entry)
            self.cursor = conn.cursor
            if not conn.has_more:
                return

    def tell(self, entry: dg.EventLogEntry) -> None:
        p, step = self.progress, entry.step_key
        event = entry.dagster_event
        if event is None:
            if entry.user_message.endswith(NOT_EXECUTING):  # the engine skipping a step a failed one feeds
                if step in self.assets_of_step:
                    p._not_run(", ".join(self.assets_of_step[step]))
                return
            p._message(step, entry.level if isinstance(entry.level, int) else 20, entry.user_message)
            return
        kind = event.event_type_value
        if kind == "STEP_START" and step:
            self.running[step] = time.monotonic()
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            self.running.pop(step, None)
        if kind == "ASSET_CHECK_EVALUATION":
            e = event.event_specific_data
            p._check(e.asset_key.to_user_string(), e.check_name, e.passed, e.severity.value, e.description)
        elif kind in _STEP_EVENTS and step in self.assets_of_step:
            label = ", ".join(self.assets_of_step[step])
            if kind == "STEP_START":
                p.started += 1
                self.started[step] = (p.started, entry.timestamp)
                p._step_started(label, p.started)
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED") and step in self.started:
                index, at = self.started.pop(step)
                outcome = {"STEP_SUCCESS": "success", "STEP_FAILURE": "failure"}.get(kind, "skipped")
                p._step_ended(label, index, entry.timestamp - at, outcome)


@dataclass(frozen=True)
class Steps:
    """The steps (ops) of a Definitions, as the user reads them: each asset step's asset keys, and each
    check step's checks (`asset:check`)."""

    assets: dict[str, list[str]]
    checks: dict[str, list[str]]

    def label(self, step: str) -> str | None:
        if step in self.assets:
            return ", ".join(self.assets[step])
        if step in self.checks:
            return "gate " + ", ".join(self.checks[step])
        return None


def steps_of_defs(defs: dg.Definitions) -> Steps:
    import dagster as dg

    assets: dict[str, list[str]] = {}
    for a in defs.assets or []:
        if isinstance(a, dg.AssetsDefinition) and a.is_executable:
            assets[a.node_def.name] = [s.key.to_user_string() for s in a.specs]  # in the order defined
    checks = {c.node_def.name: sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in c.check_keys)
              for c in defs.asset_checks or [] if isinstance(c, dg.AssetChecksDefinition)}
    return Steps(assets, checks)


def steps_of(steps: Steps, keys: list[dg.AssetKey]) -> int:
    """How many steps materialize `keys`."""
    wanted = {k.to_user_string() for k in keys}
    return sum(1 for labels in steps.assets.values() if wanted & set(labels))


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
