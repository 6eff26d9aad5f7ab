"""A shared mailbox as a source: threads read over IMAP, ownership announced over SMTP.

One thread is one item (see adapters/email_thread.py for threading, where threads are
kept, and how owner and state are decided; adapters/email_message.py for reading hostile
mail; adapters/email_trust.py for who a sender is and what they may cause;
adapters/email_reply.py for the reply syncd sends).

Who may cause what (email_trust): an authenticated internal sender's mail may declare
identity (Observation.declared, author_trusted) and give /assign; anyone else's mail makes a
request of its own, or joins one by threading or by syncd's own [REQ-42] subject tag on the
mail that starts a thread, and its keys are relations only. A refused /assign, and a mail
that reuses a known Message-ID with another sender or date, are quarantined with the reason.

Ownership in the mailbox, for people who work from their mail client:

* A keyword `owner-<person>` on any message of the thread (a tag in Thunderbird); the latest
  one set wins. `<person>` is a person id from [[people]] (`owner-alice`) or an address.
* A line `/assign <person>` in a reply from an authenticated internal sender, naming a
  person (see email_message.find_command for the syntax, email_trust.assign_target for
  the targets). Once the ledger has it, syncd tags the thread `owner-<person>` too, so the
  mailbox shows it; the observation carries who sent it and in which mail (an "assign"
  Activity), which the handoff event records.
* A keyword `state-<state>` for the state (see EmailAdapter.default_states).

Handles in the "email" namespace are addresses: `owner-alice` stands for alice's first
email handle, so the ledger's owner is the person alice. A tag naming nobody in [[people]]
stays an unmapped identity ("email:zed").

Reading is incremental per folder, from (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ), on one
connection kept open between cycles:

* With CONDSTORE, every cycle starts with one STATUS per folder. When the three values and
  the message count are what the cursor holds, that folder is done: a cycle with no change
  is one round trip per folder, and writes nothing to the ledger.
* Otherwise the folder is EXAMINEd (read-only: reading never marks mail as seen), messages
  whose flags changed are found with SEARCH MODSEQ, new ones are fetched in batches (a few
  header fields and the first `max_body_bytes` of the body, never more), and the folder is
  left with UNSELECT, because STATUS on the selected folder would answer from a stale view.
* A new UIDVALIDITY means the folder was rebuilt: it is read again in full, and since a
  thread's ref is its root Message-ID, the same threads come back as the same items.
* Without CONDSTORE, flag changes show only in the flags themselves: each cycle is EXAMINE,
  one FETCH of the known messages' flags, and UNSELECT (three round trips per folder).
* A reply to a thread syncd does not hold (its root in a folder not yet read, or a
  ledger restored without its adapter state) is read with the rest of its thread, found
  by a header search, so no observation ever describes a part of a thread.

Writing the owner (write_owner), and why in this order:

1. Open the SMTP session and have the envelope (sender, recipient) accepted.
2. Set the new owner keyword on the thread's messages and remove every other owner keyword.
3. Send the reply's content (SMTP DATA). If the server refuses it, the keywords are put back
   and the write fails, to be retried as a whole.
4. When that reply went to an outside requester (who gets only the request and its owner's
   name), send the full record to the shared mailbox on the same session; best effort,
   since the handoff is done and announced by then.

The keywords are the record of the handoff: once they are set, the next poll sees the new
owner, which is also what the ledger holds, and the outbox row is settled without another
write. So a restart never sends the reply twice: not if syncd stopped between the reply and
the ledger commit, and not if it stopped between the keywords and the reply. The price is
that a stop in the short window between steps 2 and 3 (one IMAP round trip and the DATA
exchange) loses that one announcement, while the keywords and the ledger are still right.
No marker keyword is used: a marker set before sending cannot tell, after a crash, whether
the reply went out, so it could only trade this rare lost reply for a duplicate one.

syncd's own replies carry X-Syncd-Request and are skipped when they arrive in the mailbox;
its own keyword changes read back as the owner the ledger already has, so neither comes
back as a new request or a new handoff. Mail a machine sent in answer to other mail (a
bounce of one of those replies, a read receipt, an out-of-office reply; see
email_message.automatic) is quarantined with the reason "automatic message
(bounce/auto-reply); not a request" rather than dropped quietly: it is not a request, and a
bounce means a reply did not arrive, which `syncd status` then shows.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from email.utils import make_msgid
from typing import ClassVar, Literal

import structlog
from pydantic import Field, field_validator, model_validator

from syncd.adapters.base import Adapter, MemoryStore, StateStore, is_loopback
from syncd.adapters.email_message import (
    Fetched,
    MailFacts,
    Refused,
    read_message,
    valid_address,
)
from syncd.adapters.email_reply import ReplyTarget, UnsafeReply, compose_reply
from syncd.adapters.email_thread import (
    FolderState,
    Keywords,
    MailState,
    Sent,
    Thread,
    mid_url,
    parse_time,
)
from syncd.adapters.email_transport import (
    FolderInfo,
    ImapSession,
    ImapSettings,
    SmtpEnvelope,
    SmtpSettings,
    rebuild_criteria,
)
from syncd.adapters.email_trust import Sender, assign_target, is_internal, judge_sender
from syncd.config import SecretRef, SourceConfig
from syncd.errors import FatalError, RetriableError, SourceError
from syncd.http import HttpOptions
from syncd.models import Activity, Cursor, Handoff, Observation, Page, Quarantined, State
from syncd.people import Directory
from syncd.redact import redact

log = structlog.get_logger("syncd.adapters.email")

KIND = "email"
_BATCH = 100  # messages fetched per FETCH, and applied per page
_SEARCH_CHUNK = 20  # thread roots per rebuild SEARCH
_REBUILD_ROUNDS = 5  # how many In-Reply-To-only links a rebuild follows
# What may follow the owner prefix in a keyword syncd writes: a person id or an address.
_TAG = re.compile(r"^[a-z0-9][a-z0-9_.@+-]{0,126}$")
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,30}$")
_DOMAIN = re.compile(r"^[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})+$")
_AUTHSERV_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,252}$")


# -- configuration ----------------------------------------------------------------------


class EmailConfig(SourceConfig):
    type: Literal["email"] = "email"
    address: str = Field(description="the shared mailbox's own address, e.g. support@example.com")
    imap: ImapSettings
    smtp: SmtpSettings
    # Where replies go: the shared mailbox (everyone watching it sees the handoff), or the
    # thread's requester. Never to everyone on the thread.
    reply_to: Literal["mailbox", "requester"] = "mailbox"
    owner_prefix: str = "owner-"
    state_prefix: str = "state-"
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    # Senders at these domains are internal, as are the people's email handles; everyone
    # else is external (see adapters/email_trust.py for what each may cause).
    internal_domains: list[str] = Field(default_factory=list)
    # Believe a From address only when the receiving MTA authenticated it: the topmost
    # Authentication-Results header whose authserv-id is `authserv_id` says dmarc=pass, or
    # dkim=pass aligned with the From domain.
    require_authentication: bool = False
    authserv_id: str | None = None

    @field_validator("internal_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        out = [d.strip().lower().removeprefix("@") for d in v]
        bad = [d for d in out if not _DOMAIN.match(d)]
        if bad:
            raise ValueError(f"not a domain name: {bad[0]!r} (write example.com, no @ or *)")
        return out

    @field_validator("authserv_id")
    @classmethod
    def _authserv_id(cls, v: str | None) -> str | None:
        if v is not None and not _AUTHSERV_ID.match(v.lower()):
            raise ValueError("must be your MTA's authserv-id, e.g. mx.example.com")
        return v.lower() if v is not None else None

    @model_validator(mode="after")
    def _authentication(self) -> EmailConfig:
        if self.require_authentication and self.authserv_id is None:
            raise ValueError(
                "require_authentication needs authserv_id: the name your MTA writes first in "
                "its Authentication-Results header (e.g. mx.example.com)"
            )
        return self

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        address = valid_address(v)
        if address is None:
            raise ValueError("must be a plain address such as support@example.com")
        return address

    @field_validator("owner_prefix", "state_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _PREFIX.match(v):
            raise ValueError("use lower-case letters, digits, '-', '_' or '.' (an IMAP keyword)")
        return v

    @model_validator(mode="after")
    def _distinct_prefixes(self) -> EmailConfig:
        a, b = self.owner_prefix, self.state_prefix
        if a.startswith(b) or b.startswith(a):
            raise ValueError("owner_prefix and state_prefix must not be prefixes of each other")
        return self

    def secret_refs(self) -> dict[str, SecretRef]:
        refs = {"imap.password": self.imap.password}
        if self.smtp.password is not None:
            refs["smtp.password"] = self.smtp.password
        return refs

    @property
    def sender(self) -> str:
        return self.smtp.from_address or self.address


# -- the adapter ------------------------------------------------------------------------


class EmailAdapter(Adapter[EmailConfig]):
    kind = KIND
    Config = EmailConfig
    # The part after "state-" -> canonical state. Config `states` can add or override.
    default_states: ClassVar[dict[str, State]] = {
        "open": "open",
        "new": "open",
        "in-progress": "in_progress",
        "in_progress": "in_progress",
        "wip": "in_progress",
        "blocked": "blocked",
        "waiting": "blocked",
        "done": "done",
        "closed": "done",
        "resolved": "done",
        "cancelled": "cancelled",
        "canceled": "cancelled",
        "wontfix": "cancelled",
    }

    def __init__(self, config: EmailConfig, http: HttpOptions | None = None) -> None:
        super().__init__(config, http)
        self.words = Keywords(config.owner_prefix, config.state_prefix)
        self.directory = Directory()
        self.imap = ImapSession(config.name, config.imap, self._imap_password, self.http.timeout)
        self.smtp_sent = 0
        self._state: MailState | None = None
        # Without a ledger (bind_store), the adapter keeps its threads in memory and stores
        # each page's entries itself once the page was taken.
        self.store: StateStore = MemoryStore()
        self._own_store: MemoryStore | None = self.store
        if not config.require_authentication:
            log.warning(
                "From addresses are believed as written: anyone can pose as an internal "
                "sender; set require_authentication and authserv_id (see README)",
                source=config.name,
            )
        for what, settings in (("IMAP", config.imap), ("SMTP", config.smtp)):
            if settings.tls == "plain" and not is_loopback(settings.host):
                log.warning(
                    "NO TLS to a remote mail server: the password and all mail cross the "
                    'network in clear text; set tls = "implicit" or "starttls"',
                    source=config.name,
                    protocol=what,
                    host=settings.host,
                )

    def _imap_password(self) -> str:
        return self.config.secret("imap.password")

    def _smtp_password(self) -> str | None:
        return self.config.secret("smtp.password") if self.config.smtp.password else None

    def bind_people(self, directory: Directory) -> None:
        self.directory = directory

    def bind_store(self, store: StateStore) -> None:
        self.store, self._own_store, self._state = store, None, None

    def request_counts(self) -> Counter[str]:
        counts = Counter({f"IMAP {k}": v for k, v in self.imap.counts.items()})
        if self.smtp_sent:
            counts["SMTP send"] = self.smtp_sent
        return counts

    def close(self) -> None:
        self.imap.close()

    def now(self) -> datetime:
        return datetime.now(UTC)

    # -- people and keywords --------------------------------------------------------------

    def handle_of(self, tag: str) -> str:
        """The email-namespace handle a tag or /assign argument names: an address as it
        is, a person id as that person's first email handle, anything else as itself
        (an unmapped identity)."""
        if "@" in tag:
            return tag
        person = self.directory.people.get(tag)
        if person is not None and person.handles_for(KIND):
            return person.handles_for(KIND)[0].lower()
        return tag

    def tag_of(self, handle: str) -> str:
        """The inverse: the keyword suffix for a handle (the person id when it is known)."""
        owner = self.directory.owner_for(KIND, handle)
        tag = owner if self.directory.is_mapped(KIND, handle) else handle.lower()
        if not _TAG.match(tag):
            raise FatalError(self.name, f"{handle!r} cannot be written as an IMAP keyword")
        return tag

    def sender_of(self, facts: MailFacts) -> Sender:
        return judge_sender(
            facts.sender,
            facts.authentication_results,
            person_addresses=self._person_addresses(),
            internal_domains=self.config.internal_domains,
            authserv_id=self.config.authserv_id if self.config.require_authentication else None,
        )

    def _person_addresses(self) -> dict[str, str]:
        """Every person's email handles, lower-cased -> person id."""
        return {
            h.lower(): pid
            for pid, person in self.directory.people.items()
            for h in person.handles_for(KIND)
        }

    def internal(self, address: str | None) -> bool:
        return is_internal(address, self._person_addresses(), self.config.internal_domains)

    def _sent(self, facts: MailFacts) -> tuple[Sent, str | None]:
        """What a message may cause, and why its /assign was refused (if it was)."""
        sender = self.sender_of(facts)
        if facts.command is None:
            return Sent(trusted=sender.trusted, authenticated=sender.authenticated), None
        target = assign_target(
            facts.command,
            sender,
            people=self.directory.people.keys(),
            person_of_address=self._person_addresses(),
            mailbox_addresses={self.config.address, self.config.sender},
        )
        if target.person is None:
            return Sent(trusted=sender.trusted, authenticated=sender.authenticated), target.refused
        person = self.directory.people[target.person]
        if not person.handles_for(KIND):
            # The mailbox names owners by address; without one the owner would be read
            # back as an unmapped identity, not as the person.
            reason = f"/assign {facts.command} refused: {target.person} has no email handle in [[people]]"
            return Sent(trusted=sender.trusted, authenticated=sender.authenticated), reason
        handle = self.handle_of(target.person)
        return Sent(
            command=handle,
            actor=facts.sender,
            trusted=sender.trusted,
            authenticated=sender.authenticated,
        ), None

    # -- reading ------------------------------------------------------------------------

    def _load(self, cursor: Cursor | None) -> MailState:
        try:
            return MailState.load(cursor, self.words, self.store)
        except ValueError as exc:
            log.warning("reading every folder again", source=self.name, reason=str(exc))
            return MailState(words=self.words, store=self.store)

    def pull(self, cursor: Cursor | None) -> Iterator[Page]:
        state = self._load(cursor)
        self._state = state
        for folder in self.config.imap.folders:
            for page in self._pull_folder(state, folder):
                yield page
                if self._own_store is not None:
                    self._own_store.apply(page.state)
            self.imap.release()

    def _pull_folder(self, state: MailState, folder: str) -> Iterator[Page]:
        known = state.folders.get(folder)
        self.imap.connect()
        # With CONDSTORE, STATUS alone tells whether anything changed. Without it, flag
        # changes can only be seen by fetching the flags, so STATUS would only add a trip.
        if self.imap.condstore and _unchanged(known, self.imap.status(folder)):
            return
        info = self.imap.examine(folder)
        state.begin_cycle()
        if known is None or known.uidvalidity != info.uidvalidity:
            new = self.imap.search(["ALL"])  # first read, or the folder was rebuilt
            state.folders[folder] = FolderState(info.uidvalidity, 1, None, 0)
            done = 0
        else:
            new = self._read_changes(state, folder, known, info)
            done = known.count
        batches = [new[i : i + _BATCH] for i in range(0, len(new), _BATCH)] or [[]]
        for n, batch in enumerate(batches):
            quarantined = self._read_batch(state, folder, info.uidvalidity, batch)
            done += len(batch)
            if n == len(batches) - 1:
                state.sweep_folder(folder, info.uidvalidity)
                state.folders[folder] = FolderState(
                    info.uidvalidity, info.uidnext, info.modseq, info.count
                )
            else:
                # Part-way: the MODSEQ is not reached until every batch is read.
                modseq = state.folders[folder].modseq
                state.folders[folder] = FolderState(info.uidvalidity, batch[-1] + 1, modseq, done)
            if not (quarantined or state.touched() or state.folders[folder] != known):
                continue  # nothing to record: a cycle without changes writes nothing
            page = self._page(state, quarantined)
            yield page
            # Applied to the ledger by now: show the owners that /assign set as keywords too.
            self._mirror_commands(state, [o.ref for o in page.observations])
            state.begin_cycle()

    def _read_changes(
        self, state: MailState, folder: str, known: FolderState, info: FolderInfo
    ) -> list[int]:
        """Apply flag changes on known messages and expunges; return the new UIDs."""
        tracked = set(state.tracked_uids(folder))
        if known.modseq is not None and info.modseq is not None:
            changed = self.imap.changed_since(known.modseq)
        else:
            arrived = self.imap.uids_from(known.uidnext) if info.uidnext > known.uidnext else []
            changed = sorted(tracked | set(arrived))
        new = [u for u in changed if u >= known.uidnext]
        old = [u for u in changed if u < known.uidnext and u in tracked]
        if old:
            now = self.now()
            for uid, (flags, modseq) in self.imap.flags(old).items():
                state.set_keywords(folder, uid, [f.lower() for f in flags], modseq, now)
        if info.count < known.count + len(new):
            # Fewer messages than read plus new ones: something was expunged.
            present = set(self.imap.search(["ALL"]))
            state.forget_uids(folder, tracked - present)
        return new

    def _read_batch(
        self, state: MailState, folder: str, uidvalidity: int, uids: list[int]
    ) -> list[Quarantined]:
        if not uids:
            return []
        self.imap.ensure(folder)
        fetched = self.imap.messages(folder, uidvalidity, uids, self.config.max_body_bytes)
        quarantined, _ = self._add(state, fetched)
        incomplete = state.incomplete()
        if incomplete:
            quarantined += self._rebuild(state, incomplete)
            self.imap.ensure(folder)
        return quarantined

    def _add(
        self, state: MailState, fetched: list[Fetched]
    ) -> tuple[list[Quarantined], list[MailFacts]]:
        quarantined: list[Quarantined] = []
        added: list[MailFacts] = []
        read: list[tuple[Fetched, MailFacts]] = []
        for item in fetched:
            facts = self._read(item)
            if isinstance(facts, Quarantined):
                quarantined.append(facts)
            else:
                read.append((item, facts))
        state.prepare(facts for _, facts in read)
        for item, facts in read:
            if facts.notes:
                log.info(
                    "mail read with fallbacks",
                    source=self.name,
                    uid=facts.uid,
                    folder=facts.folder,
                    notes=list(facts.notes),
                )
            sent, refused = self._sent(facts)
            try:
                state.add_message(facts, item.uidvalidity, sent)
            except Refused as exc:
                quarantined.append(self._quarantined(item, str(exc)))
                continue
            if refused is not None and not facts.own:
                # The mail is still part of its thread; only the command is not obeyed.
                quarantined.append(self._quarantined(item, refused))
            added.append(facts)
        return quarantined, added

    def _quarantined(self, item: Fetched, reason: str) -> Quarantined:
        ref = f"{item.folder}/{item.uidvalidity}/{item.uid}"
        excerpt = redact(item.header[:1000].decode("utf-8", "replace"))
        log.warning("mail quarantined", source=self.name, ref=ref, reason=reason)
        return Quarantined(self.name, ref, reason, excerpt)

    def _read(self, item: Fetched) -> MailFacts | Quarantined:
        try:
            return read_message(item, self.rules)
        except Refused as exc:
            reason = str(exc)
        except Exception as exc:  # hostile input must never stop the cycle
            reason = f"unreadable message ({type(exc).__name__})"
        return self._quarantined(item, reason)

    def _rebuild(self, state: MailState, roots: list[str]) -> list[Quarantined]:
        """Read every message of these threads from every folder: for threads syncd
        does not hold (replies whose thread started elsewhere, writes before the first poll).

        A header search finds messages naming a root in References or In-Reply-To; a reply
        that names only its parent (In-Reply-To, no References) is found in the next round,
        by searching for the messages found so far."""
        quarantined: list[Quarantined] = []
        wanted, seen = list(roots), set(roots)
        for _ in range(_REBUILD_ROUNDS):
            found: list[str] = []
            for folder in self.config.imap.folders:
                more, ids = self._rebuild_folder(state, folder, wanted)
                quarantined += more
                found += ids
            wanted = [i for i in dict.fromkeys(found) if i not in seen]
            seen.update(wanted)
            if not wanted:
                break
        return quarantined

    def _rebuild_folder(
        self, state: MailState, folder: str, wanted: list[str]
    ) -> tuple[list[Quarantined], list[str]]:
        info = self.imap.examine(folder)
        uids: set[int] = set()
        for i in range(0, len(wanted), _SEARCH_CHUNK):
            uids.update(self.imap.search(rebuild_criteria(wanted[i : i + _SEARCH_CHUNK])))
        todo = state.untracked(folder, info.uidvalidity, uids)
        quarantined: list[Quarantined] = []
        ids: list[str] = []
        for i in range(0, len(todo), _BATCH):
            batch = todo[i : i + _BATCH]
            fetched = self.imap.messages(
                folder, info.uidvalidity, batch, self.config.max_body_bytes
            )
            more, facts = self._add(state, fetched)
            quarantined += more
            ids += [f.message_id for f in facts]
        return quarantined, ids

    def _page(self, state: MailState, quarantined: list[Quarantined]) -> Page:
        changed = state.settle(self.now())
        observations = [
            self.observe(state.threads[root], state.take_replies(root)) for root in changed
        ]
        return Page(observations, quarantined, cursor=state.dump(), state=state.changes())

    def _mirror_commands(self, state: MailState, roots: list[str]) -> None:
        """Tag threads whose owner an /assign line set with that owner's keyword (and
        clear other owner keywords), so people in the mailbox see who owns them, and a
        stale owner keyword cannot win later. Best effort: the ledger already has it."""
        for root in roots:
            thread = state.threads[root]
            if thread.owner is None or thread.owner.via != "command" or not thread.owner.value:
                continue
            try:
                keyword = self.words.owner_keyword(self.tag_of(self.handle_of(thread.owner.value)))
                stale = {k for k in thread.present() if self.words.owner_of(k) is not None}
                if stale == {keyword} and all(keyword in m.keywords for m in thread.messages):
                    continue
                self._store(thread, [keyword], stale - {keyword})
            except SourceError as exc:
                log.warning(
                    "could not tag the thread an /assign changed",
                    source=self.name,
                    ref=root,
                    error=str(exc),
                )

    def observe(self, thread: Thread, replies: Sequence[tuple[str, datetime]] = ()) -> Observation:
        owner = thread.owner.value if thread.owner else None
        state = thread.state.value if thread.state else None
        command = thread.owner if thread.owner and thread.owner.via == "command" else None
        # Threading makes a thread one item; beyond it, only syncd's own [REQ-42] tag on the
        # thread's first mail, and what authenticated internal senders declared, link it.
        declared = tuple(dict.fromkeys([*([thread.tag] if thread.tag else []), *thread.declared]))
        activity: tuple[Activity, ...] = ()
        if command is not None and command.actor is not None:
            # The command itself is obeyed here (owners); this records who gave it, in
            # which mail. No text: nothing downstream should read it as a command again.
            activity = (
                Activity(
                    actor=command.actor,
                    at=parse_time(command.at),
                    kind="assign",
                    id=command.evidence,
                    trusted=True,
                ),
            )
        # Mail from an authenticated internal sender in the thread: what accepts a handoff
        # made to them ("replies in the mail thread"). A From line alone proves nothing.
        activity += tuple(
            Activity(actor=sender, at=at, kind="reply", trusted=True) for sender, at in replies
        )
        return Observation(
            source=self.name,
            ref=thread.root,
            url=mid_url(thread.root),
            title=thread.title,
            state=self.map_state(state) if state else "open",
            owners=(self.handle_of(owner),) if owner else (),
            updated_at=parse_time(thread.updated_at),
            owner_changed_at=parse_time(thread.owner.at) if thread.owner else None,
            requester=thread.requester,
            keys=(f"{KIND}:{thread.root}",),
            mentions=tuple(k for k in thread.mentions if k not in declared),
            relation_kinds=tuple((k, v) for k, v in thread.relations.items() if k not in declared),
            declared=declared,
            author_trusted=thread.trusted,
            owner_actor=command.actor if command else None,
            activity=activity,
        )

    # -- writing ------------------------------------------------------------------------

    def _thread(self, ref: str) -> tuple[MailState, Thread]:
        state = self._state or MailState(words=self.words, store=self.store)
        self._state = state
        if not state.knows(ref):
            # Never seen (a write before the first poll): found on the server by Message-ID.
            state.begin_cycle()
            self._rebuild(state, [ref])
            state.settle(self.now())
        thread = state.thread(ref)
        if thread is None:
            raise FatalError(
                self.name, f"no thread {ref} in the folders {self.config.imap.folders}"
            )
        return state, thread

    def _refresh(self, state: MailState, thread: Thread) -> Thread:
        """Bring the thread's keywords up to date from the server."""
        state.begin_cycle()
        now = self.now()
        for (folder, uidvalidity), uids in _by_folder(thread).items():
            self._select(folder, uidvalidity, writable=False)
            for uid, (flags, modseq) in self.imap.flags(uids).items():
                state.set_keywords(
                    folder, uid, [f.lower() for f in flags], modseq, now, uidvalidity
                )
        state.settle(now)
        return state.threads[thread.root]

    def read_owners(self, ref: str) -> tuple[str, ...]:
        try:
            state, thread = self._thread(ref)
            thread = self._refresh(state, thread)
        finally:
            self.imap.release()
        owner = thread.owner.value if thread.owner else None
        return (self.handle_of(owner),) if owner else ()

    def write_owner(
        self, ref: str, add: str | None, remove: tuple[str, ...], handoff: Handoff
    ) -> tuple[str, ...]:
        try:
            return self._write_owner(ref, add, remove, handoff)
        finally:
            self.imap.release()

    def _write_owner(
        self, ref: str, add: str | None, remove: tuple[str, ...], handoff: Handoff
    ) -> tuple[str, ...]:
        _, thread = self._thread(ref)
        keyword = self.words.owner_keyword(self.tag_of(add)) if add else None
        drop = {k for k in thread.present() if self.words.owner_of(k) is not None}
        drop |= {self.words.owner_keyword(self.tag_of(h)) for h in remove}
        drop.discard(keyword or "")
        recipient = self._recipient(thread)
        external = recipient != self.config.address and not self.internal(recipient)
        content = self._reply(thread, handoff, recipient, external=external)
        # An outsider gets the short reply; the shared mailbox still gets the full record.
        record = self._reply(thread, handoff, self.config.address) if external else None
        envelope = SmtpEnvelope(
            self.name, self.config.smtp, self._smtp_password(), self.http.timeout
        )
        envelope.open(self.config.sender, recipient)
        try:
            before = {(m.folder, m.uid): m.keywords for m in thread.messages}
            self._store(thread, [keyword] if keyword else [], drop)
            try:
                envelope.send(content)
            except SourceError:
                self._restore(thread, keyword, before)
                raise
            self.smtp_sent += 1
            if record is not None:
                self._send_record(envelope, record, thread.root)
        finally:
            envelope.close()
        log.info(
            "owner keyword set and reply sent",
            source=self.name,
            ref=ref,
            request=handoff.request_key,
            keyword=keyword,
        )
        return (add,) if add else ()

    def _recipient(self, thread: Thread) -> str:
        if self.config.reply_to == "requester":
            requester = valid_address(thread.requester)
            if requester is not None:
                return requester
            log.warning(
                "thread has no usable requester address; replying to the mailbox",
                source=self.name,
                ref=thread.root,
            )
        return self.config.address

    def _send_record(self, envelope: SmtpEnvelope, record: bytes, ref: str) -> None:
        """The full record to the shared mailbox, after the requester's reply went out.
        Best effort: the handoff is done and announced, and the ledger holds the record."""
        try:
            envelope.send_another(self.config.sender, self.config.address, record)
            self.smtp_sent += 1
        except SourceError as exc:
            log.warning(
                "the full handoff record did not reach the shared mailbox",
                source=self.name,
                ref=ref,
                error=str(exc),
            )

    def _reply(
        self, thread: Thread, handoff: Handoff, recipient: str, *, external: bool = False
    ) -> bytes:
        target = ReplyTarget(
            sender=self.config.sender,
            recipient=recipient,
            title=thread.title,
            root_id=thread.root,
            last_id=thread.last_id,
            audience="external" if external else "internal",
        )
        domain = self.config.sender.rpartition("@")[2]
        message_id = make_msgid(idstring="syncd", domain=domain).strip("<>")
        try:
            message = compose_reply(
                handoff, target, message_id, self.now(), self.config.owner_prefix
            )
        except UnsafeReply as exc:
            raise FatalError(self.name, f"no reply sent for {handoff.request_key}: {exc}") from None
        return message.as_bytes()

    def _store(self, thread: Thread, add: list[str], remove: set[str]) -> None:
        for (folder, uidvalidity), uids in _by_folder(thread).items():
            self._select(folder, uidvalidity, writable=True)
            self.imap.store(uids, add, sorted(remove))

    def _select(self, folder: str, uidvalidity: int, *, writable: bool) -> None:
        info = self.imap.examine(folder, writable)
        if info.uidvalidity != uidvalidity:
            raise RetriableError(
                self.name,
                f"folder {folder!r} was rebuilt (new UIDVALIDITY) since the last poll; "
                "the next poll reads it again",
            )

    def _restore(
        self, thread: Thread, keyword: str | None, before: dict[tuple[str, int], tuple[str, ...]]
    ) -> None:
        """Undo _store after the reply was refused, so the write is retried as a whole."""
        try:
            for (folder, uidvalidity), uids in _by_folder(thread).items():
                self._select(folder, uidvalidity, writable=True)
                if keyword:
                    self.imap.store(uids, [], [keyword])
                for uid in uids:
                    owners = [
                        k
                        for k in before.get((folder, uid), ())
                        if self.words.owner_of(k) is not None
                    ]
                    if owners:
                        self.imap.store([uid], owners, [])
        except SourceError as exc:
            log.error(
                "could not restore owner keywords after the reply failed",
                source=self.name,
                ref=thread.root,
                error=str(exc),
            )


def _unchanged(known: FolderState | None, status: FolderInfo) -> bool:
    return (
        known is not None
        and known.uidvalidity == status.uidvalidity
        and known.uidnext == status.uidnext
        and known.modseq is not None
        and known.modseq == status.modseq
        and known.count == status.count
    )


def _by_folder(thread: Thread) -> dict[tuple[str, int], list[int]]:
    out: dict[tuple[str, int], list[int]] = {}
    for m in thread.messages:
        out.setdefault((m.folder, m.uidvalidity), []).append(m.uid)
    return {key: sorted(uids) for key, uids in out.items()}


ADAPTER = EmailAdapter

__all__ = ["ADAPTER", "EmailAdapter", "EmailConfig", "ImapSettings", "SmtpSettings"]
