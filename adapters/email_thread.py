"""Threads, owners and states in a mailbox, and the cursor that remembers them. Pure, no I/O.

One thread is one item. Its ref is the Message-ID of its root: the first entry of a
message's References (the chain clients keep, root first), else its In-Reply-To, else its
own Message-ID. That id does not depend on folders or UIDs, so a folder rebuilt with a new
UIDVALIDITY is read again into the same items, and a thread spread over several folders is
still one item. A message whose chain names a thread already known joins that thread, and a
thread's ref never changes once reported, since a new ref would be a new request. (So the
one order that splits a thread: a reply that names only its parent, arriving in an earlier
cycle than that parent, when the parent is itself a reply.)

Why a cursor with thread state, rather than re-reading every thread from the server each
cycle: a keyword set on one message changes the owner of the whole thread, and the
observation must describe the whole thread (its title, requester, every cross-reference),
so without memory each small change would mean fetching every message of the thread again,
bodies included. The cursor keeps, per thread, the few facts the observation needs and, per
message, only its folder, UID, Message-ID and the syncd keywords it carries: about a hundred
bytes per message. It is bounded (MAX_THREADS, MAX_MESSAGES); a thread that fell out of it
and comes back to life is rebuilt from the server by the adapter (a header search).

Owner and state: "the latest wins". Each owner or state keyword present on any message of
the thread, and each `/assign` command, is an event with a sequence number in the order
syncd first saw it (within one cycle, in the order of the messages' MODSEQ, then UID). The
thread's owner is the latest owner event. When the keyword the owner came from is removed
from every message, the owner falls back to the latest owner keyword still present, or to
nobody. State works the same way with state keywords, defaulting to "open".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from syncd.adapters.email_message import MailFacts, is_synthetic

CURSOR_VERSION = 1
MAX_THREADS = 5000
MAX_MESSAGES = 200  # per thread; the oldest messages without keywords are forgotten first
MAX_MENTIONS = 50


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Keywords:
    """Which IMAP keywords mean what. Keywords are compared lower-cased."""

    owner_prefix: str = "owner-"
    state_prefix: str = "state-"

    def relevant(self, keywords: Iterable[str]) -> tuple[str, ...]:
        return tuple(
            sorted(
                k
                for k in keywords
                if (k.startswith(self.owner_prefix) and len(k) > len(self.owner_prefix))
                or (k.startswith(self.state_prefix) and len(k) > len(self.state_prefix))
            )
        )

    def owner_of(self, keyword: str) -> str | None:
        return keyword[len(self.owner_prefix) :] if keyword.startswith(self.owner_prefix) else None

    def state_of(self, keyword: str) -> str | None:
        return keyword[len(self.state_prefix) :] if keyword.startswith(self.state_prefix) else None

    def owner_keyword(self, tag: str) -> str:
        return f"{self.owner_prefix}{tag}"


@dataclass
class Tracked:
    """One message of a thread, as the cursor keeps it."""

    folder: str
    uidvalidity: int
    uid: int
    message_id: str
    keywords: tuple[str, ...]  # the relevant (owner/state) keywords only

    def dump(self) -> list[Any]:
        return [self.folder, self.uidvalidity, self.uid, self.message_id, list(self.keywords)]

    @classmethod
    def load(cls, data: list[Any]) -> Tracked:
        folder, uidvalidity, uid, message_id, keywords = data
        return cls(str(folder), int(uidvalidity), int(uid), str(message_id), tuple(keywords))


@dataclass
class Signal:
    """The event a thread's owner or state came from."""

    value: str | None  # "alice", "bob@example.com", "done"; None: nobody / default
    seq: int
    at: str  # ISO time syncd takes the change to have happened
    via: str  # "keyword" | "command" | "fallback"

    def dump(self) -> dict[str, Any]:
        return {"value": self.value, "seq": self.seq, "at": self.at, "via": self.via}

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> Signal | None:
        if data is None:
            return None
        value = data["value"]
        return cls(
            None if value is None else str(value),
            int(data["seq"]),
            str(data["at"]),
            str(data["via"]),
        )


