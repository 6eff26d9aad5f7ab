"""Threads, owners and states in a mailbox, and what syncd remembers of them. No I/O of its
own: remembered entries are read through the StateStore it is handed.

One thread is one item. Its ref is the Message-ID of its root: the first entry of a
message's References (the chain clients keep, root first), else its In-Reply-To, else its
own Message-ID. That id does not depend on folders or UIDs, so a folder rebuilt with a new
UIDVALIDITY is read again into the same items, and a thread spread over several folders is
still one item. A message whose chain names a thread already known joins that thread, and a
thread's ref never changes once reported, since a new ref would be a new request. (So the
one order that splits a thread: a reply that names only its parent, arriving in an earlier
cycle than that parent, when the parent is itself a reply.)

Where the threads are kept: a keyword set on one message changes the owner of the whole
thread, and the observation must describe the whole thread (its title, requester, every
cross-reference), so syncd remembers, per thread, the few facts the observation needs and,
per message, its folder, UID, Message-ID and syncd keywords: about a hundred bytes per
message. That memory is not bounded and not in the cursor. It lives in the adapter's keyed
state (adapters.base.StateStore, the ledger's `adapter_state` table), read entry by entry
when a message needs it, and written only with the page that changed it, in the same
transaction as the cursor. So a keyword set on a thread from years and 20,000 mails ago is
seen, and a write-back finds it, as surely as yesterday's. The entries:

    t:<root Message-ID>              the thread (Thread.dump)
    m:<Message-ID>                   {"root", "from", "date"}: the thread a message belongs
                                     to, and what makes that Message-ID its own
    u:<folder> TAB <uidvalidity> TAB <uid>   the root of the thread that message is in

Why a store handed in by the core rather than a table the adapter writes: an adapter never
touches the ledger, so it never holds a transaction across network round trips, and its
entries cannot commit apart from the page they describe (they ride in Page.state and commit
with the cursor, or not at all, so a crash reads the same mail again into the same state).
The core does not interpret them; the same code runs on a MemoryStore without a ledger.

The cursor itself keeps only each folder's (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, count) and
the event counter: a quiet cycle compares those with one STATUS per folder and reads nothing.

Owner and state: "the latest wins". Each owner or state keyword present on any message of
the thread, and each `/assign` command, is an event with a sequence number in the order
syncd first saw it (within one cycle, in the order of the messages' MODSEQ, then UID). The
thread's owner is the latest owner event. When the keyword the owner came from is removed
from every message, the owner falls back to the latest owner keyword still present, or to
nobody. State works the same way with state keywords, defaulting to "open".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from syncd.adapters.base import MemoryStore, StateStore
from syncd.adapters.email_message import MailFacts, Refused, is_synthetic

CURSOR_VERSION = 2
MAX_MENTIONS = 50  # keys an observation carries; more are rarely real and never needed
REUSED_ID = (
    "reuses the Message-ID of an earlier message with a different sender or date: "
    "another message, kept apart (never threaded, never a reply target)"
)


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
    actor: str | None = None  # who gave the command: the sender's address
    evidence: str | None = None  # the Message-ID of the mail with the command

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "seq": self.seq, "at": self.at, "via": self.via}
        if self.actor is not None:
            out["actor"], out["evidence"] = self.actor, self.evidence
        return out

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
            data.get("actor"),
            data.get("evidence"),
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
    # The thread's author (its root's sender) is an authenticated internal sender.
    trusted: bool = False
    tag: str | None = None  # "req:42": the root's subject carries syncd's [REQ-42] tag
    declared: list[str] = field(default_factory=list)  # keys trusted messages declared
    relations: dict[str, str] = field(default_factory=dict)  # mention -> relation kind

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
            self.trusted,
            self.tag,
            tuple(self.declared),
            tuple(self.relations.items()),
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
            "trusted": self.trusted,
            "tag": self.tag,
            "declared": self.declared,
            "relations": self.relations,
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
            trusted=bool(d.get("trusted", False)),
            tag=d.get("tag"),
            declared=[str(k) for k in d.get("declared", [])],
            relations={str(k): str(v) for k, v in d.get("relations", {}).items()},
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
    actor: str | None = None  # who gave the command
    evidence: str | None = None  # the Message-ID that carried it


@dataclass(frozen=True)
class Sent:
    """What a message may cause, decided by the adapter from its sender (email_trust)."""

    command: str | None = None  # the person an /assign line hands the thread to
    actor: str | None = None  # who sent that command
    trusted: bool = False  # the sender is an authenticated internal sender: its
    # declarations (MailFacts.declared) count
    # The From address is the sender's (or authentication is not asked): only then is it
    # the thread's requester, which routing rules test and replies may go to.
    authenticated: bool = True


def _uid_key(folder: str, uidvalidity: int, uid: int) -> str:
    # A tab cannot be in a folder name (config folders are single lines without one).
    return f"u:{folder}\t{uidvalidity}\t{uid}"


@dataclass
class MailState:
    """Everything the email adapter remembers: the cursor (folders and the event counter)
    and, through `store`, every thread and message it has seen (see the module docstring).

    `threads` holds the threads loaded or changed in this run; `thread(root)` loads one
    from the store. `changes()` hands over what changed since it was last called, for the
    next page."""

    folders: dict[str, FolderState] = field(default_factory=dict)
    seq: int = 0
    words: Keywords = field(default_factory=Keywords)  # configuration, never stored
    store: StateStore = field(default_factory=MemoryStore)
    threads: dict[str, Thread] = field(default_factory=dict)
    # Store entries read or written in this run (None: known absent or deleted), and those
    # written but not yet handed over with a page.
    _cache: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)
    _pending: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)
    _dirty: set[str] = field(default_factory=set, init=False, repr=False)
    # Per-cycle bookkeeping.
    _events: dict[str, list[Event]] = field(default_factory=dict, init=False, repr=False)
    _before: dict[str, tuple[Any, ...] | None] = field(default_factory=dict, init=False, repr=False)
    # Mail from authenticated internal senders read in this run, per thread: (sender, time).
    # Activity for the ledger (a reply accepts a handoff), never stored.
    _replies: dict[str, list[tuple[str, datetime]]] = field(
        default_factory=dict, init=False, repr=False
    )

    # -- the cursor and the store ---------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {
            "v": CURSOR_VERSION,
            "seq": self.seq,
            "folders": {name: f.dump() for name, f in self.folders.items()},
        }

    @classmethod
    def load(cls, cursor: dict[str, Any] | None, words: Keywords, store: StateStore) -> MailState:
        """The state a cursor holds. An unreadable cursor raises ValueError; the caller
        starts from scratch, which reads the folders again without duplicating anything."""
        if not cursor:
            return cls(words=words, store=store)
        try:
            if cursor.get("v") != CURSOR_VERSION:
                raise ValueError(f"cursor version {cursor.get('v')!r}")
            return cls(
                folders={str(k): FolderState.load(v) for k, v in cursor["folders"].items()},
                seq=int(cursor["seq"]),
                words=words,
                store=store,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"unreadable email cursor ({type(exc).__name__}: {exc})") from None

    def take_replies(self, root: str) -> list[tuple[str, datetime]]:
        """The authenticated internal senders' mail read in a thread since the last call."""
        return self._replies.pop(root, [])

    def changes(self) -> dict[str, str | None]:
        """Store entries changed since the last call: what the next page must carry."""
        for root in self._dirty:
            thread = self.threads.get(root)
            self._put(f"t:{root}", json.dumps(thread.dump()) if thread else None)
        self._dirty = set()
        out, self._pending = self._pending, {}
        return out

    def _get(self, key: str) -> str | None:
        if key not in self._cache:
            self._cache[key] = self.store.get([key]).get(key)
        return self._cache[key]

    def _prefetch(self, keys: Iterable[str]) -> None:
        missing = [k for k in dict.fromkeys(keys) if k not in self._cache]
        if missing:
            got = self.store.get(missing)
            for key in missing:
                self._cache[key] = got.get(key)

    def _put(self, key: str, value: str | None) -> None:
        self._cache[key] = value
        self._pending[key] = value

    def _scan(self, prefix: str) -> dict[str, str]:
        found = dict(self.store.scan(prefix))
        for key, value in self._cache.items():
            if key.startswith(prefix):
                if value is None:
                    found.pop(key, None)
                else:
                    found[key] = value
        return found

    def thread(self, root: str) -> Thread | None:
        thread = self.threads.get(root)
        if thread is None and root not in self._dirty:
            text = self._get(f"t:{root}")
            if text is not None:
                thread = Thread.load(root, json.loads(text))
                self.threads[root] = thread
        return thread

    def _message(self, message_id: str) -> dict[str, Any] | None:
        text = self._get(f"m:{message_id}")
        return json.loads(text) if text else None

    def _uidvalidity(self, folder: str) -> int | None:
        known = self.folders.get(folder)
        return known.uidvalidity if known else None

    # -- reading the cycle's changes ----------------------------------------------------

    def begin_cycle(self) -> None:
        self._events = {}
        self._before = {}

    def touched(self) -> bool:
        """Whether this cycle changed any thread so far."""
        return bool(self._before)

    def touch(self, root: str) -> None:
        if root not in self._before:
            thread = self.thread(root)
            self._before[root] = thread.fingerprint() if thread else None
        self._dirty.add(root)

    def prepare(self, batch: Iterable[MailFacts]) -> None:
        """Read the store entries a batch of messages will look up, in one query."""
        keys: list[str] = []
        for facts in batch:
            keys += [f"m:{i}" for i in (facts.message_id, *facts.references)]
            uidvalidity = self._uidvalidity(facts.folder)
            if uidvalidity is not None:
                keys.append(_uid_key(facts.folder, uidvalidity, facts.uid))
        self._prefetch(keys)

    def root_of(self, facts: MailFacts) -> str:
        """The thread a message belongs to (see the module docstring). A root some earlier
        message already resolved wins, so a client that broke the chain cannot split a
        thread that is already known."""
        for candidate in (facts.message_id, *facts.references):
            known = self._message(candidate)
            if known is not None:
                return str(known["root"])
        return facts.references[0] if facts.references else facts.message_id

    def knows(self, root: str) -> bool:
        return self.thread(root) is not None

    def tracked_uids(self, folder: str) -> list[int]:
        uidvalidity = self._uidvalidity(folder)
        if uidvalidity is None:
            return []
        prefix = _uid_key(folder, uidvalidity, 0)[:-1]
        return sorted(int(key[len(prefix) :]) for key in self._scan(prefix))

    def add_message(
        self, facts: MailFacts, uidvalidity: int, sent: Sent | None = None
    ) -> str | None:
        """Put one fetched message into its thread. `sent` is what its sender may cause.
        Returns the thread's root, or None for syncd's own mail, which never starts or
        changes a thread. Raises Refused for a message that reuses another's Message-ID."""
        sent = sent or Sent()
        if facts.own:
            return None
        if self._tracks(facts.folder, uidvalidity, facts.uid):
            # Read again (a thread rebuilt mid-scan): only its keywords can have changed.
            return self.set_keywords(
                facts.folder, facts.uid, facts.keywords, facts.modseq, facts.received_at
            )
        known = self._message(facts.message_id)
        if known is not None and not _same_message(known, facts):
            raise Refused(REUSED_ID)
        root = self.root_of(facts)
        self.touch(root)
        thread = self.thread(root)
        received = iso(facts.received_at)
        if thread is None:
            thread = Thread(
                root=root,
                title=facts.title,
                requester=facts.sender if sent.authenticated else None,
                first_at=received,
                root_seen=facts.message_id == root,
                updated_at=received,
                trusted=sent.trusted,
                tag=facts.tag,
            )
            self.threads[root] = thread
        self._place(thread, facts, uidvalidity)
        self._describe(thread, facts, received, sent)
        if sent.trusted and facts.sender:
            self._replies.setdefault(root, []).append((facts.sender, facts.received_at))
        if sent.command is not None:
            order = (facts.modseq, facts.uid)
            event = Event(
                order,
                "owner",
                sent.command,
                facts.received_at,
                "command",
                actor=sent.actor,
                evidence=facts.message_id,
            )
            self._event(root, event)
        return root

    def _current(self, m: Tracked) -> bool:
        folder = self.folders.get(m.folder)
        return folder is None or folder.uidvalidity == m.uidvalidity

    def _tracks(self, folder: str, uidvalidity: int, uid: int) -> bool:
        return self._get(_uid_key(folder, uidvalidity, uid)) is not None

    def untracked(self, folder: str, uidvalidity: int, uids: Iterable[int]) -> list[int]:
        """Those of `uids` that are not known messages, looked up in one query (a thread
        search finds a few UIDs; listing every tracked one would read them all)."""
        wanted = sorted(set(uids))
        self._prefetch(_uid_key(folder, uidvalidity, u) for u in wanted)
        return [u for u in wanted if not self._tracks(folder, uidvalidity, u)]

    def incomplete(self) -> list[str]:
        """Threads this cycle created from a reply alone: their root and earlier messages
        may be elsewhere in the mailbox, and an observation of a part of a thread could
        wrongly clear its owner."""
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
        for old in [m for m in thread.messages if _replaced_by(m, entry)]:
            self._put(_uid_key(old.folder, old.uidvalidity, old.uid), None)
        thread.messages = [m for m in thread.messages if not _replaced_by(m, entry)]
        thread.messages.append(entry)
        self._put(
            f"m:{facts.message_id}",
            json.dumps({"root": thread.root, "from": facts.sender or "", "date": facts.date or ""}),
        )
        if self._message(thread.root) is None:
            # The root's own entry, until the root itself arrives: its sender is not known.
            self._put(f"m:{thread.root}", json.dumps({"root": thread.root, "from": None}))
        self._put(_uid_key(facts.folder, uidvalidity, facts.uid), thread.root)
        for keyword in entry.keywords:
            if keyword not in thread.tags:
                self._keyword_event(
                    thread.root, keyword, (facts.modseq, facts.uid), facts.received_at
                )

    def _describe(self, thread: Thread, facts: MailFacts, received: str, sent: Sent) -> None:
        # The root's subject and sender describe the thread; until the root is seen, the
        # earliest message stands in for it.
        is_root = facts.message_id == thread.root
        if (is_root and not thread.root_seen) or (
            not thread.root_seen and received < thread.first_at
        ):
            thread.title, thread.requester = facts.title, facts.sender
            thread.trusted, thread.tag = sent.trusted, facts.tag
            thread.root_seen = is_root
        thread.first_at = min(thread.first_at, received)
        thread.updated_at = max(thread.updated_at, received)
        if not is_synthetic(facts.message_id) and received >= thread.last_at:
            thread.last_id, thread.last_at = facts.message_id, received
        for key in facts.mentions:
            if key not in thread.mentions and len(thread.mentions) < MAX_MENTIONS:
                thread.mentions.append(key)
        for key, kind in facts.relation_kinds:
            if key in thread.mentions:
                thread.relations.setdefault(key, kind)
        if sent.trusted:
            # A reply inherits its subject ("Re: [OPS-7] ..." from the customer's "[OPS-7]
            # ..."): only a thread's first mail declares by its subject; replies by their text.
            starts = not facts.references
            for key in (*(facts.title_declared if starts else ()), *facts.declared):
                if key not in thread.declared and len(thread.declared) < MAX_MENTIONS:
                    thread.declared.append(key)

    def set_keywords(
        self,
        folder: str,
        uid: int,
        keywords: Iterable[str],
        modseq: int,
        now: datetime,
        uidvalidity: int | None = None,
    ) -> str | None:
        """A known message's keywords as the server shows them now. Returns its thread's
        root when the syncd keywords changed, None otherwise (or when it is not tracked).
        `uidvalidity` defaults to the folder's in the cursor; a write-back, which may run
        before any poll, names it."""
        uidvalidity = uidvalidity if uidvalidity is not None else self._uidvalidity(folder)
        if uidvalidity is None:
            return None
        root = self._get(_uid_key(folder, uidvalidity, uid))
        thread = self.thread(root) if root is not None else None
        if root is None or thread is None:
            return None
        relevant = self.words.relevant(keywords)
        for m in thread.messages:
            same = (m.folder, m.uidvalidity, m.uid) == (folder, uidvalidity, uid)
            if same and m.keywords != relevant:
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
        touched: set[str] = set()
        uidvalidity = self._uidvalidity(folder)
        if uidvalidity is None:
            return touched
        for uid in uids:
            key = _uid_key(folder, uidvalidity, uid)
            root = self._get(key)
            if root is None:
                continue
            self._put(key, None)
            thread = self.thread(root)
            if thread is None:
                continue
            self.touch(root)
            thread.messages = [
                m
                for m in thread.messages
                if not (self._current(m) and (m.folder, m.uid) == (folder, uid))
            ]
            touched.add(root)
        return touched

    def sweep_folder(self, folder: str, uidvalidity: int) -> set[str]:
        """After a full read of a folder: entries from its previous UIDVALIDITY that were not
        read again are messages that no longer exist."""
        touched: set[str] = set()
        for key, root in self._scan(f"u:{folder}\t").items():
            if int(key.split("\t")[1]) == uidvalidity:
                continue
            self._put(key, None)
            thread = self.thread(root)
            if thread is None:
                continue
            kept = [
                m for m in thread.messages if m.folder != folder or m.uidvalidity == uidvalidity
            ]
            if len(kept) != len(thread.messages):
                self.touch(root)
                thread.messages = kept
                touched.add(root)
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
            if self._before[root] != thread.fingerprint():
                changed.append(root)
        self._events, self._before = {}, {}
        return changed

    def _decide(self, thread: Thread, events: list[Event], now: datetime) -> None:
        latest: dict[str, Signal] = {}
        for event in events:
            self.seq += 1
            latest[event.kind] = Signal(
                event.value,
                self.seq,
                iso(min(event.at, now)),
                event.via,
                event.actor,
                event.evidence,
            )
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


def _same_message(known: dict[str, Any], facts: MailFacts) -> bool:
    """Whether a message carrying a known Message-ID is the message first seen with it (the
    same mail again: in another folder, or its folder rebuilt), by its sender and Date."""
    if known.get("from") is None:
        return True  # the id was only named by replies so far: this is the root arriving
    return (known["from"], known.get("date")) == (facts.sender or "", facts.date or "")


def _replaced_by(old: Tracked, new: Tracked) -> bool:
    """The same message: the same UID, or (after its folder got a new UIDVALIDITY) the
    same Message-ID under the previous UIDVALIDITY."""
    if old.folder != new.folder:
        return False
    if old.uidvalidity == new.uidvalidity:
        return old.uid == new.uid
    return old.message_id == new.message_id


def mid_url(message_id: str) -> str:
    """An RFC 2392 `mid:` URL: mail clients that support it open the message."""
    return "mid:" + quote(message_id, safe="@!$&'()*+,;=-._~")
