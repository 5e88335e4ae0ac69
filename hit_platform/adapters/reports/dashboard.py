"""The dashboard: one self-contained HTML page (inline PNG plots) read from the lake.

Model quality over versions (ml.evaluations), the champion's per-country ROC AUC, its global importance
per country (logged with its MLflow run, read by `importance_of`),
the challenger against the champion on the songs it shadowed (ops.shadow_log),
its label-free performance estimate against the realized values (ops.performance_estimates),
drift (features at each data version and served songs), serving latency over time
(ops.inference_log), the latest monitor results and the latest alerts.

Each section says how old it is (the time of the newest row it shows, against the time the page was
rendered), the page says whether the champion it shows is the one served now, every time axis spans
the data it shows, and the page reloads itself. `ops/dashboard` writes it to
warehouse/reports/dashboard.html (`publish`); `hit-platform dashboard` serves it re-rendered
(`render_current`).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from hit_platform.adapters import model_events
from hit_platform.adapters.alerts import list_alerts
from hit_platform.adapters.lake.connection import Lake
from hit_platform.adapters.reports import dashboard_sections as sec
from hit_platform.steps import log_retention
from hit_platform.domain.explain import Importance
from hit_platform.domain.promotion import ShadowComparison
from hit_platform.steps import shadow_comparison


class ServedNow(Protocol):
    """What the serving process says it serves (`hit_platform.serving.process.status`)."""

    running: bool
    model_version: str | None


@dataclass
class Dashboard:
    html: str
    summary_md: str
    sections: list[str] = field(default_factory=list)
    rendered_at: datetime | None = None
    newest: dict[str, datetime | None] = field(default_factory=dict)  # per section: its newest row's time
    champion_version: str | None = None  # the champion the page shows
    served: str = ""  # the line saying whether that champion is the one served now


_utc = sec.utc


def ago(then: datetime, now: datetime) -> str:
    """'3 min ago': how long before `now` the time `then` was, in the unit a person would say."""
    s = (now - then).total_seconds()
    if s < 1:
        return "just now"
    for unit, size, up_to in (("s", 1, 90), ("min", 60, 90 * 60), ("h", 3600, 48 * 3600)):
        if s < up_to:
            return f"{int(s // size)} {unit} ago"
    return f"{int(s // 86400)} days ago"


def age_line(what: str, newest: datetime | None, now: datetime) -> str:
    """How old a section is: its newest row's time, against the time the page was rendered."""
    if newest is None:
        return f"<p class=\"age\">{html.escape(what)}: none yet</p>"
    t = _utc(newest)
    return (f"<p class=\"age\">{html.escape(what)}: {ago(t, now)} "
            f"(<time datetime=\"{t.isoformat()}\">{t:%Y-%m-%d %H:%M:%S} UTC</time>)</p>")


def served_line(served: ServedNow | None, shown: str | None) -> str:
    """Whether the champion the page shows is the one the serving process serves now."""
    if served is None:
        return "served now: not asked"
    if not served.running:
        return "not served now"
    version, state = served.model_version, getattr(served, "state", "running")
    if state != "running":
        line = f"the serving process is {state} (version {version}, from its pid file)"
    elif shown is None:
        line = f"served now: version {version}, and this page shows no champion"
    elif str(version) == str(shown):
        line = f"served now: version {version} (same)"
    else:
        line = f"served now: version {version} \u2014 this page shows {shown}"
    challenger = getattr(served, "challenger_version", None)
    return line + (f"; challenger {challenger} shadows it" if challenger else "")


SECTIONS = {  # each section and what its age is the age of
    "Model quality": "newest evaluation", "Global importance": "computed", "Model events": "newest event", "Shadow": "newest shadowed request",
    "Performance estimate": "newest estimate", "Drift": "newest check", "Serving": "newest request",
    "Monitors": "newest check", "Alerts": "newest alert"}
STYLE = """body{font-family:sans-serif;margin:2em;max-width:1000px} table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left} img{max-width:100%}
.age{color:#666;font-size:13px;margin-top:-0.6em} .empty{font-style:italic} .served{font-weight:bold}"""


