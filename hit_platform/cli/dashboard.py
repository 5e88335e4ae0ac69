"""`hit-platform dashboard`: the dashboard served on 127.0.0.1, rendered from the lake as it is now.

A request gets the page rendered from the lake and the serving process's status at most
HIT_DASHBOARD_RENDER_SECONDS ago (one rendering at a time; requests in between share it), and the
page reloads itself every HIT_DASHBOARD_REFRESH_SECONDS, so an open tab follows the platform: what
it shows is what is true now, each section with its age. The standard library's ThreadingHTTPServer;
Ctrl-C stops it. The file the asset ops/dashboard writes is the same page as of its last build.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hit_platform.settings import Settings

HOST = "127.0.0.1"


def add_dashboard_command(subparsers) -> None:
    """The `dashboard` command on the CLI's subparsers."""
    p = subparsers.add_parser(
        "dashboard", help="serve the dashboard on 127.0.0.1 (HIT_DASHBOARD_PORT, default 8050), live from the lake",
        description="Serves the dashboard on http://127.0.0.1:PORT/, rendered from the lake and the serving "
                    "process's status at most every HIT_DASHBOARD_RENDER_SECONDS (default 5) and reloading itself "
                    "every HIT_DASHBOARD_REFRESH_SECONDS (default 30): each section says how old it is, and the page "
                    "whether the champion it shows is the one served now. Ctrl-C stops it.")
    p.add_argument("--port", type=_port, default=None,
                   help="port on 127.0.0.1 (default: HIT_DASHBOARD_PORT, 8050)")
    p.set_defaults(func=cmd_dashboard)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {port}")
    return port


class LivePage:
    """The page, rendered again when the last rendering is `render_seconds` old; one rendering at a time."""

    def __init__(self, render: Callable[[], str], render_seconds: float,
                 clock: Callable[[], float] = time.monotonic):
        self._render = render
        self.render_seconds = render_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._page: bytes | None = None
        self._at = 0.0
        self.renderings = 0

    def get(self) -> bytes:
        with self._lock:
            if self._page is None or self._clock() - self._at >= self.render_seconds:
                self._page = self._render().encode("utf-8")
                self._at = self._clock()
                self.renderings += 1
            return self._page


def lake_page(settings: Settings) -> Callable[[], str]:
    """What a rendering is: the lake as it is now, with what the serving process serves now."""
    from hit_platform.adapters.lake.connection import Lake
    from hit_platform.adapters.model_importance import load_importance
    from hit_platform.adapters.reports.dashboard import render_current
    from hit_platform.adapters.tracking import Tracker
    from hit_platform.serving import process

    d = settings.dashboard
    origin = (f"Served live by hit-platform dashboard: rendered from the lake at most every {d.render_seconds:g} s.")
    lake = Lake(settings)
    return lambda: render_current(lake, process.status(settings), refresh_seconds=d.refresh_seconds,
                                  origin=origin, importance_of=lambda v: load_importance(Tracker(settings), v)).html


def make_server(page: LivePage, port: int) -> ThreadingHTTPServer:
    """The HTTP server on 127.0.0.1:port (raises OSError when the port is taken): GET / is the page,
    GET /healthz says ok."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "hit-platform-dashboard"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self._answer(head=False)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(head=True)

        def _answer(self, head: bool) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                try:
                    status, body = 200, page.get()
                except Exception as exc:  # the page says what failed; the terminal gets the traceback
                    traceback.print_exc(file=sys.stderr)
                    status, body = 500, (f'<!doctype html><meta http-equiv="refresh" content="10">'
                                         f"<p>the dashboard could not be rendered: {type(exc).__name__}: "
                                         f"{exc}</p>").encode()
                self._send(status, "text/html; charset=utf-8", body, head)
            elif path == "/healthz":
                self._send(200, "text/plain; charset=utf-8", b"ok\n", head)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: the dashboard is at /\n", head)

        def _send(self, status: int, kind: str, body: bytes, head: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # quiet: a reloading tab asks every 30 s
            pass

    return ThreadingHTTPServer((HOST, port), Handler)


def _stop_on_sigterm() -> None:
    """SIGTERM stops the server as Ctrl-C does (a process manager's stop is a clean stop too)."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    port = args.port if args.port is not None else settings.dashboard.port
    page = LivePage(lake_page(settings), settings.dashboard.render_seconds)
    try:
        server = make_server(page, port)
    except OSError as exc:
        why = ("the port is in use (another dashboard?); choose another with --port or HIT_DASHBOARD_PORT"
               if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc))
        print(f"hit-platform dashboard: error: cannot serve the dashboard on {HOST}:{port}: {why}", file=sys.stderr)
        return 2
    d = settings.dashboard
    reload = f"reloads itself every {d.refresh_seconds} s" if d.refresh_seconds else "does not reload itself"
    print(f"dashboard: http://{HOST}:{port}/  (rendered from the lake at most every {d.render_seconds:g} s, the page "
          f"{reload}; Ctrl-C stops it)", flush=True)
    _stop_on_sigterm()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("dashboard stopped", flush=True)
    finally:
        server.server_close()
    return 0
