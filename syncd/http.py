"""HTTP for adapters: one client per source, with retries, error classes and a traffic trace.

Errors are split the way the vendors document them: 429, 5xx, timeouts and dropped
connections are retriable; any other 4xx is fatal and is never retried. A wait the server
asks for (Retry-After, a rate-limit reset) is honoured when it is short; a longer one ends the
cycle with RateLimited, so one source that must wait an hour does not hold a worker thread.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)

from syncd import __version__
from syncd.errors import (
    FatalError,
    MalformedResponse,
    RateLimited,
    ResponseTooLarge,
    RetriableError,
)
from syncd.filemodes import open_append
from syncd.redact import redact, redact_headers, redact_url
from syncd.safetext import safe_text

# A body excerpt in an error message: enough to see what went wrong, never a whole page.
_EXCERPT = 300
# A header value longer than this is never parsed: no rate-limit header needs more.
_MAX_HEADER = 200
# Waits and resets further away than this are not believed: a malformed header (a reset in
# milliseconds, an overflow) must not park a source for years.
_MAX_WAIT_AHEAD = timedelta(days=2)
DEFAULT_MAX_BODY = 32 * 1024 * 1024
_CHUNK = 64 * 1024
# The encodings syncd asks for (Accept-Encoding), each with a decoder that can be bounded.
_ACCEPT_ENCODING = "gzip, deflate"
_DECODERS: dict[str, Callable[[], Any]] = {
    "": lambda: None,
    "identity": lambda: None,
    "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    "x-gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    "deflate": lambda: zlib.decompressobj(32 + zlib.MAX_WBITS),
}

log = structlog.get_logger(__name__)


class TraceWriter:
    """Appends one JSON line per HTTP exchange, in the contract checker's format, redacted."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False)
        # 0600 whatever the umask: a trace holds whole response bodies.
        with self._lock, os.fdopen(open_append(self.path), "a", encoding="utf-8") as f:
            f.write(line + "\n")


def exchange_record(
    service: str, base_url: str, response: httpx.Response, request_body: bytes | None
) -> dict[str, Any]:
    request = response.request
    body = response.content
    return {
        "service": service,
        "method": request.method,
        "url": redact_url(str(request.url)),
        "base_url": redact_url(base_url),
        "request_headers": redact_headers(dict(request.headers)),
        "request_body": redact(request_body.decode("utf-8", "replace")) if request_body else None,
        "status": response.status_code,
        "response_headers": redact_headers(dict(response.headers)),
        "response_body": redact(body.decode("utf-8", "replace")) if body else None,
    }


@dataclass
class HttpOptions:
    trace: TraceWriter | None = None
    timeout: float = 30.0
    attempts: int = 4  # tries per request, the first included
    max_wait: float = 30.0  # longest server-requested wait honoured inside one request
    backoff: float = 0.5  # first backoff, doubled per attempt when the server names no wait
    sleep: Callable[[float], None] = time.sleep
    transport: httpx.BaseTransport | None = None  # a test seam; None means the network
    max_body: int = DEFAULT_MAX_BODY  # bytes of one decompressed answer


def ignored_header(name: str, value: str, why: str) -> None:
    """Every header is the sender's word: one that cannot be read is logged and ignored,
    never allowed to fail more than the one thing it describes."""
    log.warning("header_ignored", header=name, value=value[:80], reason=why)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After value (seconds or an HTTP date); None when absent or
    unreadable (logged), so the caller's own backoff applies."""
    if not value:
        return None
    raw, value = value, value.strip()
    if len(value) > _MAX_HEADER:
        ignored_header("retry-after", raw, "too long")
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except Exception:  # the parser raises more than ValueError on garbage
            ignored_header("retry-after", raw, "neither seconds nor an HTTP date")
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds) or seconds > _MAX_WAIT_AHEAD.total_seconds():
        ignored_header("retry-after", raw, "not a plausible wait")
        return None
    return max(0.0, seconds)


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """A small counter header (rate limit remaining/limit); None when absent or unreadable.
    ASCII digits only: str.isdigit() also accepts "²", which int() refuses."""
    value = headers.get(name)
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        ignored_header(name, value, "not a count")
        return None
    return int(text)


def parse_epoch(name: str, value: str | None) -> datetime | None:
    """A rate-limit reset given in epoch seconds (GitHub's x-ratelimit-reset); None when
    absent or unreadable (logged). Milliseconds, negatives and far futures are unreadable:
    guessing a unit would be believing a header that already broke its contract."""
    if not value:
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 12:
        ignored_header(name, value, "not epoch seconds")
        return None
    when = datetime.fromtimestamp(int(text), UTC) if int(text) < 32503680000 else None
    if when is None or when > datetime.now(UTC) + _MAX_WAIT_AHEAD:
        ignored_header(name, value, "too far in the future (milliseconds?)")
        return None
    return when


# Given a response, an adapter may name how long to wait (vendor rate-limit rules); None
# means the generic rules apply.
WaitRule = Callable[[httpx.Response], float | None]


def classify(source: str, response: httpx.Response, wait_rule: WaitRule | None = None) -> None:
    """Raise the error class a non-2xx/304 response belongs to; return for success."""
    status = response.status_code
    if status < 400:
        return
    url = redact_url(str(response.request.url))
    excerpt = redact(response.text[:_EXCERPT]).replace("\n", " ")
    wait = wait_rule(response) if wait_rule else None
    if wait is None and (status == 429 or status >= 500):
        wait = parse_retry_after(response.headers.get("retry-after"))
    message = f"{response.request.method} {url} answered {status}: {excerpt}"
    if wait is not None:
        err = RetriableError(source, message, retry_after=wait)
        err.retry_after = wait
        raise err
    if status == 429 or status >= 500:
        raise RetriableError(source, message)
    raise FatalError(source, message)