def _head(now: datetime, refresh_seconds: int | None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">' if refresh_seconds else ""
    return (f'<!doctype html><html><head><meta charset="utf-8">{refresh}<title>hit_platform dashboard</title>'
            f'<meta name="rendered-at" content="{now.isoformat()}"><style>{STYLE}</style></head><body>\n'
            f"<h1>hit_platform dashboard</h1>\n")


def _rendered(now: datetime, refresh_seconds: int | None, origin: str) -> str:
    again = f"; it reloads itself every {int(refresh_seconds)} s" if refresh_seconds else ""
    return (f'Rendered <time datetime="{now.isoformat()}">{now:%Y-%m-%d %H:%M:%S} UTC</time>{again}. '
            f"{html.escape(origin)}").strip()


def render(lake: Lake, shadow: ShadowComparison | None = None, served: ServedNow | None = None, *,
           now: datetime | None = None, refresh_seconds: int | None = None, origin: str = "",
           importance_of: Callable[[str], Importance] | None = None) -> Dashboard:
    """The page and its summary; `shadow`: the newest challenger against its champion
    (`steps.shadow_comparison.newest`), None when no challenger has shadowed one; `served`: what the
    serving process serves now (`serving.process.status`), None when not asked; `now`: the render time
    the ages are measured against; `refresh_seconds`: the page reloads itself this often (None: never);
    `origin`: a sentence on where the page comes from (the asset's file, the live server); `importance_of`:
    a model version's global importance per country (`model_importance.load_importance`), None: not asked."""
    now = _utc(now) or datetime.now(timezone.utc)
    events = model_events.history(lake, limit=20)
    champion = next((e.to_version for e in events if e.kind in model_events.MOVES), None)
    with lake.connection(read_only=True) as con:
        quality, q = sec.quality(con, lake, champion)
        drift, drift_at = sec.drift(con, lake)
        latency, lat = sec.latency(con, lake)
        days = log_retention.traffic_by_day(con)  # raw days and, past the log's retention, their aggregates
        estimated, estimated_at = sec.estimates(con, lake)
        monitors, mon = sec.monitors(con, lake)
        snapshot = lake.snapshot_id(con)
    alerts = list_alerts(lake, limit=30)
    shown = None if q.get("version") is None else str(q["version"])
    said = served_line(served, shown)
    challenger = shadow.challenger_version if shadow is not None else getattr(served, "challenger_version", None)
    bodies = {
        "Model quality": (quality, q.get("newest")),
        "Global importance": sec.importance(shown, importance_of, challenger),
        "Model events": (sec.table([(e.event_at, e.kind, e.from_version or "none", e.to_version, e.who,
                                     e.reason[:200]) for e in events], ("when", "event", "from", "to", "who", "why"))
                         if events else sec.empty("The champion alias has not moved yet."),
                         events[0].event_at if events else None),
        "Shadow": (sec.shadow(shadow), shadow.last_at if shadow is not None else None),
        "Performance estimate": (estimated, estimated_at),
        "Drift": (drift, drift_at),
        "Serving": (latency + (f"<p>Traffic per day ({len(days)} newest days):</p>" + sec.table(
            days, ("day", "requests", "songs", "answered 5xx", "p99 ms", "from")) if days else ""), lat.get("newest")),
        "Monitors": (monitors, max((r[1] for r in mon), default=None)),
        "Alerts": (sec.table([(a["raised_at"], a["kind"], a["severity"], a["where"], a["what"][:200]) for a in alerts],
                             ("raised", "kind", "severity", "where", "what"))
                   if alerts else sec.empty("No alerts."), alerts[0]["raised_at"] if alerts else None)}
    scores = f"test mean ROC AUC {sec.fmt(q.get('auc'))} (oracle {sec.fmt(q.get('oracle'))})"
    champion_text = ("No champion to show: no model has been evaluated yet." if shown is None else
                     f"Champion shown: version {html.escape(shown)}, {scores}." if q.get("promoted") else
                     f"No champion yet: the newest candidate, version {html.escape(shown)}, was refused ({scores}).")
    page = (_head(now, refresh_seconds)
            + f'<p class="rendered">{_rendered(now, refresh_seconds, origin)} Lake snapshot {snapshot}.</p>\n'
            + f'<p class="champion">{champion_text} <span class="served">{html.escape(said)}</span></p>\n'
            + "".join(f'<section id="{title.lower().replace(" ", "-")}"><h2>{title}</h2>'
                      f"{age_line(SECTIONS[title], newest, now)}{body}</section>\n"
                      for title, (body, newest) in bodies.items())
            + "</body></html>")
    breached = [m for m, _, _, b in mon if b]
    summary = (f"**Champion** v{q.get('version', '—')}: test mean ROC AUC {sec.fmt(q.get('auc'))} "
               f"(oracle {sec.fmt(q.get('oracle'))}); {said}  \n"
               f"**Served** {lat.get('requests', 0)} requests ({lat.get('errors', 0)} errors) in the shown window  \n"
               f"**Monitors** {len(mon)} checked, breached: {', '.join(breached) or 'none'}  \n"
               f"**Alerts** {len(alerts)} latest" + (f", newest: {alerts[0]['kind']} at {alerts[0]['where']}: "
                                                   f"{alerts[0]['what'][:120]}" if alerts else ""))
    return Dashboard(page, summary, list(bodies), now, {t: _utc(n) for t, (_, n) in bodies.items()}, shown, said)


def render_current(lake: Lake, served: ServedNow | None = None, *, refresh_seconds: int | None = None,
                   origin: str = "", importance_of: Callable[[str], Importance] | None = None) -> Dashboard:
    """The page as the lake holds it now, with the newest shadow comparison; a lake not made yet gives
    a page that says so (and reloads itself until there is one)."""
    try:
        with lake.connection(read_only=True) as con:
            shadow = shadow_comparison.newest(con)
    except FileNotFoundError as exc:  # no lake yet
        now = datetime.now(timezone.utc)
        page = (_head(now, refresh_seconds) + f'<p class="rendered">{_rendered(now, refresh_seconds, origin)}</p>'
                f'<p class="empty">{html.escape(str(exc))}</p></body></html>')
        return Dashboard(page, f"no lake yet: {exc}", [], now, {}, None, served_line(served, None))
    return render(lake, shadow, served, refresh_seconds=refresh_seconds, origin=origin, importance_of=importance_of)


def publish(board: Dashboard, path: Path) -> Path:
    """Write the page to `path` whole: a reader (or its own reload) never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(board.html, encoding="utf-8")
    tmp.replace(path)
    return path
