"""Follow-through decisions, as pure functions: was a handoff picked up, is it overdue, and
what escalation is owed.

After a handoff the request is awaiting acceptance by its new owner. It is accepted when the
new owner does something on any linked item after the handoff (a comment, a state change, an
edit, a reply in the mail thread, handing it on: each recorded by the ledger as a "touch"), or
when an operator runs `syncd accept`. A handoff still not accepted `accept_within` after it was
made is overdue; an `[escalation]` action runs once for it.

syncd.dispatch gathers the inputs from the ledger and applies what these decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from syncd.config import Team

# How a touch reads in the timeline ("accepted: comment in jira").
_HOW = {
    "comment": "comment",
    "state": "state change",
    "edit": "edit",
    "reply": "reply",
    "assign": "assignment",
}


@dataclass(frozen=True)
class Pending:
    """A handoff not yet accepted."""

    request_id: int
    key: str
    owner: str
    previous_owner: str | None
    at: datetime
    overdue_at: datetime | None = None
    escalated_at: datetime | None = None


@dataclass(frozen=True)
class Touch:
    """The latest thing a person did on a request."""

    request_id: int
    person: str  # person id, or "kind:handle"
    at: datetime
    kind: str
    source: str


@dataclass(frozen=True)
class Accepted:
    request_id: int
    by: str
    how: str
    source: str
    at: datetime


@dataclass(frozen=True)
class OwnerChange:
    """An owner_changed event, as follow-through reads it."""

    event_id: int
    request_id: int
    key: str
    owner: str | None
    previous_owner: str | None
    at: datetime
    actor: str | None  # the person who made it, when known
    tracked: bool  # False for an owner first seen when the request was created


def accepted_by_touch(p: Pending, touches: Iterable[Touch]) -> Accepted | None:
    """The new owner's first sign of life on the request since the handoff, if any."""
    mine = [t for t in touches if t.request_id == p.request_id and t.person == p.owner]
    after = [t for t in mine if t.at >= p.at]
    if not after:
        return None
    t = min(after, key=lambda t: t.at)
    how = _HOW.get(t.kind, t.kind)
    return Accepted(p.request_id, p.owner, f"{how} in {t.source}", t.source, t.at)


def follow(current: Pending | None, change: OwnerChange) -> tuple[Pending | None, Accepted | None]:
    """What a new owner change does to the handoff awaiting acceptance on its request: it
    replaces it; when the owner who was to accept makes the change, it counts as accepted
    (handed on); a change the owner makes to themselves needs no acceptance."""
    accepted = None
    if current is not None and change.actor is not None and change.actor == current.owner:
        accepted = Accepted(current.request_id, current.owner, "handed on", "handoff", change.at)
    if change.owner is None or not change.tracked:
        return None, accepted
    pending = Pending(change.request_id, change.key, change.owner, change.previous_owner, change.at)
    if change.actor is not None and change.actor == change.owner:
        return None, accepted
    return pending, accepted


def accept_within_for(
    owner: str, teams: Sequence[Team], default: timedelta | None
) -> timedelta | None:
    """The owner's team's accept_within (the shortest, if several teams set one), else the
    default."""
    overrides = [t.accept_within for t in teams if owner in t.members and t.accept_within]
    return min(overrides) if overrides else default


def is_overdue(p: Pending, within: timedelta | None, now: datetime) -> bool:
    return within is not None and now - p.at > within


def owes_escalation(p: Pending, action: str | None) -> bool:
    """An escalation runs once per overdue handoff: only while none has run."""
    return action is not None and p.overdue_at is not None and p.escalated_at is None


def reminder(p: Pending, owner_name: str | None, previous_name: str | None) -> str:
    """The words of an escalation reminder, naming the new owner and the previous one."""
    since = f"{p.at:%Y-%m-%d %H:%M} UTC"
    owner = owner_name or p.owner
    text = f"Not picked up since {since}: {owner}, please act on it or hand it on."
    if previous_name or p.previous_owner:
        text += f" {previous_name or p.previous_owner} handed it over."
    return text
