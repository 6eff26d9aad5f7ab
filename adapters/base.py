"""The contract every adapter meets.

An adapter turns one tool's records into Observations and applies one kind of write: change
who owns an item. It never touches the ledger. The core drives it:

* ``pull(cursor)`` yields Pages in order. Each Page is applied with its cursor in one ledger
  transaction, so a failure after page 3 keeps pages 1-3 and reads the rest next time.
  Pages must come in an order that makes that safe (oldest change first).
* ``read_owners(ref)`` and ``write_owner(...)`` are the write-back. The core decides what to
  write from the current owners (a pure function in syncd.outbox); the adapter only does it.
* ``bind_store(store)`` hands an adapter that must remember more than a small cursor (the
  mailbox: every thread it has seen) a keyed store. It reads entries from the store when it
  needs them and writes them only through ``Page.state``, so they commit with the page's
  cursor in one transaction, exactly like the cursor: a crash never leaves the two apart.
"""

from __future__ import annotations

import ipaddress
import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import ClassVar, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from syncd.config import SourceConfig
from syncd.crossref import DEFAULT_RULES, Rules
from syncd.http import HttpOptions
from syncd.models import Comment, Cursor, Handoff, Page, RateBudget, State
from syncd.people import Directory
from syncd.redact import redact

T = TypeVar("T")