class ApiClient:
    """A source's HTTP client. Counts requests, so cycles and benchmarks can report them."""

    def __init__(
        self,
        *,
        service: str,
        source: str,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        options: HttpOptions | None = None,
        wait_rule: WaitRule | None = None,
    ) -> None:
        self.service = service
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.options = options or HttpOptions()
        self.wait_rule = wait_rule
        self.counts: Counter[str] = Counter()  # "GET 200" -> n
        self.last_response: httpx.Response | None = None
        self._client = httpx.Client(
            base_url=self.base_url + "/",
            headers={
                "user-agent": f"syncd/{__version__}",
                "accept-encoding": _ACCEPT_ENCODING,
                **(headers or {}),
            },
            params=dict(params or {}),
            auth=auth,
            timeout=self.options.timeout,
            transport=self.options.transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    @property
    def requests_made(self) -> int:
        return sum(self.counts.values())

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetriableError) and exc.retry_after is not None:
            return exc.retry_after
        return float(self.options.backoff * (2 ** (state.attempt_number - 1)))

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        once: bool = False,
    ) -> httpx.Response:
        """Send with retries; returns 2xx and 304 responses, raises SourceError otherwise.

        `once` sends a request that is not idempotent (posting a comment) a single time: a
        retry after a lost answer would repeat what the first try may already have done, so
        the caller decides, after checking the tool, whether to send it again."""

        def give_up_on_long_wait(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, RetriableError) and (exc.retry_after or 0) > self.options.max_wait:
                return True
            return bool(stop_after_attempt(1 if once else self.options.attempts)(state))

        retrying = Retrying(
            retry=retry_if_exception_type(RetriableError),
            stop=give_up_on_long_wait,
            wait=self._wait,
            sleep=self.options.sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._send_once(method, url, params, json_body, headers)
        except RetriableError as exc:
            if exc.retry_after and exc.retry_after > self.options.max_wait:
                at = datetime.now(UTC) + timedelta(seconds=exc.retry_after)
                raise RateLimited(self.source, exc.detail, at) from None
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_once(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        content = json.dumps(json_body).encode() if json_body is not None else None
        hdrs = dict(headers or {})
        if content is not None:
            hdrs.setdefault("content-type", "application/json")
        try:
            request = self._client.build_request(
                method,
                url.lstrip("/") if not url.startswith("http") else url,
                params=params,
                content=content,
                headers=hdrs,
            )
            response = self._client.send(request, stream=True)
            try:
                self._read_bounded(response)
            finally:
                response.close()
        except httpx.TimeoutException:
            self.counts[f"{method} timeout"] += 1
            raise RetriableError(self.source, f"{method} {redact_url(url)} timed out") from None
        except httpx.TransportError as exc:
            self.counts[f"{method} error"] += 1
            raise RetriableError(
                self.source,
                f"{method} {redact_url(url)} failed: {type(exc).__name__}{_os_reason(exc)}",
            ) from None
        self.counts[f"{method} {response.status_code}"] += 1
        self.last_response = response
        if self.options.trace is not None:
            self.options.trace.write(
                exchange_record(self.service, self.base_url, response, content)
            )
        classify(self.source, response, self.wait_rule)
        return response

    def _read_bounded(self, response: httpx.Response) -> None:
        """Read the body a network chunk at a time, decompressing it here with an output
        bound (httpx's own decoder inflates a whole chunk at once: 64 KiB of gzip can be
        64 MiB), and stop as soon as it passes the limit: memory stays bounded whatever
        the body expands to."""
        limit = self.options.max_body
        method, url = response.request.method, redact_url(str(response.request.url))
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding not in _DECODERS:
            raise FatalError(
                self.source,
                f"{method} {url} answered with Content-Encoding {encoding[:40]!r}, "
                f"which syncd does not ask for",
            )
        decoder = _DECODERS[encoding]()
        body = bytearray()

        def take(data: bytes) -> None:
            if len(body) + len(data) > limit:
                self.counts[f"{method} too large"] += 1
                raise ResponseTooLarge(
                    self.source,
                    f"{method} {url} answered more than {limit} bytes once decompressed "
                    f"([daemon] max_response_bytes = {limit})",
                )
            body.extend(data)

        if response.is_stream_consumed:
            # Built in memory by a test transport (respx): already read and decoded.
            take(response.content)
            return
        try:
            for raw in response.iter_raw(_CHUNK):
                if decoder is None:
                    take(raw)
                    continue
                data = raw
                while data:
                    # At most one byte past the limit per step, so the check above fires
                    # before any more is inflated.
                    take(decoder.decompress(data, limit - len(body) + 1))
                    data = decoder.unconsumed_tail
            if decoder is not None:
                take(decoder.flush())
        except zlib.error:
            raise MalformedResponse(
                self.source, f"{method} {url} answered a body that does not decompress"
            ) from None
        # httpx keeps a read body here; building a new Response instead would decode the
        # already decompressed bytes a second time.
        response._content = bytes(body)

    def json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            excerpt = redact(response.text[:_EXCERPT]).replace("\n", " ")
            raise MalformedResponse(
                self.source,
                f"{response.request.method} {redact_url(str(response.request.url))} "
                f"answered {response.status_code} with a body that is not JSON: {excerpt!r}",
            ) from None


def _os_reason(exc: BaseException) -> str:
    """The operating system's (or TLS library's) words for a transport failure, which say
    what to fix: "Connection refused", "Name or service not known", "certificate verify
    failed". Only the OSError at the root of the chain, never httpx's own text, which may
    carry the URL."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            words = safe_text(redact(str(seen)))[:200]
            return f" ({words})" if words else ""
        seen = seen.__cause__ or seen.__context__
    return ""
