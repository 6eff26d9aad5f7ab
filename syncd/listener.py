"""The daemon's HTTP listener (`[http] listen`): webhooks, /healthz and /metrics.

It runs uvicorn in a thread of the daemon. It never touches the ledger's writer: a hook
only asks the daemon to poll a source now (Hub.wake), /healthz reports the watchdog's last
verdict, and /metrics reads the ledger through a read-only connection of its own.

Routes:
    POST /hooks/<source>   a signed webhook: 202 and a poll of <source> soon; 401 unsigned
                           or badly signed; 409 a delivery already seen; 413 too large;
                           404 no such source (or no webhook secret for it)
    HEAD /hooks/<source>   200 for a source that takes hooks: Trello checks its callback
                           URL this way when the webhook is registered
    GET  /healthz          200 "ok" while the daemon makes progress, else 503 and why
    GET  /metrics          Prometheus text format
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from syncd.errors import SyncdError
from syncd.metrics import CONTENT_TYPE, DaemonMetrics
from syncd.webhooks import HookTarget, Seen, delivery_keys, verify

log = structlog.get_logger("syncd.listener")


class BodyTooLarge(Exception):
    pass


@dataclass
class Hub:
    """What the listener asks of the daemon."""

    target: Callable[[str], HookTarget | None]  # a source's hook settings, None: refuse
    wake: Callable[[str], None]  # poll this source now (coalesced)
    health: Callable[[], tuple[bool, str]]  # the watchdog's verdict
    metrics: DaemonMetrics
    max_body: Callable[[], int]


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(hub: Hub) -> Starlette:
    seen = Seen()

    def count(source: str, result: str) -> None:
        hub.metrics.webhooks.labels(source, result).inc()

    async def hook(request: Request) -> Response:
        name = request.path_params["source"]
        target = hub.target(name)
        if target is None:
            # The path is the sender's to choose: never a label value of its own.
            count("", "unknown_source")
            return PlainTextResponse("no such source takes webhooks\n", status_code=404)
        try:
            body = await _read_capped(request, hub.max_body())
        except BodyTooLarge:
            count(name, "too_large")
            return PlainTextResponse("body too large\n", status_code=413)
        headers = {k.lower(): v for k, v in request.headers.items()}
        outcome = verify(target, body, headers)
        if outcome != "accepted":
            count(name, outcome)
            log.warning("webhook refused", source=name, result=outcome)
            return PlainTextResponse("signature missing or wrong\n", status_code=401)
        if not seen.first_time(delivery_keys(target, body, headers)):
            count(name, "replay")
            return PlainTextResponse("delivery already received\n", status_code=409)
        count(name, "accepted")
        hub.wake(name)
        return PlainTextResponse("polling soon\n", status_code=202)

    async def hook_check(request: Request) -> Response:
        found = hub.target(request.path_params["source"]) is not None
        return Response(status_code=200 if found else 404)

    async def healthz(request: Request) -> Response:
        healthy, reason = hub.health()
        return PlainTextResponse(f"{reason}\n", status_code=200 if healthy else 503)

    async def metrics(request: Request) -> Response:
        # Reading the ledger blocks; keep the event loop free for hooks meanwhile.
        body = await asyncio.to_thread(hub.metrics.render)
        return Response(body, media_type=CONTENT_TYPE)

    return Starlette(
        routes=[
            Route("/hooks/{source}", hook, methods=["POST"]),
            Route("/hooks/{source}", hook_check, methods=["HEAD"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound in the caller's thread so a taken port fails at start."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SyncdError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    return sock


def http_server(app: Starlette) -> uvicorn.Server:
    """uvicorn for syncd's own HTTP (hooks, metrics, the board), to serve on a socket from
    bind(): no access log, no lifespan events, and few connections held open."""
    return uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_keep_alive=5,
            # A slow or hostile client holds no more than this many connections open.
            limit_concurrency=64,
        )
    )


class Listener:
    """uvicorn serving `app` on `sock` in a background thread."""

    def __init__(self, app: Starlette, sock: socket.socket) -> None:
        self.sock = sock
        self.server = http_server(app)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="listener", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()
