"""The reconciler's decisions, as pure functions.

For every field (owner, state, title) three values are compared: what the source shows now
(seen), what the ledger last synced with that source (the link's snapshot) and the canonical
value. Only a difference between seen and snapshot is a change made at the source; a
difference between snapshot and canonical is a write-back still owed to that source.

    seen == snapshot                      no change at this source
    seen != snapshot, canonical == snap   a change here: it becomes canonical
    seen != snapshot, canonical != snap   two sides changed: the later source-side time wins,
                                          and the loser is recorded as a conflict

Nothing here reads or writes the ledger: syncd.ledger gathers the inputs and applies the Plan.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from syncd.models import Observation
from syncd.people import Directory, pick_owner

FIELDS = ("owner", "state", "title")


@dataclass(frozen=True)
class LinkState:
    id: int
    request_id: int
    source: str
    kind: str
    ref: str
    snapshot: dict[str, str | None]  # field -> last synced canonical value


@dataclass(frozen=True)
class RequestState:
    id: int
    key: str
    values: dict[str, str | None]  # field -> canonical value
    times: dict[str, datetime | None]  # field -> source-side time of that value


@dataclass(frozen=True)
class Event:
    kind: str  # created | linked | owner_changed | state_changed | title_changed | conflict
    field: str | None = None
    from_value: str | None = None
    to_value: str | None = None
    source_at: datetime | None = None
    detail: str | None = None
    actor: str | None = None  # who made the change: person id, or "kind:handle" unmapped


@dataclass
class Plan:
    """What applying one observation does to the ledger."""

    request_id: int | None  # None: create a new request
    new_link: bool
    canonical: dict[str, str | None] = field(default_factory=dict)  # fields that change
    canonical_times: dict[str, datetime] = field(default_factory=dict)
    confirmed_times: dict[str, datetime] = field(default_factory=dict)  # value kept, time moved
    snapshot: dict[str, str | None] = field(default_factory=dict)  # the link's new snapshot
    events: list[Event] = field(default_factory=list)

    @property
    def changes_canonical(self) -> bool:
        return bool(self.canonical) or self.request_id is None


@dataclass(frozen=True)
class FieldDecision:
    value: str | None  # the canonical value after this observation
    changed: bool  # canonical changed
    loser: str | None = None  # set when a concurrent change lost
    loser_side: str | None = None  # "source" (this observation lost) or "canonical"
    conflict: bool = False
    confirmed: bool = False  # unchanged, but its time moves up to the source's


def _whole_second(t: datetime) -> datetime:
    return t.replace(microsecond=0)


def decide_field(
    seen: str | None,
    snapshot: str | None,
    canonical: str | None,
    seen_at: datetime,
    canonical_at: datetime | None,
    *,
    new_link: bool,
) -> FieldDecision:
    # Tools stamp changes at different precisions (GitHub in whole seconds, Jira and Trello
    # in milliseconds), so times from two tools are compared at the coarsest: a change at
    # 12:00:00.700 in Trello is not later than one GitHub stamps 12:00:00.
    seen_at = _whole_second(seen_at)
    canonical_at = _whole_second(canonical_at) if canonical_at is not None else None
    if not new_link and seen == snapshot:
        return FieldDecision(canonical, changed=False)
    if seen == canonical:
        # Changed here to what the ledger already has: no change, but a newer confirmation
        # of the value, which an older change elsewhere must not undo.
        newer = canonical_at is None or seen_at > canonical_at
        return FieldDecision(canonical, changed=False, confirmed=newer and not new_link)
    if not new_link and canonical == snapshot:
        # Only this side changed, unless the canonical value is newer than the change seen:
        # then the canonical moved away and back since this link last agreed (A-B-A), and
        # the older change here must not undo it. Within the same second, this change is
        # taken as the later one, as it almost always is.
        if canonical_at is None or seen_at >= canonical_at:
            return FieldDecision(seen, changed=True)
        return FieldDecision(
            canonical, changed=False, loser=seen, loser_side="source", conflict=True
        )
    if new_link and (canonical is None or seen is None):
        # A newly linked item only fills a gap; it never blanks a value the ledger has.
        if seen is None:
            return FieldDecision(canonical, changed=False)
        return FieldDecision(seen, changed=True)
    # Both sides changed since they last agreed. Later source-side time wins; a tie keeps
    # the canonical value, so replaying the same input gives the same answer.
    if canonical_at is None or seen_at > canonical_at:
        return FieldDecision(
            seen, changed=True, loser=canonical, loser_side="canonical", conflict=True
        )
    return FieldDecision(canonical, changed=False, loser=seen, loser_side="source", conflict=True)


def seen_values(
    obs: Observation, kind: str, previous_owner: str | None, d: Directory
) -> dict[str, str | None]:
    return {
        "owner": pick_owner(obs.owners, previous_owner, kind, d),
        "state": obs.state,
        "title": obs.title,
    }


def field_time(obs: Observation, name: str) -> datetime:
    return obs.owner_time if name == "owner" else obs.updated_at


def plan_observation(
    obs: Observation,
    kind: str,
    link: LinkState | None,
    request: RequestState | None,
    d: Directory,
) -> Plan:
    """Decide what one observation changes. `request` is the request the item belongs to:
    the linked one, or the one a cross-reference matched, or None for a new request."""
    previous_owner = (
        link.snapshot.get("owner") if link else (request.values.get("owner") if request else None)
    )
    seen = seen_values(obs, kind, previous_owner, d)
    # Who changed the owner, as the tool says: a person when someone claims the handle.
    actor = d.owner_for(kind, obs.owner_actor) if obs.owner_actor else None
    evidence = handoff_evidence(obs)
    if request is None:
        plan = Plan(request_id=None, new_link=True, snapshot=dict(seen))
        plan.canonical = dict(seen)
        plan.canonical_times = {f: field_time(obs, f) for f in FIELDS}
        plan.events.append(Event("created", to_value=seen["title"], source_at=obs.updated_at))
        if seen["owner"] is not None:
            plan.events.append(
                Event(
                    "owner_changed",
                    "owner",
                    None,
                    seen["owner"],
                    obs.owner_time,
                    actor=actor,
                    detail=evidence,
                )
            )
        return plan

    new_link = link is None
    plan = Plan(request_id=request.id, new_link=new_link, snapshot=dict(seen))
    if new_link:
        plan.events.append(
            Event("linked", to_value=f"{obs.source}:{obs.ref}", source_at=obs.updated_at)
        )
    for name in FIELDS:
        if new_link and name != "owner":
            # Tools name and stage the same request differently; linking one more item is
            # not a change of the request's title or state. Later changes there are.
            continue
        decision = decide_field(
            seen[name],
            link.snapshot.get(name) if link else None,
            request.values.get(name),
            field_time(obs, name),
            request.times.get(name),
            new_link=new_link,
        )
        if decision.changed:
            plan.canonical[name] = decision.value
            plan.canonical_times[name] = field_time(obs, name)
            if name != "title":
                plan.events.append(
                    Event(
                        f"{name}_changed",
                        name,
                        request.values.get(name),
                        decision.value,
                        field_time(obs, name),
                        actor=actor if name == "owner" else None,
                        detail=evidence if name == "owner" else None,
                    )
                )
        if decision.confirmed:
            plan.confirmed_times[name] = field_time(obs, name)
        if decision.conflict:
            plan.events.append(
                Event(
                    "conflict",
                    name,
                    from_value=decision.loser,
                    to_value=decision.value,
                    source_at=field_time(obs, name),
                    detail=(
                        f"{obs.source} changed {name} to {seen[name]!r} while the ledger had "
                        f"{request.values.get(name)!r}; "
                        + (
                            f"{obs.source}'s later change wins"
                            if decision.loser_side == "canonical"
                            else "the ledger's later change wins"
                        )
                    ),
                )
            )
    return plan


def handoff_evidence(obs: Observation) -> str | None:
    """Where an owner change was commanded, for its event: the mail's Message-ID when an
    /assign line in a mail made it (an "assign" Activity with an id)."""
    for act in reversed(obs.activity):
        if act.kind == "assign" and act.id:
            return f"/assign by {act.actor} in message <{act.id}>"
    return None


def choose_request(candidates: Iterable[int]) -> int | None:
    """Among requests a cross-reference matched, the oldest one wins (lowest id): it is the
    one people have been referring to longest."""
    ids = sorted(set(candidates))
    return ids[0] if ids else None


@dataclass(frozen=True)
class OwedWrite:
    link_id: int
    value: str | None


def owed_writes(
    canonical_owner: str | None, links: Iterable[LinkState]
) -> tuple[list[OwedWrite], list[int]]:
    """Which links need the canonical owner written, and which owe nothing any more."""
    owed, settled = [], []
    for link in links:
        if link.snapshot.get("owner") != canonical_owner:
            owed.append(OwedWrite(link.id, canonical_owner))
        else:
            settled.append(link.id)
    return owed, settled
