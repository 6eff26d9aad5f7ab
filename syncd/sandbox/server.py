"""A small loopback HTTP emulator framework: routes, fault injection, traffic recording.

A vendor emulator subclasses `Emulator`, registers routes and keeps its own state. This
module owns the socket and threads, the injected faults, the request counters and the
contract trace, so every vendor emulator behaves the same way under test.

Threading: the server answers each connection on its own daemon thread. Emulator state is
touched from those threads and from the test thread, so `Emulator.lock` (re-entrant) guards
all of it: `handle` runs under it, and a subclass's control methods take it as well.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import parse_qs, urlsplit

from syncd.http import TraceWriter
from syncd.redact import redact, redact_headers, redact_url

JSON_TYPE = "application/json; charset=utf-8"
# What a "malformed" fault answers: it claims to be JSON and is cut off mid-document, the
# way a proxy that dropped the connection halfway leaves it.
MALFORMED_BODY = b'[{"id": 1, "title": "truncat'


@dataclass
class Request:
    method: str
    url: str  # as the client sent it: scheme, host, path and query
    path: str  # below the emulator's prefix, e.g. "/repos/acme/api/issues"
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # placeholders of the matched route
    template: str | None = None  # the matched route, e.g. "/repos/{owner}/{repo}/issues"

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not."""
        return json.loads(self.body)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased


def json_response(status: int, data: Any, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False).encode()
    return Response(status, body, {"content-type": JSON_TYPE, **(headers or {})})


class HttpError(Exception):
    """Raised by a handler to answer with `response` instead of its normal result."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


Handler = Callable[[Request], Response]


@dataclass
class Fault:
    """A deviation the next matching request(s) get instead of (or before) the normal answer.

    `status` answers with that status, `headers` and `body` (bytes/str as is, anything else
    as JSON). `delay` sleeps first; on its own it then answers normally. `drop` closes the
    connection without any response. `lose_answer` handles the request, then closes the
    connection without the answer: the change was made, the client cannot know it (a lost
    response). `malformed` answers 200 with a body that is not JSON.
    `method` and `path` (a regex searched in the path below the prefix) narrow which requests
    match; `times` is how many it applies to (None: all of them).

    Two hooks let a test act at an exact moment: `before` runs just before the emulator
    handles the request (a person's edit landing between syncd's read and its write);
    `rewrite` gets the JSON of the emulator's own answer and returns what to send instead
    (a field left out, a wrong type). With no `status`, `headers` are added to the
    emulator's own answer (a malformed rate-limit header). Rewritten answers and added
    headers are off-contract on purpose and stay out of the contract trace.
    """

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = b""
    times: int | None = 1
    method: str | None = None
    path: str | None = None
    delay: float = 0.0
    drop: bool = False
    lose_answer: bool = False
    malformed: bool = False
    before: Callable[[Request], None] | None = None
    rewrite: Callable[[Any], Any] | None = None

    def matches(self, request: Request) -> bool:
        if self.method is not None and self.method.upper() != request.method:
            return False
        return self.path is None or re.search(self.path, request.path) is not None

    def response(self) -> Response | None:
        """What to answer, or None when the emulator should answer normally."""
        if self.malformed:
            return Response(self.status or 200, MALFORMED_BODY, {"content-type": JSON_TYPE})
        if self.status is None:
            return None
        if isinstance(self.body, bytes | str):
            body = self.body.encode() if isinstance(self.body, str) else self.body
            return Response(self.status, body, {"content-type": JSON_TYPE, **self.headers})
        return json_response(self.status, self.body, self.headers)


class Faults:
    """The emulator's fault queue: matched in order, each consumed `times` times."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._items: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._items.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def take(self, request: Request) -> Fault | None:
        with self._lock:
            for fault in self._items:
                if fault.matches(request):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._items.remove(fault)
                    return fault
        return None


def _compile(template: str) -> re.Pattern[str]:
    """A route template as a regex: {name} matches one path segment, {name:regex} its regex."""
    out = []
    for part in re.split(r"(\{[^}]+\})", template):
        if part.startswith("{") and part.endswith("}"):
            name, _, pattern = part[1:-1].partition(":")
            out.append(f"(?P<{name}>{pattern or '[^/]+'})")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


