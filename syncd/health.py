"""Is the daemon making progress? Pure decisions behind the watchdog and the STATUS line.

A watchdog ping must mean "work is getting done", not "a thread is alive". So the daemon is
healthy only while the scheduler is running, no poll has run longer than `hang_after`, and
every source's job has started recently enough for its interval. A hung adapter or a stalled
scheduler stops the pings, and systemd restarts the service.

A source whose polls *fail* (a 429, a refused token) is not unhealthy in this sense: its job
still runs on time, and restarting the daemon would not fix the tool at the other end. It is
reported in the STATUS line and by `syncd status` instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from syncd.config import Config

# Names listed per group in the STATUS line; more are counted, not named, to keep it one line.
_MAX_NAMED = 3


@dataclass
class JobState:
    """What the daemon knows about one source's job. Mutated under the daemon's lock."""

    interval: timedelta
    # When the job was (re)scheduled: until its first run, the stall clock starts here.
    scheduled_at: datetime
    last_start: datetime | None = None
    last_end: datetime | None = None
    running_since: datetime | None = None
    last_ok: bool | None = None
    last_error: str | None = None
    # Start of the current run of failed polls; None while the last poll succeeded.
    failing_since: datetime | None = None

    def started(self, now: datetime) -> None:
        self.last_start = self.running_since = now

    def progressed(self, now: datetime) -> None:
        """A running job finished one unit of work (a page applied, a write sent): a long
        job that keeps progressing is busy, not hung, so the hang clock starts again."""
        if self.running_since is not None:
            self.running_since = now

    def finished(self, now: datetime, ok: bool, error: str | None) -> None:
        self.running_since = None
        self.last_end = now
        self.last_ok, self.last_error = ok, error
        if ok:
            self.failing_since = None
        elif self.failing_since is None:
            self.failing_since = self.last_start or now


@dataclass
class Progress:
    started_at: datetime
    jobs: dict[str, JobState] = field(default_factory=dict)


class Verdict(NamedTuple):
    healthy: bool
    reason: str


def _secs(d: timedelta) -> int:
    return int(d.total_seconds())


def hung(p: Progress, now: datetime, hang_after: timedelta) -> list[tuple[str, timedelta]]:
    """Sources whose poll has been running longer than `hang_after`, with how long."""
    return [
        (name, now - job.running_since)
        for name, job in sorted(p.jobs.items())
        if job.running_since is not None and now - job.running_since > hang_after
    ]


def stalled(
    p: Progress, now: datetime, hang_after: timedelta, jitter: timedelta
) -> list[tuple[str, timedelta]]:
    """Sources whose job has not started for longer than its schedule allows.

    Two intervals plus the jitter, plus `hang_after` for a previous run that took long and
    made the scheduler skip one (runs never overlap): beyond that, the scheduler has stopped
    running the job.
    """
    out = []
    for name, job in sorted(p.jobs.items()):
        if job.running_since is not None:
            continue  # running: `hung` judges it
        since = job.last_start or job.scheduled_at
        if now - since > job.interval * 2 + jitter + hang_after:
            out.append((name, now - since))
    return out


def health(
    p: Progress,
    now: datetime,
    hang_after: timedelta,
    jitter: timedelta,
    *,
    scheduler_running: bool = True,
) -> Verdict:
    """Whether to ping the watchdog now, and if not, why. Pure."""
    if not scheduler_running:
        return Verdict(False, "scheduler is not running")
    for name, took in hung(p, now, hang_after):
        return Verdict(False, f"{name}: poll running for {_secs(took)}s")
    for name, idle in stalled(p, now, hang_after, jitter):
        return Verdict(False, f"{name}: no poll started for {_secs(idle)}s")
    return Verdict(True, "ok")


_STATUS_CODE = re.compile(r"\banswered (\d{3})\b")
_FAILED_WITH = re.compile(r"\bfailed: ([A-Za-z]\w*)")


def short_reason(error: str | None) -> str:
    """A few words for the STATUS line from a poll's error message.

    Messages look like "api: GET https://... answered 429: {...}"; the status code or the
    kind of failure is what an admin glancing at `systemctl status` needs.
    """
    if not error:
        return "failed"
    if m := _STATUS_CODE.search(error):
        return m.group(1)
    if "timed out" in error:
        return "timeout"
    if "internal error" in error:
        return "internal error"
    if m := _FAILED_WITH.search(error):
        return m.group(1)
    # Drop the "source: " prefix the errors carry; the name is printed next to it already.
    text = error.split(": ", 1)[-1] if ": " in error else error
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:39] + "…"


def _named(items: Sequence[str]) -> str:
    shown = "; ".join(items[:_MAX_NAMED])
    more = len(items) - _MAX_NAMED
    return shown + (f"; {more} more" if more > 0 else "")


def _clock(when: datetime) -> str:
    # Local time, as `systemctl status` and the journal show theirs.
    return when.astimezone().strftime("%H:%M")


def status_line(
    p: Progress,
    pending: int,
    dead: int,
    now: datetime,
    hang_after: timedelta,
    jitter: timedelta,
    *,
    scheduler_running: bool = True,
    notes: Sequence[str] = (),
) -> str:
    """One line for systemd's STATUS=, e.g.
    "3 sources ok, 1 failing (trello-ops: 429 since 12:03), outbox 0". Pure."""
    # Each source is counted once: hung or not scheduled first, as that is what needs a
    # look; then by the outcome of its last poll.
    stuck = hung(p, now, hang_after)
    idle = stalled(p, now, hang_after, jitter)
    flagged = {n for n, _ in stuck} | {n for n, _ in idle}
    jobs = [(n, j) for n, j in sorted(p.jobs.items()) if n not in flagged]
    ok = [n for n, j in jobs if j.last_ok is True]
    waiting = [n for n, j in jobs if j.last_ok is None]
    failing = [
        f"{n}: {short_reason(j.last_error)} since {_clock(j.failing_since or j.last_end or now)}"
        for n, j in jobs
        if j.last_ok is False
    ]
    parts = [f"{len(ok)} source{'' if len(ok) == 1 else 's'} ok"]
    if failing:
        parts.append(f"{len(failing)} failing ({_named(failing)})")
    if waiting:
        parts.append(f"{len(waiting)} waiting for a first poll")
    if stuck:
        named = [f"{n}: poll running {_secs(t)}s" for n, t in stuck]
        parts.append(f"{len(stuck)} hung ({_named(named)})")
    if idle:
        named = [f"{n}: no poll for {_secs(t)}s" for n, t in idle]
        parts.append(f"{len(idle)} not scheduled ({_named(named)})")
    if not scheduler_running:
        parts.append("scheduler not running")
    parts.append(f"outbox {pending}" + (f", {dead} dead" if dead else ""))
    parts.extend(notes)
    return ", ".join(parts)


def stale_after(config: Config | None) -> dict[str, timedelta]:
    """When each enabled source counts as stale: the same allowance the watchdog gives a job
    (two intervals, plus jitter and the time a poll may take). Empty without a config."""
    if config is None:
        return {}
    d = config.daemon
    return {s.name: s.interval * 2 + d.jitter + d.hang_after for s in config.sources if s.enabled}
