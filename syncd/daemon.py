"""`syncd run`: the long-running daemon.

One apscheduler job per source (interval plus jitter, never two runs of the same source at
once, missed runs coalesced into one). The jobs share one Ledger object, which is the single
writer. The main thread only waits: it handles signals, pings the watchdog while work is
progressing, and keeps systemd's STATUS line current.

SIGTERM/SIGINT: running jobs finish the page in hand (its transaction commits), then exit 0.
SIGHUP: reload the config; an invalid one is logged and the old one keeps running.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from syncd.config import Config, load_config
from syncd.cycle import Engine
from syncd.errors import SyncdError
from syncd.health import JobState, Progress, health, status_line
from syncd.http import HttpOptions
from syncd.ledger import Ledger, now_utc
from syncd.notify import Notifier, watchdog_interval

log = structlog.get_logger("syncd.daemon")

# How often the main thread wakes when systemd set no watchdog: keeps STATUS fresh.
_TICK = 1.0
# At most this many sources poll at the same time; each has its own HTTP client.
_MAX_WORKERS = 8


class Daemon:
    def __init__(
        self,
        config_path: Path,
        *,
        ledger_path: Path | None = None,
        http: HttpOptions | None = None,
        notifier: Notifier | None = None,
        loader: Callable[[Path], Config] = load_config,
    ) -> None:
        self.config_path = config_path
        self.ledger_override = ledger_path
        self.http = http or HttpOptions()
        self.notifier = notifier or Notifier()
        self.loader = loader
        self.stop = threading.Event()
        self.reload_requested = threading.Event()
        self.progress = Progress(started_at=now_utc())
        self._state_lock = threading.Lock()
        self._retired: list[Engine] = []
        self.config = self._load()
        path = ledger_path or self.config.ledger
        self.ledger = Ledger(path)
        self.ledger.acquire_daemon_lock()
        self.engine = Engine(self.config, self.ledger, self.http)
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=_MAX_WORKERS)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )

    def _load(self) -> Config:
        return self.loader(self.config_path)

    # -- jobs --------------------------------------------------------------------------

    def _schedule(self) -> None:
        jitter = self.config.daemon.jitter.total_seconds()
        now = now_utc()
        with self._state_lock:
            for name in self.engine.adapters:
                source = self.config.source(name)
                self.progress.jobs.setdefault(
                    name, JobState(source.interval)
                ).interval = source.interval
            for gone in set(self.progress.jobs) - set(self.engine.adapters):
                del self.progress.jobs[gone]
        for name in self.engine.adapters:
            source = self.config.source(name)
            self.scheduler.add_job(
                self._job,
                IntervalTrigger(seconds=source.interval.total_seconds(), jitter=jitter or None),
                args=[name],
                id=name,
                name=f"poll {name}",
                next_run_time=now,
                replace_existing=True,
            )

    def _job(self, name: str) -> None:
        if self.stop.is_set():
            return
        engine = self.engine
        with self._state_lock:
            job = self.progress.jobs.get(name)
            if job is None:
                return
            job.last_start = job.running_since = now_utc()
        try:
            result = engine.run_source(name, self.stop)
            ok, error = result.ok, result.error
        except Exception as exc:  # keep the scheduler alive whatever one source does
            log.exception("job crashed", source=name)
            ok, error = False, f"internal error: {type(exc).__name__}"
        with self._state_lock:
            job.running_since = None
            job.last_end = now_utc()
            job.last_ok, job.last_error = ok, error

    # -- signals and reload ------------------------------------------------------------

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        self.stop.set()

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload_requested.set()

    def reload(self) -> bool:
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={_monotonic_usec()}")
        try:
            config = self._load()
            if config.ledger != self.config.ledger and self.ledger_override is None:
                log.warning(
                    "ledger path changed in config; restart syncd to use it",
                    ledger=str(config.ledger),
                )
            engine = Engine(config, self.ledger, self.http)
        except SyncdError as exc:
            log.error("reload failed; still running the previous config", error=str(exc))
            self.notifier.send(
                "READY=1",
                f"STATUS=reload failed, previous config kept: {str(exc).splitlines()[0][:120]}",
            )
            return False
        self._retired.append(self.engine)
        self.engine, self.config = engine, config
        for job in self.scheduler.get_jobs():
            if job.id not in engine.adapters:
                job.remove()
        self._schedule()
        log.info("config reloaded", sources=sorted(engine.adapters))
        self.notifier.send("READY=1")
        return True

    def _close_retired(self) -> None:
        with self._state_lock:
            busy = any(j.running_since for j in self.progress.jobs.values())
        if not busy:
            for engine in self._retired:
                engine.close()
            self._retired.clear()

    # -- main loop ---------------------------------------------------------------------

    def _tick(self) -> None:
        now = now_utc()
        hang, jitter = self.config.daemon.hang_after, self.config.daemon.jitter
        with self._state_lock:
            healthy, reason = health(self.progress, now, hang, jitter)
            pending, dead = self._outbox_depth()
            line = status_line(self.progress, pending, dead, now, hang, jitter)
        self.notifier.send(f"STATUS={line}")
        if healthy:
            self.notifier.send("WATCHDOG=1")
        else:
            log.error("not making progress; withholding watchdog ping", reason=reason)

    def _outbox_depth(self) -> tuple[int, int]:
        rows = self.ledger.rows(
            "SELECT status, count(*) AS n FROM outbox WHERE status IN ('pending', 'dead') GROUP BY status"
        )
        by = {r["status"]: r["n"] for r in rows}
        return by.get("pending", 0), by.get("dead", 0)

    def run(self) -> int:
        old: dict[signal.Signals, Any] = {}
        for signum, handler in (
            (signal.SIGTERM, self._on_stop),
            (signal.SIGINT, self._on_stop),
            (signal.SIGHUP, self._on_hup),
        ):
            old[signum] = signal.signal(signum, handler)
        try:
            self._schedule()
            self.scheduler.start()
            log.info("started", ledger=str(self.ledger.path), sources=sorted(self.engine.adapters))
            self.notifier.send("READY=1", f"STATUS=started, {len(self.engine.adapters)} sources")
            tick = min(_TICK, watchdog_interval() or _TICK)
            while not self.stop.wait(tick):
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    self.reload()
                self._close_retired()
                self._tick()
            self.notifier.send("STOPPING=1")
            # Jobs see `stop` after the page in hand; wait=True lets that transaction commit.
            self.scheduler.shutdown(wait=True)
            log.info("stopped")
            return 0
        finally:
            for signum, previous in old.items():
                signal.signal(signum, previous)
            self.engine.close()
            for engine in self._retired:
                engine.close()
            self.ledger.close()
            self.notifier.close()


def _monotonic_usec() -> int:
    return time.monotonic_ns() // 1000
