"""HTTP for adapters: one client per source, with retries, error classes and a traffic trace.

Errors are split the way the vendors document them: 429, 5xx, timeouts and dropped
connections are retriable; any other 4xx is fatal and is never retried. A wait the server
asks for (Retry-After, a rate-limit reset) is honoured when it is short; a longer one ends the
cycle with RateLimited, so one source that must wait an hour does not hold a worker thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)

from syncd import __version__
from syncd.errors import FatalError, MalformedResponse, RateLimited, RetriableError
from syncd.redact import redact, redact_headers, redact_url

# A body excerpt in an error message: enough to see what went wrong, never a whole page.
_EXCERPT = 300


class TraceWriter:
    """Appends one JSON line per HTTP exchange, in the contract checker's format, redacted."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as f:
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


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


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
            headers={"user-agent": f"syncd/{__version__}", **(headers or {})},
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
    ) -> httpx.Response:
        """Send with retries; returns 2xx and 304 responses, raises SourceError otherwise."""

        def give_up_on_long_wait(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, RetriableError) and (exc.retry_after or 0) > self.options.max_wait:
                return True
            return bool(stop_after_attempt(self.options.attempts)(state))

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
            response = self._client.request(
                method,
                url.lstrip("/") if not url.startswith("http") else url,
                params=params,
                content=content,
                headers=hdrs,
            )
        except httpx.TimeoutException:
            self.counts[f"{method} timeout"] += 1
            raise RetriableError(self.source, f"{method} {redact_url(url)} timed out") from None
        except httpx.TransportError as exc:
            self.counts[f"{method} error"] += 1
            raise RetriableError(
                self.source, f"{method} {redact_url(url)} failed: {redact(type(exc).__name__)}"
            ) from None
        self.counts[f"{method} {response.status_code}"] += 1
        self.last_response = response
        if self.options.trace is not None:
            self.options.trace.write(
                exchange_record(self.service, self.base_url, response, content)
            )
        classify(self.source, response, self.wait_rule)
        return response

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
