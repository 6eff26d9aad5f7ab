"""Routing's decisions, as pure functions: who gets unowned work, and who covers for whom.

Routing only fills gaps. It looks at requests that nobody owns, tries the `[[routing]]` rules
in order (the first whose `when` matches wins) and names an owner: a person, or a member of a
team picked in turn (round_robin) or by fewest open requests (least_loaded). People who are
away are never picked; a person named directly who is away with a delegate gives way to the
delegate. Covering is the other half: while someone is away with a delegate, new handoffs to
them (and, when the absence says so, their open requests) go to the delegate.

Nothing here reads or writes the ledger: syncd.dispatch gathers the inputs, calls these, and
applies the plan through syncd.routing_ledger.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import regex

from syncd.config import RoutingRule, RuleWhen, Team

# A title pattern gets this long per title; one that takes longer does not match.
PATTERN_TIMEOUT = 0.05
# Titles are searched up to this many characters.
TITLE_SCAN = 1024
# Delegates are followed this many steps (alice -> bob -> carol) before giving up.
MAX_DELEGATION = 3


@dataclass(frozen=True)
class Candidate:
    """An unowned open request, as routing rules see it."""

    request_id: int
    key: str
    title: str
    state: str
    unowned_since: datetime
    sources: frozenset[str] = frozenset()
    tools: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()  # lower-cased, over every linked item
    requesters: frozenset[str] = frozenset()  # lower-cased, over every linked item
    # Who owned it until it became unowned: someone who gave it up is not handed it again.
    gave_up: str | None = None


@dataclass(frozen=True)
class Absence:
    person: str
    since: datetime
    until: datetime
    delegate: str | None = None
    move_open: bool = False
    note: str | None = None

    def active(self, now: datetime) -> bool:
        return self.since <= now < self.until


@dataclass(frozen=True)
class Assignment:
    """One handoff routing makes."""

    request_id: int
    key: str
    owner: str  # who receives it
    why: str  # the rule's name, or why a delegate receives it
    meant_for: str | None = None  # set when a delegate receives what was meant for this person
    previous_owner: str | None = None


@dataclass
class RoutingPlan:
    assignments: list[Assignment] = field(default_factory=list)
    rotation: dict[str, str] = field(default_factory=dict)  # team id -> last person given work
    notes: list[str] = field(default_factory=list)  # why a rule routed nothing
    left: int = 0  # matched, but not routed this cycle because of max_per_cycle


def away(absences: Mapping[str, Absence], now: datetime) -> set[str]:
    return {p for p, a in absences.items() if a.active(now)}


def recipient(
    person: str, absences: Mapping[str, Absence], now: datetime, people: Iterable[str]
) -> str | None:
    """Who receives work meant for `person` now: them, their delegate (followed a few steps)
    when they are away, or nobody (None) when that ends at someone away or unknown."""
    known = set(people)
    seen: list[str] = []
    current = person
    for _ in range(MAX_DELEGATION + 1):
        if current not in known or current in seen:
            return None
        absence = absences.get(current)
        if absence is None or not absence.active(now):
            return current
        if absence.delegate is None:
            return None
        seen.append(current)
        current = absence.delegate
    return None


def next_in_turn(members: Sequence[str], last: str | None, available: set[str]) -> str | None:
    """Round robin: the first available member after `last` in the team's order, wrapping;
    from the top when `last` is unknown (or no longer a member)."""
    if not members:
        return None
    start = members.index(last) + 1 if last in members else 0
    for i in range(len(members)):
        person = members[(start + i) % len(members)]
        if person in available:
            return person
    return None


def least_loaded(
    members: Sequence[str], load: Mapping[str, int], available: set[str]
) -> str | None:
    """The available member with the fewest open requests; a tie goes to the earlier member."""
    pool = [m for m in members if m in available]
    if not pool:
        return None
    return min(pool, key=lambda m: (load.get(m, 0), members.index(m)))


def _requester_matches(wanted: Sequence[str], requesters: frozenset[str]) -> bool:
    for entry in wanted:
        e = entry.lower()
        for r in requesters:
            if (e.startswith("@") and r.endswith(e)) or r == e:
                return True
    return False


def title_matches(pattern: str, title: str) -> bool:
    try:
        return regex.search(pattern, title[:TITLE_SCAN], timeout=PATTERN_TIMEOUT) is not None
    except TimeoutError:
        return False


def matches(when: RuleWhen, c: Candidate, now: datetime) -> bool:
    """Whether a request shows everything a rule's `when` asks for."""
    if when.source and not c.sources & set(when.source):
        return False
    if when.tool and not c.tools & set(when.tool):
        return False
    if when.state and c.state not in when.state:
        return False
    if when.labels and not c.labels & {x.lower() for x in when.labels}:
        return False
    if when.requester and not _requester_matches(when.requester, c.requesters):
        return False
    if when.unowned_for is not None and now - c.unowned_since < when.unowned_for:
        return False
    return when.title is None or title_matches(when.title, c.title)


