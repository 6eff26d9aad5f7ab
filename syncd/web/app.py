"""`syncd web`: the board, a Starlette app over a read-only ledger.

Read-only by construction: every request opens the ledger with `Ledger(readonly=True)`
(SQLite `mode=ro` and `PRAGMA query_only`), and the app has GET routes only. It runs as its
own process beside the daemon; under WAL its reads never wait for the daemon's writes.

Safety: Jinja2 autoescapes every value (titles, names and notes come from sources and are
written by anyone); tool links are http(s) only; the Content-Security-Policy allows scripts,
styles and fetches from this origin only, with no inline script or style; the Host header is
checked (so a page elsewhere cannot reach a loopback board by DNS rebinding).

Routes:
    GET /                 the board (filters in the query: team, person, source, state)
    GET /r/<REQ-42>       one request: linked items, timeline, relations
    GET /health           source health
    GET /api/feed?after=N handoffs after event N, newest first (JSON), for the live feed
    GET /static/...       the board's CSS and JS, shipped in the package
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncd import render
from syncd.config import Team
from syncd.errors import NotFound, SyncdError
from syncd.ledger import Ledger, now_utc
from syncd.models import STATES
from syncd.queries import request_detail
from syncd.web import data

HERE = Path(__file__).parent

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
FEED_POLL_MS = 3000


@dataclass
class Settings:
    ledger: Path
    teams: Sequence[Team] = ()
    stale_after: timedelta = timedelta(days=3)
    # Per owner: how long a handoff may wait for acceptance (None: never overdue).
    accept_within: Callable[[str], timedelta | None] | None = None
    # When each source counts as stale in the health table (from the config's intervals).
    source_stale_after: dict[str, timedelta] = field(default_factory=dict)
    allowed_hosts: Sequence[str] = ("127.0.0.1", "localhost", "[::1]", "::1")


class SecurityHeaders:
    """Adds the headers above to every response, error pages and static files included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def clock(ts: str | None) -> str:
    """The time of day of a timestamp, "07:06:17Z": enough in a narrow column of today's polls."""
    when = render.when(ts)
    return when.split(" ", 1)[1] if " " in when else when


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("syncd.web", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = render.when
    env.filters["span"] = render.span
    env.filters["clock"] = clock
    env.filters["safe_url"] = data.safe_url
    return env


def create_app(settings: Settings) -> Starlette:
    templates = Jinja2Templates(env=_environment())

    def open_ledger() -> Ledger:
        return Ledger(settings.ledger, readonly=True)

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        return templates.TemplateResponse(
            request, name, {**context, "feed_poll_ms": FEED_POLL_MS}, status_code=status
        )

    def board(request: Request) -> Response:
        filters = data.Filters.from_query(
            request.query_params, request.query_params.getlist("state")
        )
        now = now_utc()
        with open_ledger() as ledger:
            view = data.board(
                ledger,
                now=now,
                filters=filters,
                teams=settings.teams,
                stale_after=settings.stale_after,
                accept_within=settings.accept_within,
            )
            people = ledger.rows("SELECT id, coalesce(name, id) AS name FROM people ORDER BY 2")
            sources = [r["source"] for r in ledger.rows("SELECT DISTINCT source FROM links")]
            health = data.health(ledger, now=now, stale_after=settings.source_stale_after)
            feed = data.feed(ledger)
        return page(
            request,
            "board.html",
            {
                **view,
                "now": now,
                "filters": filters,
                "states": STATES,
                "people": people,
                "sources": sorted(sources),
                "teams": [t.id for t in settings.teams],
                "health": health,
                "feed": feed,
                "stale_after": settings.stale_after,
            },
        )

    def request_page(request: Request) -> Response:
        key = request.path_params["key"]
        with open_ledger() as ledger:
            try:
                detail = request_detail(ledger, key)
            except NotFound as exc:
                return page(request, "missing.html", {"message": str(exc)}, status=404)
            related = data.relations(ledger, detail["id"])
        return page(request, "request.html", {"r": detail, "relations": related})

    def health_page(request: Request) -> Response:
        now = now_utc()
        with open_ledger() as ledger:
            health = data.health(ledger, now=now, stale_after=settings.source_stale_after)
        return page(request, "health.html", {"health": health, "now": now})

    def feed_api(request: Request) -> Response:
        after = request.query_params.get("after", "0")
        with open_ledger() as ledger:
            rows = data.feed(ledger, after=int(after) if after.isdigit() else 0)
        return JSONResponse(rows, headers={"cache-control": "no-store"})

    async def not_found(request: Request, exc: Exception) -> Response:
        return page(request, "missing.html", {"message": "No such page."}, status=404)

    async def unreadable(request: Request, exc: Exception) -> Response:
        # The ledger moved, was replaced or is locked for long: say so, keep serving, and
        # let the feed's indicator turn red; the next request tries again.
        message = f"The ledger cannot be read now: {exc}"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=503)
        return page(request, "missing.html", {"message": message}, status=503)

    routes = [
        Route("/", board, methods=["GET"]),
        Route("/r/{key}", request_page, methods=["GET"]),
        Route("/health", health_page, methods=["GET"]),
        Route("/api/feed", feed_api, methods=["GET"]),
        Mount("/static", StaticFiles(packages=[("syncd.web", "static")]), name="static"),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        404: not_found,
        SyncdError: unreadable,
        sqlite3.Error: unreadable,
    }
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts)),
        ],
        exception_handlers=handlers,
    )