class Emulator:
    """A loopback HTTP server with a route table; subclasses add routes and state."""

    service = "generic"  # the trace's `service` field
    prefix = ""  # the API root below the host, e.g. "/api/v3"
    server_name = "sandbox"

    def __init__(self, *, trace: TraceWriter | None = None) -> None:
        self.trace = trace
        self.lock = threading.RLock()
        self.faults = Faults(self.lock)
        self.errors: list[BaseException] = []  # handler crashes, answered with 500
        self._routes: list[tuple[str, str, re.Pattern[str], Handler]] = []
        self._counts: Counter[tuple[str, str, int]] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()

    # -- routes --------------------------------------------------------------------------
    def route(self, method: str, template: str, handler: Handler) -> None:
        """Register `handler` for `method` on `template` ("/issues/{number:\\d+}")."""
        name = re.sub(r"\{([^}:]+):[^}]+\}", r"{\1}", template)
        self._routes.append((method.upper(), name, _compile(template), handler))

    def handle(self, request: Request) -> Response:
        """Answer one request (called under the lock). Subclasses wrap it for auth etc."""
        return self.dispatch(request)

    def dispatch(self, request: Request) -> Response:
        handler = self._resolve(request)
        return handler(request) if handler is not None else self.not_found(request)

    def _resolve(self, request: Request) -> Handler | None:
        """Find the route, filling in request.params and request.template."""
        for method, name, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                request.params, request.template = match.groupdict(), name
                return handler
        return None

    def not_found(self, request: Request) -> Response:
        return json_response(404, {"message": "Not Found"})

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"the {self.service} emulator is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"the {self.service} emulator is already running")
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _RequestHandler)
        server.emulator = self
        self._server = server
        # A short poll interval keeps stop() fast: shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.service}-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        with self.lock:
            self._stopping.set()  # also cuts short any delay fault in progress
            open_connections = list(self._connections)
        server.shutdown()
        # Keep-alive connections park their threads in a blocking read; shutting the
        # sockets down wakes them, so server_close() can join every handler thread.
        for conn in open_connections:
            _shutdown(conn)
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- counters ------------------------------------------------------------------------
    @property
    def counts(self) -> Counter[tuple[str, str, int]]:
        """(method, route template, status) -> requests; status 0 means dropped."""
        with self.lock:
            return Counter(self._counts)

    def count(
        self, method: str | None = None, path: str | None = None, status: int | None = None
    ) -> int:
        return sum(
            n
            for (m, p, s), n in self.counts.items()
            if (method is None or m == method.upper())
            and (path is None or p == path)
            and (status is None or s == status)
        )

    def reset_counts(self) -> None:
        with self.lock:
            self._counts.clear()

    # -- one exchange, on a server thread ------------------------------------------------
    def _opened(self, conn: socket.socket) -> None:
        with self.lock:
            self._connections.add(conn)
            stopping = self._stopping.is_set()
        if stopping:  # accepted while stop() was running: it did not see this one
            _shutdown(conn)

    def _closed(self, conn: socket.socket) -> None:
        with self.lock:
            self._connections.discard(conn)

    def _exchange(self, handler: _RequestHandler, body: bytes) -> Response | None:
        split = urlsplit(handler.path)
        host = handler.headers.get("host") or f"127.0.0.1:{self.port}"
        inside = split.path == self.prefix or split.path.startswith(self.prefix + "/")
        request = Request(
            method=handler.command,
            url=f"http://{host}{handler.path}",
            path=split.path[len(self.prefix) :] or "/",
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        if inside:
            self._resolve(request)  # so faulted requests are counted by route as well
        fault = self.faults.take(request)
        if fault is not None and fault.delay and self._stopping.wait(fault.delay):
            return None  # stopped mid-delay: the client gets a closed connection, as on a crash
        if fault is not None and fault.drop:
            self._count(request, 0)
            return None
        if fault is not None and fault.before is not None:
            fault.before(request)
        if fault is not None and fault.lose_answer and inside:
            self._count(request, self._handle_safely(request).status)
            return None
        response = fault.response() if fault is not None else None
        # Injected answers are the test's words, not the emulator's, and some are off-contract
        # on purpose, so only the emulator's own answers go into the contract trace.
        record = response is None and inside
        if response is None:
            response = self._handle_safely(request) if inside else self.not_found(request)
            if fault is not None and fault.rewrite is not None and response.status < 300:
                response = json_response(
                    response.status, fault.rewrite(json.loads(response.body)), response.headers
                )
                record = False
            if fault is not None and fault.status is None and fault.headers:
                response.headers.update({k.lower(): v for k, v in fault.headers.items()})
                record = False
        self._count(request, response.status)
        if record and self.trace is not None:
            self.trace.write(self._record(request, response))
        return response

    def _handle_safely(self, request: Request) -> Response:
        try:
            with self.lock:
                return self.handle(request)
        except HttpError as exc:
            return exc.response
        except Exception as exc:
            # A crash here is an emulator bug: keep it for the test to see, answer like a
            # server would, and keep serving.
            with self.lock:
                self.errors.append(exc)
            traceback.print_exc()
            return json_response(500, {"message": "Server Error"})

    def _count(self, request: Request, status: int) -> None:
        with self.lock:
            self._counts[(request.method, request.template or request.path, status)] += 1

    def _record(self, request: Request, response: Response) -> dict[str, Any]:
        return {
            "service": self.service,
            "method": request.method,
            "url": redact_url(request.url),
            "base_url": redact_url(self.base_url),
            "request_headers": redact_headers(request.headers),
            "request_body": redact(request.body.decode("utf-8", "replace")) or None,
            "status": response.status,
            "response_headers": redact_headers(response.headers),
            "response_body": redact(response.body.decode("utf-8", "replace")) or None,
        }


def _shutdown(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by its own thread
        conn.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    # Daemon handler threads, still tracked and joined by server_close() (block_on_close).
    daemon_threads = True
    emulator: Emulator


class _RequestHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive, as the real APIs speak it, so clients' connection pools are used.
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle's algorithm the body then waits for
    # the client's delayed ACK, about 40 ms per response on Linux loopback.
    disable_nagle_algorithm = True
    timeout = 30  # a client that goes silent cannot hold a thread forever

    @property
    def emulator(self) -> Emulator:
        return cast(_Server, self.server).emulator

    def setup(self) -> None:
        super().setup()
        self.emulator._opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.emulator._closed(self.connection)

    def version_string(self) -> str:
        return self.emulator.server_name

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the counters and the trace are the record; stderr noise helps nobody

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        response = self.emulator._exchange(self, self._read_body())
        if response is None:
            self.close_connection = True
            return
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if response.status not in (204, 304):
                self.send_header("content-length", str(len(response.body)))
            self.end_headers()
            if response.body and response.status not in (204, 304):
                self.wfile.write(response.body)
        except ConnectionError:
            # The client gave up first (a timeout, a delay fault): that is its business.
            self.close_connection = True
        if self.emulator._stopping.is_set():
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve
