"""The source-neutral records that flow from adapters into the reconciler.

Adapters produce these and know nothing about the ledger; the reconciler consumes them and
does no I/O. Keeping both sides to these few frozen types is what lets each be tested alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

State = Literal["open", "in_progress", "blocked", "done", "cancelled"]
STATES: tuple[State, ...] = get_args(State)

# The cursor is owned by the adapter: the core stores it and hands it back, never reads it.
Cursor = dict[str, Any]


@dataclass(frozen=True)
class Observation:
    """One item as a source shows it right now."""

    source: str  # the configured source name, e.g. "api"
    ref: str  # stable id of the item within its source, e.g. "acme/api#12"
    url: str
    title: str
    state: State
    # Owner handles in the tool's own order and namespace (GitHub logins, Jira accountIds...).
    owners: tuple[str, ...]
    updated_at: datetime  # source-side time of the item's last change (aware, UTC)
    # Exact time the owner last changed, when the tool can tell (Jira's changelog can).
    owner_changed_at: datetime | None = None
    requester: str | None = None
    # Tool-level keys that name this item, e.g. "github:acme/api#12", "jira:OPS-7".
    keys: tuple[str, ...] = ()
    # Keys of other items (or "req:42" for a ledger id) mentioned in its text.
    mentions: tuple[str, ...] = ()

    @property
    def owner_time(self) -> datetime:
        return self.owner_changed_at or self.updated_at


@dataclass(frozen=True)
class Quarantined:
    """An item the adapter could not turn into an Observation, kept with the reason."""

    source: str
    ref: str | None
    reason: str
    payload: str = ""  # a bounded, redacted excerpt of what arrived


@dataclass
class Page:
    """One unit of work: applied, with its cursor, in one ledger transaction."""

    observations: list[Observation] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    cursor: Cursor | None = None  # None: leave the stored cursor as it is


@dataclass(frozen=True)
class Handoff:
    """What a write-back is for: lets an adapter explain the change in the tool (email replies)."""

    request_key: str  # "REQ-42"
    title: str
    to_owner: str | None  # person id or unmapped identity, canonical space
    to_name: str | None
    from_owner: str | None
    from_name: str | None
    origin: str  # source name where the change happened, or "operator"
    actor: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class RateBudget:
    remaining: int | None
    limit: int | None
    reset_at: datetime | None


PageStream = Iterator[Page]
