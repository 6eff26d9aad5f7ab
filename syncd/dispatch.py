"""The routing and follow-through step the daemon runs after each poll: the I/O edge around
syncd.routing and syncd.acceptance.

One step, in one ledger transaction: absences whose time is up end; work meant for someone
away goes to their delegate; unowned requests are routed by the rules; new handoffs start
awaiting acceptance; the new owners' activity accepts them; those not accepted in time are
marked overdue, and the escalation owed for each runs once. It reads and writes only the
ledger: no source is asked anything, so a quiet cycle costs the sources nothing more.
Write-backs are queued in the outbox like any other handoff, and the source jobs send them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from syncd import acceptance, routing
from syncd import routing_ledger as store
from syncd.config import Config
from syncd.ledger import Ledger, now_utc
from syncd.people import Directory

log = structlog.get_logger("syncd.routing")


@dataclass
class StepReport:
    routed: list[routing.Assignment] = field(default_factory=list)
    covered: list[routing.Assignment] = field(default_factory=list)
    accepted: list[acceptance.Accepted] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)  # request keys newly overdue
    escalated: list[str] = field(default_factory=list)
    back: list[str] = field(default_factory=list)  # absences that ended
    notes: list[str] = field(default_factory=list)  # why a rule routed nothing
    left: int = 0  # matched, left for a later cycle by max_per_cycle


@dataclass(frozen=True)
class Preview:
    """What routing would do now (`syncd route --dry-run`)."""

    routed: list[routing.Assignment] = field(default_factory=list)
    covered: list[routing.Assignment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    left: int = 0
    rotation: dict[str, str] = field(default_factory=dict)


def _people(config: Config) -> list[str]:
    return [p.id for p in config.people]


def _actor_person(source: str, actor: str | None, config: Config, d: Directory) -> str | None:
    """The person behind an owner change's actor, when the ledger can tell."""
    if actor is None:
        return None
    if actor in d.people or ":" in actor:
        return actor  # a person id, or an unmapped "kind:handle"
    kind = "unix" if source == "operator" else None
    for s in config.sources:
        if s.name == source:
            kind = s.type
    if kind is not None and d.is_mapped(kind, actor):
        return d.owner_for(kind, actor)
    return None


def _plan(c: sqlite3.Connection, config: Config, now: datetime) -> Preview:
    budget = config.routing_options.max_per_cycle
    people = _people(config)
    absences = store.absences(c)
    covered: list[routing.Assignment] = []
    covering = {p for p, a in absences.items() if a.active(now) and a.delegate}
    if covering:
        covered = routing.plan_cover(store.owned_by(c, covering), absences, people, now, budget)
    cands = store.candidates(c) if config.routing and len(covered) < budget else []
    if not cands:
        return Preview([], covered)
    uses_load = any(r.assign.strategy == "least_loaded" for r in config.routing)
    plan = routing.plan_routing(
        cands,
        config.routing,
        config.teams,
        people,
        absences,
        store.open_load(c) if uses_load else {},
        store.rotation(c),
        now,
        budget - len(covered),
    )
    return Preview(plan.assignments, covered, plan.notes, plan.left, plan.rotation)


def preview(ledger: Ledger, config: Config, now: datetime | None = None) -> Preview:
    """What the step would route and move now, changing nothing."""
    return _plan(ledger.conn, config, now or now_utc())


def step(
    ledger: Ledger, config: Config, directory: Directory, now: datetime | None = None
) -> StepReport:
    now = now or now_utc()
    report = StepReport()
    with ledger.transaction() as c:
        report.back = store.expire_absences(c, now)
        plan = _plan(c, config, now)
        # Each move re-checks the owner it planned from, so a change made meanwhile stands.
        report.covered = [a for a in plan.covered if store.hand_over(ledger, c, a, now)]
        report.routed = [a for a in plan.routed if store.hand_over(ledger, c, a, now)]
        store.save_rotation(c, plan.rotation, now)
        report.notes, report.left = plan.notes, plan.left
        _follow_through(ledger, c, config, directory, now, report)
    return report