@dataclass
class Thread:
    root: str
    title: str
    requester: str | None
    first_at: str  # arrival of the earliest message seen
    root_seen: bool  # the root message itself has been seen (its subject is the title)
    updated_at: str
    last_id: str | None = None  # the latest real Message-ID: what a reply answers
    last_at: str = ""
    mentions: list[str] = field(default_factory=list)
    messages: list[Tracked] = field(default_factory=list)
    tags: dict[str, int] = field(default_factory=dict)  # keyword present -> seq first seen
    owner: Signal | None = None
    state: Signal | None = None

    def fingerprint(self) -> tuple[Any, ...]:
        """What an observation of this thread shows, and how many messages it has (a new
        reply is news even within the same second); a cycle reports threads whose
        fingerprint changed."""
        return (
            len(self.messages),
            self.title,
            self.requester,
            self.updated_at,
            tuple(self.mentions),
            self.owner.value if self.owner else None,
            self.owner.at if self.owner else None,
            self.state.value if self.state else None,
        )

    def present(self) -> set[str]:
        return {k for m in self.messages for k in m.keywords}

    def dump(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "requester": self.requester,
            "first_at": self.first_at,
            "root_seen": self.root_seen,
            "updated_at": self.updated_at,
            "last_id": self.last_id,
            "last_at": self.last_at,
            "mentions": self.mentions,
            "messages": [m.dump() for m in self.messages],
            "tags": self.tags,
            "owner": self.owner.dump() if self.owner else None,
            "state": self.state.dump() if self.state else None,
        }

    @classmethod
    def load(cls, root: str, d: dict[str, Any]) -> Thread:
        return cls(
            root=root,
            title=str(d["title"]),
            requester=d["requester"],
            first_at=str(d["first_at"]),
            root_seen=bool(d["root_seen"]),
            updated_at=str(d["updated_at"]),
            last_id=d.get("last_id"),
            last_at=str(d.get("last_at") or ""),
            mentions=[str(m) for m in d["mentions"]],
            messages=[Tracked.load(m) for m in d["messages"]],
            tags={str(k): int(v) for k, v in d["tags"].items()},
            owner=Signal.load(d.get("owner")),
            state=Signal.load(d.get("state")),
        )


@dataclass
class FolderState:
    uidvalidity: int
    uidnext: int  # every UID below this has been read
    modseq: int | None  # HIGHESTMODSEQ fully read; None: flags must be re-read in full
    count: int  # messages in the folder when last read, to notice expunges

    def dump(self) -> list[Any]:
        return [self.uidvalidity, self.uidnext, self.modseq, self.count]

    @classmethod
    def load(cls, d: list[Any]) -> FolderState:
        uidvalidity, uidnext, modseq, count = d
        return cls(
            int(uidvalidity), int(uidnext), None if modseq is None else int(modseq), int(count)
        )


@dataclass
class Event:
    """A candidate owner or state change found in this cycle, before sequencing."""

    order: tuple[int, int]  # (MODSEQ, UID) of the message it was seen on
    kind: str  # "owner" | "state"
    value: str | None
    at: datetime
    via: str
    keyword: str | None = None  # the keyword it came from, if any


