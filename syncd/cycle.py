"""One sync cycle for one source: pull what changed, apply it page by page, then write back.

This is the I/O edge around the pure reconciler. Each page is applied with its cursor in one
transaction (see Ledger.apply_page), so a poll that fails half-way keeps what it applied and
reads the rest next time. A failed poll applies nothing from the failed page, and syncd never
reads the absence of an item as a closure or an unassignment, so a broken source cannot
unassign anything.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog

from syncd import dispatch
from syncd.adapters import adapter_class
from syncd.adapters.base import Adapter
from syncd.config import CommentSettings, Config
from syncd.crossref import Rules
from syncd.errors import RateLimited, SourceError
from syncd.http import HttpOptions
from syncd.ledger import ApplyStats, Ledger, now_utc
from syncd.outbox import DrainStats, drain, drain_comments
from syncd.people import Directory
from syncd.redact import redact

# At most this many quarantined items are named in one poll's log line.
_NAMED_QUARANTINE = 20
log = structlog.get_logger("syncd.cycle")


@dataclass
class PollResult:
    source: str
    ok: bool
    pages: int = 0
    applied: ApplyStats = field(default_factory=ApplyStats)
    requests: int = 0
    error: str | None = None
    # "ref: reason" of the items this poll quarantined (the first _NAMED_QUARANTINE).
    quarantined: list[str] = field(default_factory=list)


def _add(total: ApplyStats, part: ApplyStats) -> None:
    for name in vars(total):
        setattr(total, name, getattr(total, name) + getattr(part, name))


class Engine:
    """Owns the adapters for one config and runs cycles against one ledger."""

    def __init__(self, config: Config, ledger: Ledger, http: HttpOptions | None = None) -> None:
        self.config = config
        self.ledger = ledger
        self.directory = Directory.build(config.people)
        self.adapters: dict[str, Adapter[Any]] = {}
        # The deployment's bounds on every request: how long, and how big an answer.
        http = replace(
            http or HttpOptions(),
            timeout=config.daemon.http_timeout.total_seconds(),
            max_body=config.daemon.max_response_bytes,
        )
        for source in config.sources:
            if source.enabled:
                adapter = adapter_class(source.type)(source, http)
                adapter.bind_people(self.directory)
                adapter.bind_store(ledger.state_store(source.name))
                self.adapters[source.name] = adapter
        ledger.sync_people(config.people)
        self._routing_notes: list[str] = []
        # Jira project keys the configured Jira sources hold: from the ledger now, and from
        # each Jira poll as it reads new projects. Bare keys of other projects are not keys.
        self.jira_projects = self._ledger_projects()
        self._bind_matching()

    def close(self) -> None:
        for adapter in self.adapters.values():
            adapter.close()

    def _ledger_projects(self) -> frozenset[str]:
        if not any(a.kind == "jira" for a in self.adapters.values()):
            return frozenset()
        rows = self.ledger.rows(
            "SELECT DISTINCT substr(ref, 1, instr(ref, '-') - 1) AS project FROM links "
            "WHERE kind = 'jira' AND instr(ref, '-') > 1"
        )
        return frozenset(str(r["project"]) for r in rows)

    def _bind_matching(self) -> None:
        rules = Rules.build(self.config.matching.declare_labels, self.jira_projects)
        for adapter in self.adapters.values():
            adapter.bind_matching(rules)

    def _learn_projects(self, adapter: Adapter[Any]) -> None:
        learned = adapter.known_projects()
        if not learned <= self.jira_projects:
            self.jira_projects |= learned
            self._bind_matching()

    def _count(self, adapter: Adapter[Any]) -> int:
        return sum(adapter.request_counts().values())

    def poll(
        self,
        name: str,
        stop: threading.Event | None = None,
        progress: Callable[[], None] | None = None,
    ) -> PollResult:
        adapter = self.adapters[name]
        kind = adapter.kind
        result = PollResult(name, ok=True)
        before = self._count(adapter)
        retry_at: datetime | None = None
        quarantined = result.quarantined
        try:
            run_commands = isinstance(adapter.config, CommentSettings) and adapter.config.commands
            for page in adapter.pull(self.ledger.cursor(name)):
                stats = self.ledger.apply_page(
                    name,
                    kind,
                    page,
                    self.directory,
                    commands=run_commands,
                    link_on=self.config.matching.link_on,
                )
                _add(result.applied, stats)
                # Named in the poll's log line, so an operator sees which items and why.
                quarantined += [
                    f"{q.ref or '(no ref)'}: {q.reason}"
                    for q in page.quarantined[: _NAMED_QUARANTINE - len(quarantined)]
                ]
                result.pages += 1
                if progress is not None:
                    progress()
                if stop is not None and stop.is_set():
                    # The page in hand is applied; the rest is read next time.
                    break
        except RateLimited as exc:
            result.ok, result.error, retry_at = False, str(exc), exc.retry_at
        except SourceError as exc:
            result.ok, result.error = False, str(exc)
        except Exception as exc:  # a bug must not stop the daemon; it is logged in full
            log.exception("poll crashed", source=name)
            result.ok, result.error = False, redact(f"internal error: {type(exc).__name__}: {exc}")
        result.requests = self._count(adapter) - before
        self._learn_projects(adapter)
        try:
            budget = adapter.rate_budget()
        except Exception:
            # Read from the source's headers: a bad one must not cost the poll's record.
            log.exception("rate_budget_unreadable", source=name)
            budget = None
        self.ledger.record_poll(
            name,
            kind,
            ok=result.ok,
            error=result.error,
            requests=result.requests,
            retry_at=retry_at,
            rate=(budget.remaining, budget.limit, budget.reset_at) if budget else None,
        )
        level = log.info if result.ok else log.warning
        level(
            "poll",
            source=name,
            ok=result.ok,
            pages=result.pages,
            items=result.applied.observations,
            created=result.applied.created,
            changed=result.applied.changed,
            conflicts=result.applied.conflicts,
            quarantined=result.applied.quarantined,
            quarantined_items=quarantined or None,
            requests=result.requests,
            error=result.error,
        )
        return result

    def drain(self, name: str, progress: Callable[[], None] | None = None) -> DrainStats:
        adapter = self.adapters[name]
        try:
            stats = drain(
                self.ledger,
                adapter,
                self.directory,
                max_attempts=self.config.daemon.max_write_attempts,
                progress=progress,
            )
            # After the owner writes: a comment says who owns the item, which it should by now.
            drain_comments(
                self.ledger,
                adapter,
                self.directory,
                max_attempts=self.config.daemon.max_write_attempts,
            )
            return stats
        except Exception:
            log.exception("write-back crashed", source=name)
            return DrainStats(failed=1)

    def route(self) -> None:
        """Routing and follow-through (syncd.dispatch): ledger only, no source is asked."""
        try:
            report = dispatch.step(self.ledger, self.config, self.directory)
        except Exception:  # a bug here must not stop polling; it is logged in full
            log.exception("routing step crashed")
            return
        for a in report.covered + report.routed:
            log.info("routed", request=a.key, owner=a.owner, why=a.why, meant_for=a.meant_for)
        for acc in report.accepted:
            log.info("handoff accepted", request=acc.request_id, by=acc.by, how=acc.how)
        if report.left:
            log.warning("routing held back by max_per_cycle", left=report.left)
        # Said once when it starts and once when it ends, not at every poll.
        if report.notes != self._routing_notes:
            for note in report.notes:
                log.warning("routing skipped a rule", reason=note)
            self._routing_notes = report.notes

    def run_source(
        self,
        name: str,
        stop: threading.Event | None = None,
        progress: Callable[[], None] | None = None,
    ) -> PollResult:
        """What the daemon's job for one source does: poll, then pay what is owed to it.
        `progress` is called after each page and each write (the watchdog's evidence)."""
        result = self.poll(name, stop, progress)
        if stop is None or not stop.is_set():
            self.route()
            self.drain(name, progress)
        return result

    def sync_once(self, names: list[str] | None = None) -> list[PollResult]:
        """Poll every source, then drain every outbox, so a change seen in the last source
        polled still reaches the first one within this one cycle."""
        names = names or list(self.adapters)
        results = [self.poll(n) for n in names]
        self.route()
        for n in names:
            self.drain(n)
        return results

    def request_counts(self) -> dict[str, Counter[str]]:
        return {n: a.request_counts() for n, a in self.adapters.items()}


__all__ = ["Engine", "PollResult", "now_utc"]
