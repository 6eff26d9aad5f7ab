"""Is the daemon making progress? Pure decisions behind the watchdog and the STATUS line.

A watchdog ping must mean "work is getting done", not "a thread is alive": so the daemon is
healthy only while no poll has run longer than `hang_after`, and every source's job has
started recently enough for its interval. A hung adapter or a stalled scheduler stops the
pings, and systemd restarts the service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class JobState:
    interval: timedelta
    last_start: datetime | None = None
    last_end: datetime | None = None
    running_since: datetime | None = None
    last_ok: bool | None = None
    last_error: str | None = None


@dataclass
class Progress:
    started_at: datetime
    jobs: dict[str, JobState] = field(default_factory=dict)


def health(
    p: Progress, now: datetime, hang_after: timedelta, jitter: timedelta
) -> tuple[bool, str]:
    """(healthy, reason). Pure."""
    for name, job in sorted(p.jobs.items()):
        if job.running_since is not None and now - job.running_since > hang_after:
            return (
                False,
                f"{name}: poll running for {int((now - job.running_since).total_seconds())}s",
            )
        last = job.last_start or p.started_at
        allowed = job.interval * 2 + jitter + hang_after
        if now - last > allowed:
            return False, f"{name}: no poll started for {int((now - last).total_seconds())}s"
    return True, "ok"


def status_line(
    p: Progress, pending: int, dead: int, now: datetime, hang_after: timedelta, jitter: timedelta
) -> str:
    ok = [n for n, j in p.jobs.items() if j.last_ok is not False]
    failing = [(n, j) for n, j in sorted(p.jobs.items()) if j.last_ok is False]
    parts = [f"{len(ok)} source{'s' if len(ok) != 1 else ''} ok"]
    for name, job in failing:
        since = job.last_end.strftime("%H:%M") if job.last_end else "?"
        err = (job.last_error or "failed").split(":")[-1].strip()[:60]
        parts.append(f"{name} failing since {since} ({err})")
    healthy, reason = health(p, now, hang_after, jitter)
    if not healthy:
        parts.append(f"stuck: {reason}")
    parts.append(f"outbox {pending}" + (f", {dead} dead" if dead else ""))
    return ", ".join(parts)