def first_rule(rules: Sequence[RoutingRule], c: Candidate, now: datetime) -> RoutingRule | None:
    return next((r for r in rules if matches(r.when, c, now)), None)


def plan_routing(
    candidates: Sequence[Candidate],
    rules: Sequence[RoutingRule],
    teams: Sequence[Team],
    people: Iterable[str],
    absences: Mapping[str, Absence],
    load: Mapping[str, int],
    rotation: Mapping[str, str],
    now: datetime,
    budget: int,
    exclude: Mapping[int, str] | None = None,
) -> RoutingPlan:
    """Owners for unowned requests, oldest request first, at most `budget` of them.

    `load` is each person's open requests and `rotation` each team's last person given
    work; both move as this plan assigns, so one cycle spreads work as several would.
    `exclude` keeps a person per request out of the pick (an escalation re-routes away from
    the owner who did not pick the handoff up).
    """
    people = set(people)
    by_team = {t.id: t for t in teams}
    available = people - away(absences, now)
    load = dict(load)
    turn = dict(rotation)
    plan = RoutingPlan()
    noted: set[str] = set()
    for c in sorted(candidates, key=lambda c: (c.unowned_since, c.request_id)):
        rule = first_rule(rules, c, now)
        if rule is None:
            continue
        if len(plan.assignments) >= budget:
            plan.left += 1
            continue
        skip = (exclude or {}).get(c.request_id) or c.gave_up
        owner: str | None
        meant_for: str | None = None
        if rule.assign.person is not None:
            owner = recipient(rule.assign.person, absences, now, people)
            if owner is not None and owner != rule.assign.person:
                meant_for = rule.assign.person
            if owner is None and rule.name not in noted:
                plan.notes.append(f"rule {rule.name!r}: {rule.assign.person} is not available")
                noted.add(rule.name)
        else:
            team = by_team.get(str(rule.assign.team))
            members = list(team.members) if team else []
            pool = available - {skip} if skip else available
            if rule.assign.strategy == "round_robin":
                owner = next_in_turn(members, turn.get(str(rule.assign.team)), pool)
            else:
                owner = least_loaded(members, load, pool)
            if owner is None and rule.name not in noted:
                plan.notes.append(
                    f"rule {rule.name!r}: nobody in team {rule.assign.team!r} is available"
                )
                noted.add(rule.name)
            if owner is not None:
                turn[str(rule.assign.team)] = owner
                plan.rotation[str(rule.assign.team)] = owner
        if owner is None or owner == skip:
            continue
        load[owner] = load.get(owner, 0) + 1
        plan.assignments.append(Assignment(c.request_id, c.key, owner, rule.name, meant_for))
    return plan


@dataclass(frozen=True)
class Owned:
    """An open request owned by someone who is away, as covering sees it."""

    request_id: int
    key: str
    owner: str
    owner_at: datetime | None  # when its owner last changed


def plan_cover(
    owned: Sequence[Owned],
    absences: Mapping[str, Absence],
    people: Iterable[str],
    now: datetime,
    budget: int,
) -> list[Assignment]:
    """Requests to move to a delegate: handoffs to an away person made since the absence
    began, and, when the absence says so, every open request they own."""
    people = set(people)
    out: list[Assignment] = []
    for o in sorted(owned, key=lambda o: o.request_id):
        absence = absences.get(o.owner)
        if absence is None or not absence.active(now) or absence.delegate is None:
            continue
        new = o.owner_at is not None and o.owner_at >= absence.since
        if not (new or absence.move_open):
            continue
        to = recipient(o.owner, absences, now, people)
        if to is None or to == o.owner:
            continue
        if len(out) >= budget:
            break
        until = absence.until.strftime("%Y-%m-%d %H:%M")
        out.append(
            Assignment(
                o.request_id,
                o.key,
                to,
                f"covering for {o.owner} (away until {until} UTC)",
                meant_for=o.owner,
                previous_owner=o.owner,
            )
        )
    return out