@dataclass
class MailState:
    """Everything the email adapter remembers between cycles: the cursor."""

    folders: dict[str, FolderState] = field(default_factory=dict)
    threads: dict[str, Thread] = field(default_factory=dict)
    seq: int = 0
    words: Keywords = field(default_factory=Keywords)  # configuration, never stored
    # Per-cycle bookkeeping, never stored.
    _events: dict[str, list[Event]] = field(default_factory=dict, init=False, repr=False)
    _before: dict[str, tuple[Any, ...] | None] = field(default_factory=dict, init=False, repr=False)
    _by_id: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _by_uid: dict[tuple[str, int], str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.reindex()

    # -- the cursor -------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {
            "v": CURSOR_VERSION,
            "seq": self.seq,
            "folders": {name: f.dump() for name, f in self.folders.items()},
            "threads": {root: t.dump() for root, t in self.threads.items()},
        }

    @classmethod
    def load(cls, cursor: dict[str, Any] | None, words: Keywords) -> MailState:
        """The state a cursor holds. An unreadable cursor raises ValueError; the caller
        starts from scratch, which reads the folders again without duplicating anything."""
        if not cursor:
            return cls(words=words)
        try:
            if cursor.get("v") != CURSOR_VERSION:
                raise ValueError(f"cursor version {cursor.get('v')!r}")
            return cls(
                folders={str(k): FolderState.load(v) for k, v in cursor["folders"].items()},
                threads={str(r): Thread.load(str(r), t) for r, t in cursor["threads"].items()},
                seq=int(cursor["seq"]),
                words=words,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"unreadable email cursor ({type(exc).__name__}: {exc})") from None

    def reindex(self) -> None:
        self._by_id = {}
        self._by_uid = {}
        for root, thread in self.threads.items():
            self._by_id[root] = root
            for m in thread.messages:
                self._by_id[m.message_id] = root
                # Entries from a folder's previous UIDVALIDITY wait for the sweep; their
                # UIDs mean nothing any more.
                if self._current(m):
                    self._by_uid[(m.folder, m.uid)] = root

    # -- reading the cycle's changes ----------------------------------------------------

    def begin_cycle(self) -> None:
        self._events = {}
        self._before = {}

    def touched(self) -> bool:
        """Whether this cycle changed any thread so far."""
        return bool(self._before)

    def touch(self, root: str) -> None:
        if root not in self._before:
            thread = self.threads.get(root)
            self._before[root] = thread.fingerprint() if thread else None

    def root_of(self, facts: MailFacts) -> str:
        """The thread a message belongs to (see the module docstring). A root some earlier
        message already resolved wins, so a client that broke the chain cannot split a
        thread that is already known."""
        for candidate in (facts.message_id, *facts.references):
            known = self._by_id.get(candidate)
            if known is not None:
                return known
        return facts.references[0] if facts.references else facts.message_id

    def knows(self, root: str) -> bool:
        return root in self.threads

    def tracked_uids(self, folder: str) -> list[int]:
        return sorted(uid for (f, uid) in self._by_uid if f == folder)

    def add_message(self, facts: MailFacts, uidvalidity: int, command: str | None) -> str | None:
        """Put one fetched message into its thread. `command` is its /assign argument when
        its sender may give commands. Returns the thread's root, or None for syncd's own
        mail, which never starts or changes a thread."""
        if facts.own:
            return None
        if self._tracks(facts.folder, uidvalidity, facts.uid):
            # Read again (a thread rebuilt mid-scan): only its keywords can have changed.
            return self.set_keywords(
                facts.folder, facts.uid, facts.keywords, facts.modseq, facts.received_at
            )
        root = self.root_of(facts)
        self.touch(root)
        thread = self.threads.get(root)
        received = iso(facts.received_at)
        if thread is None:
            thread = Thread(
                root=root,
                title=facts.title,
                requester=facts.sender,
                first_at=received,
                root_seen=facts.message_id == root,
                updated_at=received,
            )
            self.threads[root] = thread
        self._place(thread, facts, uidvalidity)
        self._describe(thread, facts, received)
        if command is not None:
            order = (facts.modseq, facts.uid)
            self._event(root, Event(order, "owner", command, facts.received_at, "command"))
        return root

    def _current(self, m: Tracked) -> bool:
        folder = self.folders.get(m.folder)
        return folder is None or folder.uidvalidity == m.uidvalidity

    def _tracks(self, folder: str, uidvalidity: int, uid: int) -> bool:
        root = self._by_uid.get((folder, uid))
        if root is None:
            return False
        return any(
            m.folder == folder and m.uid == uid and m.uidvalidity == uidvalidity
            for m in self.threads[root].messages
        )

    def incomplete(self) -> list[str]:
        """Threads this cycle created from a reply alone: their root and earlier messages
        may be elsewhere in the mailbox (or the thread fell out of the cursor), and an
        observation of a part of a thread could wrongly clear its owner."""
        return [
            root
            for root, before in self._before.items()
            if before is None and root in self.threads and not self.threads[root].root_seen
        ]

    def _place(self, thread: Thread, facts: MailFacts, uidvalidity: int) -> None:
        relevant = self.words.relevant(facts.keywords)
        entry = Tracked(facts.folder, uidvalidity, facts.uid, facts.message_id, relevant)
        # The same message read again after its folder got a new UIDVALIDITY replaces its
        # old entry; its keywords were there all along, so they raise no event.
        thread.messages = [m for m in thread.messages if not _replaced_by(m, entry)]
        thread.messages.append(entry)
        self._by_id[facts.message_id] = thread.root
        self._by_uid[(facts.folder, facts.uid)] = thread.root
        for keyword in entry.keywords:
            if keyword not in thread.tags:
                self._keyword_event(
                    thread.root, keyword, (facts.modseq, facts.uid), facts.received_at
                )

    def _describe(self, thread: Thread, facts: MailFacts, received: str) -> None:
        # The root's subject and sender describe the thread; until the root is seen, the
        # earliest message stands in for it.
        is_root = facts.message_id == thread.root
        if (is_root and not thread.root_seen) or (
            not thread.root_seen and received < thread.first_at
        ):
            thread.title, thread.requester = facts.title, facts.sender
            thread.root_seen = is_root
        thread.first_at = min(thread.first_at, received)
        thread.updated_at = max(thread.updated_at, received)
        if not is_synthetic(facts.message_id) and received >= thread.last_at:
            thread.last_id, thread.last_at = facts.message_id, received
        for key in facts.mentions:
            if key not in thread.mentions and len(thread.mentions) < MAX_MENTIONS:
                thread.mentions.append(key)

    def set_keywords(
        self,
        folder: str,
        uid: int,
        keywords: Iterable[str],
        modseq: int,
        now: datetime,
    ) -> str | None:
        """A known message's keywords as the server shows them now. Returns its thread's
        root when the syncd keywords changed, None otherwise (or when it is not tracked)."""
        root = self._by_uid.get((folder, uid))
        if root is None:
            return None
        thread = self.threads[root]
        relevant = self.words.relevant(keywords)
        for m in thread.messages:
            if self._current(m) and m.folder == folder and m.uid == uid and m.keywords != relevant:
                self.touch(root)
                m.keywords = relevant
                for keyword in relevant:
                    if keyword not in thread.tags:
                        self._keyword_event(root, keyword, (modseq, uid), now)
                return root
        return None

    def _keyword_event(self, root: str, keyword: str, order: tuple[int, int], at: datetime) -> None:
        owner = self.words.owner_of(keyword)
        kind, value = (
            ("owner", owner) if owner is not None else ("state", self.words.state_of(keyword))
        )
        self._event(root, Event(order, kind, value, at, "keyword", keyword))
        # Marked as present now, so the same keyword on another message is not a second
        # event; settle() gives it its sequence number.
        self.threads[root].tags.setdefault(keyword, -1)

    def _event(self, root: str, event: Event) -> None:
        self._events.setdefault(root, []).append(event)

    def forget_uids(self, folder: str, uids: Iterable[int]) -> set[str]:
        """Messages that are gone from a folder (expunged). Returns the threads touched."""
        gone = {(folder, u) for u in uids}
        touched: set[str] = set()
        for key in gone:
            root = self._by_uid.pop(key, None)
            if root is None:
                continue
            self.touch(root)
            thread = self.threads[root]
            thread.messages = [
                m for m in thread.messages if not (self._current(m) and (m.folder, m.uid) == key)
            ]
            touched.add(root)
        return touched

    def sweep_folder(self, folder: str, uidvalidity: int) -> set[str]:
        """After a full read of a folder: entries from its previous UIDVALIDITY that were not
        read again are messages that no longer exist."""
        touched: set[str] = set()
        for root, thread in self.threads.items():
            kept = [
                m for m in thread.messages if m.folder != folder or m.uidvalidity == uidvalidity
            ]
            if len(kept) != len(thread.messages):
                self.touch(root)
                thread.messages = kept
                touched.add(root)
        self.reindex()
        return touched

    # -- deciding owner and state -----------------------------------------------------------

    def settle(self, now: datetime) -> list[str]:
        """Sequence this cycle's events and decide every touched thread's owner and state.
        Returns the roots whose observable summary changed (new threads included), in the
        order they were first touched. Threads with no message left are dropped."""
        changed = []
        for root in list(self._before):
            thread = self.threads.get(root)
            if thread is None:
                continue
            if not thread.messages:
                del self.threads[root]
                continue
            self._decide(thread, sorted(self._events.get(root, []), key=lambda e: e.order), now)
            bound_messages(thread)
            if self._before[root] != thread.fingerprint():
                changed.append(root)
        self._events, self._before = {}, {}
        self._evict()
        self.reindex()
        return changed

    def _decide(self, thread: Thread, events: list[Event], now: datetime) -> None:
        latest: dict[str, Signal] = {}
        for event in events:
            self.seq += 1
            latest[event.kind] = Signal(event.value, self.seq, iso(min(event.at, now)), event.via)
            if event.keyword is not None:
                thread.tags[event.keyword] = self.seq
        present = thread.present()
        thread.tags = {k: s for k, s in thread.tags.items() if k in present}
        for kind in ("owner", "state"):
            current: Signal | None = getattr(thread, kind)
            if kind in latest:
                current = latest[kind]
            elif self._keyword_gone(kind, current, present):
                current = self._fallback(thread, kind, now)
            setattr(thread, kind, current)
            if current is not None:
                thread.updated_at = max(thread.updated_at, current.at)

    def _keyword_gone(self, kind: str, current: Signal | None, present: set[str]) -> bool:
        """The current value came from a keyword that no message carries any more."""
        return (
            current is not None
            and current.via == "keyword"
            and current.value is not None
            and self._keyword(kind, current.value) not in present
        )

    def _prefix(self, kind: str) -> str:
        return self.words.owner_prefix if kind == "owner" else self.words.state_prefix

    def _keyword(self, kind: str, value: str) -> str:
        return f"{self._prefix(kind)}{value}"

    def _fallback(self, thread: Thread, kind: str, now: datetime) -> Signal:
        """The keyword of the current value was removed everywhere: the latest one of the
        same kind still present takes over, or nobody / the default state."""
        self.seq += 1
        prefix = self._prefix(kind)
        candidates = [(seq, k) for k, seq in thread.tags.items() if k.startswith(prefix)]
        if not candidates:
            return Signal(None, self.seq, iso(now), "fallback")
        _, keyword = max(candidates)
        return Signal(keyword[len(prefix) :], self.seq, iso(now), "keyword")

    def _evict(self) -> None:
        if len(self.threads) <= MAX_THREADS:
            return
        by_age = sorted(self.threads.values(), key=lambda t: t.updated_at)
        for thread in by_age[: len(self.threads) - MAX_THREADS]:
            del self.threads[thread.root]


def _replaced_by(old: Tracked, new: Tracked) -> bool:
    """The same message: the same UID, or (after its folder got a new UIDVALIDITY) the
    same Message-ID under the previous UIDVALIDITY."""
    if old.folder != new.folder:
        return False
    if old.uidvalidity == new.uidvalidity:
        return old.uid == new.uid
    return old.message_id == new.message_id


def bound_messages(thread: Thread) -> None:
    """Keep at most MAX_MESSAGES entries: forget the oldest ones whose keywords another
    entry also carries, so forgetting never changes what keywords the thread has."""
    excess = len(thread.messages) - MAX_MESSAGES
    if excess <= 0:
        return
    keep: list[Tracked] = []
    for i, m in enumerate(thread.messages):
        others = {k for o in thread.messages[i + 1 :] for k in o.keywords} | {
            k for o in keep for k in o.keywords
        }
        if excess > 0 and set(m.keywords) <= others:
            excess -= 1
            continue
        keep.append(m)
    thread.messages = keep


def mid_url(message_id: str) -> str:
    """An RFC 2392 `mid:` URL: mail clients that support it open the message."""
    return "mid:" + quote(message_id, safe="@!$&'()*+,;=-._~")
