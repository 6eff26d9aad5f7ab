"""Client-side throttling: wait before sending, rather than after being refused.

Trello documents its limits (requests per 10 s per token, and per API key) but sends no
headers to steer by before a 429, so the only safe client is one that counts its own sends.
A `SlidingWindow` allows at most `limit` sends in any `period` seconds; a `ThrottledTransport`
waits on one or more windows before every request leaves, retries included, because
retries count against the vendor's limit too.

Several sources may share one token (two Trello sources, say, run in parallel threads); the
vendor counts them together, so `shared_window` hands every client of the same credential
the same window.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import httpx


class SlidingWindow:
    """At most `limit` acquisitions in any `period` seconds; thread-safe."""

    def __init__(
        self,
        limit: int,
        period: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or period <= 0:
            raise ValueError("a window needs limit >= 1 and period > 0")
        self.limit = limit
        self.period = period
        self.clock = clock
        self.sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until one more send fits in the window, record it, and return the wait."""
        waited = 0.0
        # The lock is held while sleeping: every other sender would have to wait anyway,
        # and holding it keeps the order in which senders get through first come, first go.
        with self._lock:
            while True:
                now = self.clock()
                while self._sent and self._sent[0] <= now - self.period:
                    self._sent.popleft()
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return waited
                wait = self._sent[0] + self.period - now
                self.sleep(wait)
                waited += wait

    def in_window(self) -> int:
        """Sends counted in the current window."""
        with self._lock:
            now = self.clock()
            return sum(1 for t in self._sent if t > now - self.period)


class ThrottledTransport(httpx.BaseTransport):
    """Waits on every window before handing the request to the real transport."""

    def __init__(self, inner: httpx.BaseTransport, windows: Sequence[SlidingWindow]) -> None:
        self.inner = inner
        self.windows = tuple(windows)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for window in self.windows:
            window.acquire()
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


_shared: dict[tuple[str, str], SlidingWindow] = {}
_shared_lock = threading.Lock()


def shared_window(scope: str, credential: str, limit: int, period: float) -> SlidingWindow:
    """The process-wide window for one credential. Keyed by a digest, so this table never
    holds the credential itself."""
    digest = hashlib.sha256(credential.encode()).hexdigest()
    with _shared_lock:
        window = _shared.get((scope, digest))
        if window is None:
            window = _shared[(scope, digest)] = SlidingWindow(limit, period)
        return window