class Unreadable(Exception):
    """One item that cannot become an Observation; the adapter quarantines it with `reason`
    and goes on with the rest of the page. Never leaves an adapter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _kind(value: object) -> str:
    return (
        "null" if value is None else f"a JSON {_JSON_NAMES.get(type(value), type(value).__name__)}"
    )


_JSON_NAMES: dict[type, str] = {
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}


def present(obj: Mapping[str, object], key: str, what: str | None = None) -> object:
    """The value under `key`, which must be there. An answer that leaves a field out (a
    field configuration can hide it, a proxy can trim it) says nothing about its value:
    absence is never read as "empty", so the item is quarantined instead."""
    if key not in obj:
        raise Unreadable(f"{what or key} is missing from the answer, so its value is unknown")
    return obj[key]


def typed(obj: Mapping[str, object], key: str, kind: type[T], what: str | None = None) -> T:
    """The value under `key`, present and of `kind` (title, state, ...); else Unreadable."""
    value = present(obj, key, what)
    # bool is an int to Python, never to JSON.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise Unreadable(f"{what or key} is {_kind(value)}, not {_kind_of(kind)}")
    return value


def _kind_of(kind: type) -> str:
    return f"a JSON {_JSON_NAMES.get(kind, kind.__name__)}"


def timestamp(value: object, what: str, form: str = "an ISO 8601 timestamp") -> datetime:
    """A tool's time with its zone, in UTC so that times from any tool compare; else
    Unreadable naming `what` and the `form` expected."""
    if not isinstance(value, str) or len(value) > 40:
        raise Unreadable(f"{what} is missing or not a timestamp")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise Unreadable(f"{what} {value!r} is not {form}") from None
    if when.tzinfo is None:
        raise Unreadable(f"{what} {value!r} has no time zone")
    return when.astimezone(UTC)


def timestamp_or_none(value: object) -> datetime | None:
    """A time that only helps (when a comment was made, when a limit resets), or None."""
    try:
        return timestamp(value, "time")
    except Unreadable:
        return None


EVIDENCE = 1000  # characters of a quarantined item kept as evidence


def evidence(raw: object) -> str:
    """What a quarantined item keeps of its raw record for an operator to see."""
    # Redact the whole text before cutting it, so no part of a secret survives the cut.
    return redact(json.dumps(raw, ensure_ascii=False, default=str))[:EVIDENCE]


def owner_entries(
    obj: Mapping[str, object], key: str, *, single: bool = False, what: str | None = None
) -> list[object]:
    """The raw entries of an owner field: the one rule for who owns an item, in every
    adapter. Only an explicit null or an empty list means "nobody"; a missing key or a
    value of the wrong type means the owners are unknown (Unreadable, so quarantined, and
    nothing is unassigned anywhere). `single` fields (Jira's assignee) hold one object."""
    if key not in obj:
        raise Unreadable(f"{what or key} is missing from the answer, so the owners are unknown")
    value = obj[key]
    if value is None:
        return []
    if single and isinstance(value, dict):
        return [value]
    if not single and isinstance(value, list):
        return list(value)
    expected = "an object or null" if single else "a JSON array or null"
    raise Unreadable(f"{what or key} is {_kind(value)}, not {expected}, so the owners are unknown")


def is_loopback(host: str) -> bool:
    """Whether a host is this machine: the one place plain http or IMAP is accepted, since
    credentials travel with every request."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_root(url: str, *, shape: str, plain: str) -> str:
    """`url` as the root of a tool's API, without a trailing slash: http(s) with a host and
    nothing but a path. Else ValueError: "must be {shape}", or "must be {plain}, without ..."."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"must be {shape}")
    # Credentials travel with every request; plain http only for an emulator on this machine.
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError("use https (plain http is accepted only for a loopback emulator)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"must be {plain}, without query, fragment or credentials")
    return url.rstrip("/")


class StateStore(Protocol):
    """One source's keyed state, read-only to the adapter (writes go through Page.state).

    Keys and values are the adapter's own strings (values JSON by convention); the core
    neither reads nor interprets them. There is no size limit: what the adapter knows is
    not forgotten because it knows a lot."""

    def get(self, keys: Iterable[str]) -> dict[str, str]:
        """The stored values of those keys that exist."""

    def scan(self, prefix: str) -> Iterator[tuple[str, str]]:
        """Every (key, value) whose key starts with `prefix`, in key order."""


class MemoryStore:
    """A StateStore in a dict: for an adapter run without a ledger (tests, one-off reads).
    `apply` does what the ledger does with a page's state."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}

    def get(self, keys: Iterable[str]) -> dict[str, str]:
        return {k: self.entries[k] for k in keys if k in self.entries}

    def scan(self, prefix: str) -> Iterator[tuple[str, str]]:
        for key in sorted(k for k in self.entries if k.startswith(prefix)):
            yield key, self.entries[key]

    def apply(self, changes: dict[str, str | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self.entries.pop(key, None)
            else:
                self.entries[key] = value


C = TypeVar("C", bound=SourceConfig)


class Adapter(ABC, Generic[C]):
    kind: ClassVar[str]  # identity namespace and config `type`, e.g. "github"
    Config: ClassVar[type[SourceConfig]]
    # Native state (lower-cased) -> canonical state, before config overrides.
    default_states: ClassVar[dict[str, State]] = {}

    def __init__(self, config: C, http: HttpOptions | None = None) -> None:
        self.config = config
        self.http = http or HttpOptions()
        # What declares identity in item text; see bind_matching.
        self.rules: Rules = DEFAULT_RULES

    @property
    def name(self) -> str:
        return self.config.name

    def map_state(self, native: str, fallback: State = "open") -> State:
        key = native.lower()
        return self.config.states.get(key) or self.default_states.get(key) or fallback

    @abstractmethod
    def pull(self, cursor: Cursor | None) -> Iterator[Page]:
        """Yield what changed since `cursor` (everything when None), oldest first."""

    @abstractmethod
    def read_owners(self, ref: str) -> tuple[str, ...]:
        """The item's owner handles as the tool has them now."""

    @abstractmethod
    def write_owner(
        self, ref: str, add: str | None, remove: tuple[str, ...], handoff: Handoff
    ) -> tuple[str, ...]:
        """Add one owner handle and remove others; return the owners the tool now reports.
        Sets `gone_at_write` to the handles of `remove` found already off the item."""

    # The owners the last write_owner meant to remove but found already gone when it got
    # there: a person's concurrent change that the owners reported after the write cannot
    # show, since removing what is gone looks the same as removing it. Jira (one assignee,
    # checked through its changelog) and mail leave it empty.
    gone_at_write: tuple[str, ...] = ()
    # Whether the last write_owner, finding an owner gone before its first write, wrote
    # nothing at all (then no `writeback` event may say it did).
    wrote_nothing: bool = False

    # Whether the tool takes comments (handoff notes) from syncd.
    comments: ClassVar[bool] = False

    def find_comment(self, ref: str, marker: str) -> str | None:
        """The id of syncd's comment carrying `marker` on the item, if it is there."""
        raise NotImplementedError(f"{self.kind} takes no comments")

    def post_comment(self, ref: str, comment: Comment) -> str:
        """Post a comment; return the tool's id for it."""
        raise NotImplementedError(f"{self.kind} takes no comments")

    def request_counts(self) -> Counter[str]:
        """Requests (or round trips) made so far, by "METHOD status"; for status and benchmarks."""
        return Counter()

    def bind_people(self, directory: Directory) -> None:
        """Called with the people directory before the first pull, and again on reload.
        Most tools name owners by their own handles and ignore it; a mailbox uses it to turn
        `owner-alice` tags and sender addresses into people."""

    def bind_store(self, store: StateStore) -> None:
        """Called with this source's keyed state before the first pull. Only adapters that
        use Page.state need it (see the module docstring)."""

    def bind_matching(self, rules: Rules) -> None:
        """Called with what declares identity (the built-in labels plus `[matching]
        declare_labels`, and the Jira project keys known to the configured Jira sources)
        before the first pull, and again whenever that changes. Adapters read item text
        with syncd.crossref.read_references(..., self.rules)."""
        self.rules = rules

    def known_projects(self) -> frozenset[str]:
        """Jira project keys of the items this source has read (only Jira has any); the
        engine shares them with every adapter, so that bare keys of other projects are not
        taken for Jira keys."""
        return frozenset()

    def rate_budget(self) -> RateBudget | None:
        """What the tool last said about its rate limit, if it says anything."""
        return None

    def close(self) -> None:
        """Release connections."""
