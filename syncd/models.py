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
class Activity:
    """One thing a person did on an item, as the tool reports it."""

    actor: str  # a handle in the tool's namespace (login, accountId, member id, address)
    at: datetime  # source-side time (aware, UTC)
    kind: str  # "comment" | "state" | "edit" | "reply" | "assign"
    id: str | None = None  # the tool's id for it (a comment id), for idempotence
    text: str | None = None  # a comment's text, bounded; where /assign commands are read
    # The actor may give commands: a mapped member (GitHub author_association OWNER, MEMBER or
    # COLLABORATOR; an authenticated internal mail sender).
    trusted: bool = False
    by_syncd: bool = False  # syncd's own comment or reply, recognised by its marker
    # The comment was changed after it was written. Tools do not say by whom (a maintainer
    # may edit anyone's comment) nor when its words were written: it gives no command.
    edited: bool = False


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
    # Keys of other items (or "req:42" for a ledger id) mentioned in its text. A mention is a
    # relation ("blocked by", "see also"), kept and shown, never a reason to merge.
    mentions: tuple[str, ...] = ()
    # Keys of items this one *declares* to be the same piece of work: a "[OPS-7] ..." title, a
    # "Jira: OPS-7" line, a tool's own link field (Jira remote link, Trello attachment), mail
    # threading. Only declarations link items into one request. An adapter leaves this empty
    # when the author may not declare (an outsider's mail, a non-member on a public repo).
    declared: tuple[str, ...] = ()
    # Relation kind per mentioned key, where the phrase around it tells: key -> "blocked_by",
    # "blocks", "duplicate_of", "parent", "child" or "related". Keys absent here are plain mentions.
    relation_kinds: tuple[tuple[str, str], ...] = ()
    # Whether the item's author is trusted to declare identity and give commands.
    author_trusted: bool = True
    # Who made the last owner change, as a handle in this tool's namespace, when the tool says.
    owner_actor: str | None = None
    # Labels, Jira components, Trello labels: what routing rules test.
    labels: tuple[str, ...] = ()
    # What people did on the item since the previous poll (comments, state changes, edits), in
    # time order: acceptance of a handoff, and /assign commands in comments, are read from it.
    activity: tuple[Activity, ...] = ()

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
    # Entries of the adapter's keyed state (see adapters.base.StateStore) to store with this
    # page, in the same transaction as its cursor: key -> JSON text, or None to delete.
    state: dict[str, str | None] = field(default_factory=dict)


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
class Comment:
    """A comment syncd posts on an item: a handoff note. The adapter renders `paragraphs`
    in the tool's format and carries `marker` where people do not see it (a hidden HTML
    comment on GitHub, a comment property on Jira) or as a small last line (Trello), so a
    retry can tell that the comment is already there and syncd's own comments are never
    read back as a person's."""

    marker: str
    paragraphs: tuple[str, ...]
    links: tuple[tuple[str, str], ...] = ()  # (label, url), only those the audience may see


@dataclass(frozen=True)
class RateBudget:
    remaining: int | None
    limit: int | None
    reset_at: datetime | None


PageStream = Iterator[Page]
