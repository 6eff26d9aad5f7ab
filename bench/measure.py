"""Measuring one piece of work: wall time, CPU time, peak RSS and the requests it caused.

Peak RSS is the kernel's high-water mark for this process (VmHWM in /proc/self/status),
reset at the start of each measurement by writing 5 to /proc/self/clear_refs (Linux 4.0+),
so each figure is the highest resident size reached during that piece of work: the
interpreter and syncd's modules included, the emulators (another process) excluded. Where
the reset is refused, the figure is getrusage's ru_maxrss, the peak over the process's
whole life so far, and `RSS_METHOD` says so.
"""

from __future__ import annotations

import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

from bench.host import Host

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _status_kb(name: str) -> int | None:
    try:
        with open(_STATUS, encoding="ascii") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _can_reset() -> bool:
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


RESETTABLE = _can_reset()
RSS_METHOD = (
    "VmHWM of the benchmark process, reset per measurement via /proc/self/clear_refs"
    if RESETTABLE
    else "ru_maxrss of the benchmark process (peak over its life so far; not resettable here)"
)


def reset_peak_rss() -> None:
    if RESETTABLE:
        with open(_CLEAR_REFS, "w", encoding="ascii") as f:
            f.write("5")


def peak_rss_mb() -> float:
    kb = _status_kb("VmHWM") if RESETTABLE else None
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 1024


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


@dataclass
class Sample:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    emulator_cpu_s: float | None = None
    start_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)

    @property
    def requests_total(self) -> int:
        return sum(self.requests.values())


class Meter:
    """`with Meter(host) as m: work()`; then m.sample holds the figures.

    The host is asked for its counters and CPU time outside the timed window, so the pipe
    round trips are not measured."""

    def __init__(self, host: Host | None) -> None:
        self.host = host
        self.sample = Sample()
        self._t0 = self._c0 = 0.0
        self._e0: float | None = None

    def __enter__(self) -> Meter:
        if self.host is not None:
            self.host.reset_counts()
            self._e0 = self.host.cpu()
        reset_peak_rss()
        self.sample.start_rss_mb = rss_mb()
        self._c0 = time.process_time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        s = self.sample
        s.wall_s = time.perf_counter() - self._t0
        s.cpu_s = time.process_time() - self._c0
        s.peak_rss_mb = peak_rss_mb()
        if exc_type is None and self.host is not None and self._e0 is not None:
            s.requests = self.host.counts()
            s.emulator_cpu_s = self.host.cpu() - self._e0