def _follow_through(
    ledger: Ledger,
    c: sqlite3.Connection,
    config: Config,
    directory: Directory,
    now: datetime,
    report: StepReport,
) -> None:
    changes, last = store.new_owner_changes(c)
    for change, source in changes:
        actor = _actor_person(source, change.actor, config, directory)
        change = acceptance.OwnerChange(**{**vars(change), "actor": actor})
        current = store.pending_for(c, change.request_id)
        new, accepted = acceptance.follow(current, change)
        if accepted is not None:
            store.record_accepted(c, accepted, now)
            report.accepted.append(accepted)
        store.set_pending(c, change.request_id, new, change.event_id)
    if last is not None:
        store.save_event_cursor(c, last, now)
    waiting = store.pending(c)
    if not waiting:
        return
    touched = store.touches(c, waiting)
    for p in list(waiting.values()):
        accepted = acceptance.accepted_by_touch(p, touched)
        if accepted is not None:
            store.record_accepted(c, accepted, now)
            report.accepted.append(accepted)
            del waiting[p.request_id]
    default = config.acceptance.accept_within
    for p in list(waiting.values()):
        within = acceptance.accept_within_for(p.owner, config.teams, default)
        if p.overdue_at is None and acceptance.is_overdue(p, within, now):
            store.mark_overdue(c, p.request_id, now)
            waiting[p.request_id] = p = acceptance.Pending(**{**vars(p), "overdue_at": now})
            report.overdue.append(p.key)
            log.warning("handoff overdue", request=p.key, owner=p.owner, since=p.at.isoformat())
    action = config.escalation.action if config.escalation else None
    for p in waiting.values():
        if acceptance.owes_escalation(p, action):
            _escalate(ledger, c, config, p, now, report)


def _escalate(
    ledger: Ledger,
    c: sqlite3.Connection,
    config: Config,
    p: acceptance.Pending,
    now: datetime,
    report: StepReport,
) -> None:
    """Run the escalation owed for one overdue handoff, once."""
    action = config.escalation.action if config.escalation else "flag"
    what, note = "flagged: not accepted in time", None
    if action == "comment":
        # Told in every linked tool through the handoff-comment machinery, naming the owner
        # who has not picked it up and the one who handed it over.
        what = "reminder posted to every linked item"
        note = acceptance.reminder(p, _display(config, p.owner), _display(config, p.previous_owner))
    elif action == "reroute":
        what = _reroute(ledger, c, config, p, now)
    event_id = store.mark_escalated(c, p, what, now, note=note)
    if event_id is None:
        return
    if action == "comment":
        ledger._queue_comments(c, p.request_id, event_id, origin="routing", now=now)
    report.escalated.append(p.key)
    log.warning("handoff escalated", request=p.key, owner=p.owner, action=what)


def _display(config: Config, owner: str | None) -> str | None:
    return Directory.build(config.people).display(owner)


def _reroute(
    ledger: Ledger, c: sqlite3.Connection, config: Config, p: acceptance.Pending, now: datetime
) -> str:
    """Hand an overdue request on by the routing rules, to anyone but its current owner."""
    cands = [
        routing.Candidate(**{**vars(x), "unowned_since": p.at})
        for x in store.candidates(c, only=[p.request_id])
    ]
    plan = routing.plan_routing(
        cands,
        config.routing,
        config.teams,
        _people(config),
        store.absences(c),
        store.open_load(c),
        store.rotation(c),
        now,
        1,
        exclude={p.request_id: p.owner},
    )
    for a in plan.assignments:
        moved = routing.Assignment(
            a.request_id, a.key, a.owner, f"escalation: {a.why}", a.meant_for, p.owner
        )
        if store.hand_over(ledger, c, moved, now):
            store.save_rotation(c, plan.rotation, now)
            return f"re-routed to {a.owner} by rule {a.why!r}"
    return "re-routing found nobody else to take it"
