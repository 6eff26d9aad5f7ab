"""The email adapter against a real Dovecot (IMAP) and a real aiosmtpd (SMTP) on loopback."""

from __future__ import annotations

import sqlite3
import ssl
from collections import Counter
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

import pytest

from syncd.adapters.base import MemoryStore
from syncd.adapters.email import EmailAdapter, EmailConfig
from syncd.config import Person, load_config
from syncd.cycle import Engine
from syncd.errors import FatalError, RetriableError
from syncd.ledger import Ledger
from syncd.models import Cursor, Handoff, Observation, Quarantined
from syncd.people import Directory
from tests.mailservers import (
    Dovecot,
    Mailbox,
    SmtpServer,
    TlsDovecot,
    compose,
    dovecot_fixture,  # noqa: F401
    email_source,
    free_port,
    mailbox_fixture,  # noqa: F401
    running_smtp,
    smtp_fixture,  # noqa: F401
    start_dovecot,
    tls_dovecot_fixture,  # noqa: F401
)

PASSWORD_ENV = "SYNCD_TEST_IMAP_PASSWORD"
PEOPLE = [
    Person(id="alice", name="Alice", handles={"email": "alice@example.com"}),
    Person(id="bob", name="Bob", handles={"email": ["bob@example.com", "robert@example.org"]}),
]
HANDOFF = Handoff(
    request_key="REQ-7",
    title="Printer on 3rd floor",
    to_owner="bob",
    to_name="Bob",
    from_owner="alice",
    from_name="Alice",
    origin="api",
    actor="ops-lead",
    note="covering while Alice is out",
)


class Reader:
    """An adapter and the cursor the core would store for it between cycles."""

    def __init__(self, adapter: EmailAdapter) -> None:
        self.adapter = adapter
        self.cursor: Cursor | None = None
        self.pages = 0
        # What the ledger does with each page's state, as the core does it.
        self.store = MemoryStore()
        adapter.bind_store(self.store)

    def cycle(self) -> tuple[list[Observation], list[Quarantined]]:
        observations: list[Observation] = []
        quarantined: list[Quarantined] = []
        for page in self.adapter.pull(self.cursor):
            self.pages += 1
            observations += page.observations
            quarantined += page.quarantined
            self.store.apply(page.state)
            if page.cursor is not None:
                self.cursor = page.cursor
        return observations, quarantined

    def latest(self) -> dict[str, Observation]:
        return {o.ref: o for o in self.cycle()[0]}

    def counted(self) -> tuple[list[Observation], Counter[str]]:
        before = Counter(self.adapter.request_counts())
        observations, _ = self.cycle()
        return observations, Counter(self.adapter.request_counts()) - before


@pytest.fixture
def make(
    mailbox: Mailbox, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Reader]]:
    monkeypatch.setenv(PASSWORD_ENV, mailbox.password)
    made: list[EmailAdapter] = []

    def build(**overrides: Any) -> Reader:
        doc: dict[str, Any] = {
            "name": "support",
            "type": "email",
            "address": "support@example.com",
            "imap": {
                "host": mailbox.server.host,
                "port": mailbox.server.port,
                "tls": "plain",
                "user": mailbox.user,
                "password": {"env": PASSWORD_ENV},
                "folders": ["INBOX"],
            },
            "smtp": {
                "host": smtp.host,
                "port": smtp.port,
                "tls": "plain",
                "from_address": "syncd@example.com",
            },
        }
        imap = overrides.pop("imap", {})
        doc["imap"].update(imap)
        doc.update(overrides)
        config = EmailConfig.model_validate(doc)
        config.resolve_secrets()
        adapter = EmailAdapter(config)
        adapter.bind_people(Directory.build(PEOPLE))
        made.append(adapter)
        return Reader(adapter)

    yield build
    for adapter in made:
        adapter.close()


def thread(mailbox: Mailbox, folder: str = "INBOX") -> list[int]:
    """A request and two replies: one with References, one with only In-Reply-To."""
    return [
        mailbox.deliver(
            compose(
                "Printer on 3rd floor [OPS-7]",
                "Carol <carol@customer.org>",
                "r1@customer.org",
                "It prints only blank pages.",
            ),
            folder,
        ),
        mailbox.deliver(
            compose(
                "Re: AW: Printer on 3rd floor [OPS-7]",
                "Alice <alice@example.com>",
                "r2@example.com",
                "Same as REQ-42, see https://github.com/acme/api/issues/12",
                reply_to="r1@customer.org",
                references=["r1@customer.org"],
            ),
            folder,
        ),
        mailbox.deliver(
            compose(
                "Fwd: Printer on 3rd floor [OPS-7]",
                "Bob <bob@example.com>",
                "r3@example.com",
                "Card: https://trello.com/c/AbCd1234/9-printer",
                reply_to="r2@example.com",
            ),
            folder,
        ),
    ]


# -- threads ----------------------------------------------------------------------------


def test_a_thread_is_one_item_named_by_its_root(
    make: Callable[..., Reader], mailbox: Mailbox
) -> None:
    thread(mailbox)
    mailbox.deliver(compose("VPN down", "dave@customer.org", "v1@customer.org", "since 9am"))
    seen = make().latest()
    assert set(seen) == {"r1@customer.org", "v1@customer.org"}
    printer = seen["r1@customer.org"]
    assert printer.title == "Printer on 3rd floor [OPS-7]"
    assert printer.requester == "carol@customer.org"
    assert printer.url == "mid:r1@customer.org"
    assert printer.keys == ("email:r1@customer.org",)
    # Alice, a person, declares "Same as REQ-42" in her reply; the rest are relations.
    assert printer.declared == ("req:42",)
    assert set(printer.mentions) == {"jira:OPS-7", "github:acme/api#12", "trello:AbCd1234"}
    assert printer.owners == ()
    assert printer.state == "open"


def test_a_reply_that_arrives_before_its_root_joins_the_same_item(
    make: Callable[..., Reader], mailbox: Mailbox
) -> None:
    reader = make()
    mailbox.deliver(
        compose(
            "Re: Badge reader",
            "alice@example.com",
            "b2@example.com",
            "on it",
            reply_to="b1@customer.org",
            references=["b1@customer.org"],
        )
    )
    first = reader.latest()
    assert list(first) == ["b1@customer.org"]
    assert first["b1@customer.org"].title == "Badge reader"
    mailbox.deliver(compose("Badge reader broken", "erin@customer.org", "b1@customer.org", "x"))
    second = reader.latest()
    assert list(second) == ["b1@customer.org"]
    # Once the root is there, it describes the thread.
    assert second["b1@customer.org"].title == "Badge reader broken"
    assert second["b1@customer.org"].requester == "erin@customer.org"


# -- incremental reading ----------------------------------------------------------------


def test_a_cycle_without_changes_is_one_status_per_folder(
    make: Callable[..., Reader], mailbox: Mailbox
) -> None:
    mailbox.create_folder("Requests")
    thread(mailbox)
    mailbox.deliver(compose("VPN down", "dave@customer.org", "v1@customer.org"), "Requests")
    reader = make(imap={"folders": ["INBOX", "Requests"]})
    reader.cycle()
    observations, trips = reader.counted()
    assert observations == []
    assert trips == Counter({"IMAP STATUS": 2})
    # A flag syncd does not use changes the folder's MODSEQ: read once, then quiet again.
    mailbox.mark_seen(1)
    observations, trips = reader.counted()
    assert observations == []
    assert trips["IMAP STATUS"] == 2
    assert trips["IMAP FETCH"] == 1
    observations, trips = reader.counted()
    assert trips == Counter({"IMAP STATUS": 2})


@pytest.fixture(scope="module")
def dovecot_without_condstore() -> Iterator[Dovecot]:
    # What the server tells clients after login; without CONDSTORE there is no MODSEQ.
    server = start_dovecot("imap_capability = IMAP4rev1 LITERAL+ ENABLE UIDPLUS UNSELECT\n")
    try:
        yield server
    finally:
        server.stop()


def test_without_condstore_each_cycle_reads_the_flags_of_known_mail(
    make: Callable[..., Reader], dovecot_without_condstore: Dovecot
) -> None:
    other = dovecot_without_condstore.mailbox()
    _, r2, _ = thread(other)
    reader = make(imap={"port": dovecot_without_condstore.port, "user": other.user})
    assert list(reader.latest()) == ["r1@customer.org"]
    assert not reader.adapter.imap.condstore
    observations, trips = reader.counted()
    assert observations == []
    assert trips == Counter({"IMAP SELECT": 1, "IMAP FETCH": 1, "IMAP UNSELECT": 1})
    other.tag(r2, add=["owner-alice"])
    assert reader.latest()["r1@customer.org"].owners == ("alice@example.com",)
    other.deliver(
        compose(
            "Re: x", "bob@example.com", "n1@example.com", "/assign bob", reply_to="r1@customer.org"
        )
    )
    assert reader.latest()["r1@customer.org"].owners == ("bob@example.com",)


def test_new_mail_is_fetched_alone_and_bounded(
    make: Callable[..., Reader], mailbox: Mailbox
) -> None:
    thread(mailbox)
    reader = make(max_body_bytes=4096)
    reader.cycle()
    mailbox.deliver(
        compose(
            "Re: Printer on 3rd floor [OPS-7]",
            "carol@customer.org",
            "r4@customer.org",
            "still broken\n" + "x" * 200_000,
            reply_to="r3@example.com",
            references=["r1@customer.org", "r2@example.com", "r3@example.com"],
        )
    )
    fetched: list[int] = []
    real = reader.adapter.imap.messages

    def spy(folder: str, uidvalidity: int, uids: list[int], body_bytes: int) -> Any:
        got = real(folder, uidvalidity, uids, body_bytes)
        fetched.extend(len(f.body) for f in got)
        return got

    reader.adapter.imap.messages = spy  # type: ignore[method-assign]
    observations, trips = reader.counted()
    assert [o.ref for o in observations] == ["r1@customer.org"]
    assert fetched == [4096]  # only the new message, and only the first 4 KiB of its body
    assert trips["IMAP FETCH"] == 1


def test_a_rebuilt_folder_is_read_again_without_duplicating_requests(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, mailbox.password)
    mailbox.create_folder("Requests")
    uids = thread(mailbox, "Requests")
    mailbox.tag(uids[1], add=["owner-alice"], folder="Requests")
    # No Message-ID at all: its derived id must survive the rebuild too.
    mailbox.deliver(b"From: dave@customer.org\r\nSubject: no id\r\n\r\nhello\r\n", "Requests")
    engine, ledger = engine_for(tmp_path, mailbox, smtp, folders=["Requests"])
    engine.sync_once()
    before = ledger.rows("SELECT key, title, owner FROM requests ORDER BY id")
    events = ledger.counts()["events"]
    validity = mailbox.uidvalidity("Requests")
    mailbox.recreate_folder("Requests")
    assert mailbox.uidvalidity("Requests") != validity
    (result,) = engine.sync_once()
    assert result.ok
    assert result.applied.observations == 0
    assert ledger.rows("SELECT key, title, owner FROM requests ORDER BY id") == before
    assert [r["title"] for r in before] == ["Printer on 3rd floor [OPS-7]", "no id"]
    assert before[0]["owner"] == "alice"
    assert ledger.counts()["events"] == events
    engine.close()
    ledger.close()


def test_a_reply_to_a_thread_syncd_does_not_hold_brings_the_whole_thread_back(
    make: Callable[..., Reader], mailbox: Mailbox
) -> None:
    r1, _, _ = thread(mailbox)
    mailbox.tag(r1, add=["owner-alice", "state-blocked"])
    reader = make()
    reader.cycle()
    # The folder is read up to here, but what syncd knew of its threads is gone (a ledger
    # restored from a backup without them): the next reply is all it sees of the thread.
    empty = MemoryStore()
    reader.adapter.bind_store(empty)
    reader.store = empty
    reply(mailbox, "carol@customer.org", "r5@customer.org", "any news?")
    printer = reader.latest()["r1@customer.org"]
    # Read with the rest of its thread, not as a thread of one reply with no owner.
    assert printer.owners == ("alice@example.com",)
    assert printer.state == "blocked"
    assert printer.title == "Printer on 3rd floor [OPS-7]"
    assert printer.requester == "carol@customer.org"
    assert printer.declared == ("req:42",)


def test_an_expunged_message_takes_its_keywords_with_it(
    make: Callable[..., Reader], mailbox: Mailbox
) -> None:
    _, r2, r3 = thread(mailbox)
    mailbox.tag(r2, add=["owner-alice"])
    mailbox.tag(r3, add=["owner-bob"])
    reader = make()
    assert reader.latest()["r1@customer.org"].owners == ("bob@example.com",)
    mailbox.expunge(r3)
    assert reader.latest()["r1@customer.org"].owners == ("alice@example.com",)
    assert reader.cursor is not None
    assert reader.cursor["folders"]["INBOX"][3] == 2


def engine_for(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpServer, folders: list[str] | None = None
) -> tuple[Engine, Ledger]:
    path = tmp_path / "syncd.toml"
    people = '\n[[people]]\nid = "alice"\nhandles = { email = "alice@example.com" }\n'
    path.write_text(
        f'ledger = "{tmp_path / "ledger.db"}"\n'
        + email_source(
            "support", mailbox, smtp, password_env=PASSWORD_ENV, folders=folders or ["INBOX"]
        )
        + people
    )
    config = load_config(path)
    ledger = Ledger(config.ledger)
    return Engine(config, ledger), ledger


# -- owners and states in the mailbox ---------------------------------------------------


def test_an_owner_keyword_on_any_message_sets_the_owner_and_the_latest_wins(
    make: Callable[..., Reader], mailbox: Mailbox
) -> None:
    r1, r2, _ = thread(mailbox)
    reader = make()
    reader.cycle()
    mailbox.tag(r2, add=["owner-alice"])
    seen = reader.latest()["r1@customer.org"]
    assert seen.owners == ("alice@example.com",)
    assert seen.owner_changed_at is not None
    mailbox.tag(r1, add=["owner-bob"])
    assert reader.latest()["r1@customer.org"].owners == ("bob@example.com",)
    # Removing the latest falls back to the one still there, then to nobody.
    mailbox.tag(r1, remove=["owner-bob"])
    assert reader.latest()["r1@customer.org"].owners == ("alice@example.com",)
    mailbox.tag(r2, remove=["owner-alice"])
    assert reader.latest()["r1@customer.org"].owners == ()


def test_a_tag_naming_nobody_known_stays_an_unmapped_identity(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, mailbox.password)
    r1, _, _ = thread(mailbox)
    mailbox.tag(r1, add=["owner-zed"])
    engine, ledger = engine_for(tmp_path, mailbox, smtp)
    engine.sync_once()
    assert ledger.rows("SELECT owner FROM requests") == [{"owner": "email:zed"}]
    assert ledger.rows("SELECT kind, handle, person_id FROM identities WHERE handle = 'zed'") == [
        {"kind": "email", "handle": "zed", "person_id": None}
    ]
    engine.close()
    ledger.close()


def test_state_keywords_map_to_states(make: Callable[..., Reader], mailbox: Mailbox) -> None:
    r1, r2, _ = thread(mailbox)
    reader = make(states={"parked": "blocked"})
    assert reader.latest()["r1@customer.org"].state == "open"
    for keyword, state in [
        ("state-in-progress", "in_progress"),
        ("state-done", "done"),
        ("state-parked", "blocked"),
        ("state-whatever", "open"),
    ]:
        mailbox.tag(r2, add=[keyword])
        assert reader.latest()["r1@customer.org"].state == state, keyword
        mailbox.tag(r2, remove=[keyword])
    # Every state keyword gone: the default state again.
    mailbox.tag(r1, add=["state-done"])
    assert reader.latest()["r1@customer.org"].state == "done"
    mailbox.tag(r1, remove=["state-done"])
    assert reader.latest()["r1@customer.org"].state == "open"


def test_custom_keyword_prefixes(make: Callable[..., Reader], mailbox: Mailbox) -> None:
    r1, _, _ = thread(mailbox)
    mailbox.tag(r1, add=["owner-alice", "who.bob", "status.done"])
    seen = make(owner_prefix="who.", state_prefix="status.").latest()["r1@customer.org"]
    assert seen.owners == ("bob@example.com",)
    assert seen.state == "done"


def reply(mailbox: Mailbox, sender: str, mid: str, body: str, *, to: str = "r3@example.com") -> int:
    return mailbox.deliver(
        compose(
            "Re: Printer on 3rd floor [OPS-7]",
            sender,
            mid,
            body,
            reply_to=to,
            references=["r1@customer.org", to],
        )
    )


def test_assign_in_a_reply_from_a_known_person_hands_off(
    make: Callable[..., Reader], mailbox: Mailbox
) -> None:
    thread(mailbox)
    reader = make()
    reader.cycle()
    # bob writes from his second address; the command names alice by her person id.
    reply(
        mailbox,
        "Bob <robert@example.org>",
        "c1@example.org",
        "Alice knows this one.\n/assign alice\n",
    )
    assert reader.latest()["r1@customer.org"].owners == ("alice@example.com",)
    # The owner a command set shows up in the mailbox as a keyword on every message.
    flags = mailbox.flags()
    assert all("owner-alice" in f for f in flags.values()), flags
    reply(mailbox, "alice@example.com", "c2@example.com", "/ASSIGN me")
    assert reader.latest()["r1@customer.org"].owners == ("alice@example.com",)
    reply(mailbox, "alice@example.com", "c3@example.com", "/assign bob@example.com")
    assert reader.latest()["r1@customer.org"].owners == ("bob@example.com",)


@pytest.mark.parametrize(
    ("sender", "body"),
    [
        ("mallory@evil.example", "/assign mallory"),  # not a person
        ("carol@customer.org", "/assign carol"),  # the requester is not one of the people
        ("alice@example.com", "Thanks!\n\n> /assign bob\n"),  # quoted
        ("alice@example.com", "Thanks!\n\nOn Mon, Bob wrote:\n/assign bob\n"),  # quoted below
        ("alice@example.com", "  /assign bob"),  # not at the start of the line
        ("alice@example.com", "please /assign bob"),
        ("alice@example.com", "/assign bob now"),
        ("alice@example.com", "/assign"),
    ],
)
def test_assign_lines_that_do_not_count(
    make: Callable[..., Reader], mailbox: Mailbox, sender: str, body: str
) -> None:
    thread(mailbox)
    reader = make()
    reader.cycle()
    reply(mailbox, sender, "c1@example.net", body)
    seen = reader.latest()
    assert seen["r1@customer.org"].owners == ()


# -- write-back -------------------------------------------------------------------------


def tagged_thread(mailbox: Mailbox, make: Callable[..., Reader], **config: Any) -> Reader:
    _, r2, _ = thread(mailbox)
    mailbox.tag(r2, add=["owner-alice", "$label1"])
    reader = make(**config)
    reader.cycle()
    assert reader.adapter.read_owners("r1@customer.org") == ("alice@example.com",)
    return reader


def test_write_owner_sets_keywords_and_sends_exactly_one_threaded_reply(
    make: Callable[..., Reader], mailbox: Mailbox, smtp: SmtpServer
) -> None:
    reader = tagged_thread(mailbox, make)
    after = reader.adapter.write_owner(
        "r1@customer.org", "bob@example.com", ("alice@example.com",), HANDOFF
    )
    assert after == ("bob@example.com",)
    assert reader.adapter.read_owners("r1@customer.org") == ("bob@example.com",)
    flags = mailbox.flags()
    assert all("owner-bob" in f and "owner-alice" not in f for f in flags.values()), flags
    assert "$label1" in flags[2]  # other keywords are left alone
    (sent,) = smtp.wait_for(1)
    assert sent.mail_from == "syncd@example.com"
    assert sent.rcpt_tos == ["support@example.com"]  # not carol, not everyone on the thread
    message = BytesParser(policy=default).parsebytes(sent.data)
    assert message["Subject"] == "Re: [REQ-7] Printer on 3rd floor [OPS-7]"
    assert message["To"] == "support@example.com"
    assert message["In-Reply-To"] == "<r3@example.com>"
    assert message["References"] == "<r1@customer.org> <r3@example.com>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Syncd-Request"] == "REQ-7"
    assert message["Cc"] is None
    assert message["Bcc"] is None
    body = message.get_content()
    assert 'Bob (bob) now owns REQ-7 "Printer on 3rd floor [OPS-7]".' in body
    assert "Handed over by: Alice (alice)" in body
    assert "Where: in api" in body
    assert "Changed by: ops-lead" in body
    assert "    covering while Alice is out" in body
    assert len(smtp.received) == 1


def test_syncd_reads_its_own_reply_and_keywords_back_as_nothing_new(
    make: Callable[..., Reader], mailbox: Mailbox, smtp: SmtpServer
) -> None:
    note = "ask Bob\n/assign mallory@evil.example"
    reader = tagged_thread(mailbox, make)
    reader.adapter.write_owner(
        "r1@customer.org",
        "bob@example.com",
        ("alice@example.com",),
        Handoff("REQ-7", "Printer", "bob", "Bob", "alice", "Alice", "operator", note=note),
    )
    # The reply goes to the shared mailbox, so it lands in the watched folder.
    (sent,) = smtp.wait_for(1)
    mailbox.deliver(sent.data)
    seen = reader.latest()
    assert list(seen) == ["r1@customer.org"]
    assert seen["r1@customer.org"].owners == ("bob@example.com",)
    assert reader.adapter._state is not None
    messages = reader.adapter._state.threads["r1@customer.org"].messages
    assert len(messages) == 3  # the reply is not one of the thread's messages
    assert reader.cycle() == ([], [])


def test_replies_can_go_to_the_requester_instead(
    make: Callable[..., Reader], mailbox: Mailbox, smtp: SmtpServer
) -> None:
    reader = tagged_thread(mailbox, make, reply_to="requester")
    reader.adapter.write_owner(
        "r1@customer.org", "bob@example.com", ("alice@example.com",), HANDOFF
    )
    # Carol is outside the team: she gets the short reply, and the mailbox the full record.
    sent, record = smtp.wait_for(2)
    assert sent.rcpt_tos == ["carol@customer.org"]
    assert record.rcpt_tos == ["support@example.com"]
    assert b"covering while Alice is out" not in sent.data
    assert b"covering while Alice is out" in record.data


def test_unassigning_removes_the_keywords_and_says_so(
    make: Callable[..., Reader], mailbox: Mailbox, smtp: SmtpServer
) -> None:
    reader = tagged_thread(mailbox, make)
    handoff = Handoff("REQ-7", "Printer", None, None, "alice", "Alice", "operator")
    assert (
        reader.adapter.write_owner("r1@customer.org", None, ("alice@example.com",), handoff) == ()
    )
    assert not any(k.startswith("owner-") for f in mailbox.flags().values() for k in f)
    (sent,) = smtp.wait_for(1)
    body = BytesParser(policy=default).parsebytes(sent.data).get_content()
    assert "no longer has an owner" in body
    assert "by an operator" in body


@pytest.mark.parametrize(
    ("refusal", "error"),
    [("451 4.3.0 try again later", RetriableError), ("554 5.7.1 not accepted", FatalError)],
)
def test_a_refused_reply_puts_the_keywords_back(
    make: Callable[..., Reader],
    mailbox: Mailbox,
    smtp: SmtpServer,
    refusal: str,
    error: type[Exception],
) -> None:
    reader = tagged_thread(mailbox, make)
    smtp.handler.refuse_with = refusal
    with pytest.raises(error, match="SMTP DATA"):
        reader.adapter.write_owner(
            "r1@customer.org", "bob@example.com", ("alice@example.com",), HANDOFF
        )
    assert smtp.received == []
    flags = mailbox.flags()
    assert "owner-alice" in flags[2]
    assert not any("owner-bob" in f for f in flags.values())
    assert reader.adapter.read_owners("r1@customer.org") == ("alice@example.com",)


def test_an_unreachable_smtp_server_changes_nothing(
    make: Callable[..., Reader], mailbox: Mailbox
) -> None:
    closed = free_port()
    reader = tagged_thread(
        mailbox,
        make,
        smtp={"host": "127.0.0.1", "port": closed, "tls": "plain"},
    )
    with pytest.raises(RetriableError, match="SMTP envelope"):
        reader.adapter.write_owner(
            "r1@customer.org", "bob@example.com", ("alice@example.com",), HANDOFF
        )
    assert "owner-alice" in mailbox.flags()[2]


def test_writes_before_the_first_poll_find_the_thread_on_the_server(
    make: Callable[..., Reader], mailbox: Mailbox, smtp: SmtpServer
) -> None:
    _, r2, _ = thread(mailbox)
    mailbox.tag(r2, add=["owner-alice"])
    adapter = make().adapter  # no pull: the thread is found with a header search
    assert adapter.read_owners("r1@customer.org") == ("alice@example.com",)
    adapter.write_owner("r1@customer.org", "bob@example.com", ("alice@example.com",), HANDOFF)
    assert all("owner-bob" in f for f in mailbox.flags().values())
    assert len(smtp.wait_for(1)) == 1
    with pytest.raises(FatalError, match="no thread"):
        adapter.read_owners("nope@nowhere.example")


def test_a_restarted_adapter_reads_the_owner_the_server_shows_not_the_one_it_remembers(
    make: Callable[..., Reader], mailbox: Mailbox
) -> None:
    reader = tagged_thread(mailbox, make)
    r2 = mailbox.uids()[1]
    mailbox.tag(r2, add=["owner-bob"], remove=["owner-alice"])
    # A new process (a restart) writes back before it polls: it knows the thread from the
    # ledger, and must still read the keywords the server has now.
    again = make().adapter
    again.bind_store(reader.store)
    assert again.read_owners("r1@customer.org") == ("bob@example.com",)


# -- TLS --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls_to_both_servers(
    make: Callable[..., Reader], tls_dovecot: TlsDovecot, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_dovecot.certificate.cert))
    box = tls_dovecot.server.mailbox()
    _, r2, _ = thread(box)
    box.tag(r2, add=["owner-alice"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_dovecot.certificate.cert, tls_dovecot.certificate.key)
    tls = {"starttls": context} if mode == "starttls" else {"implicit": context}
    with running_smtp(**tls) as server:
        port = tls_dovecot.server.port if mode == "starttls" else tls_dovecot.imaps_port
        reader = make(
            imap={"host": "localhost", "port": port, "tls": mode, "user": box.user},
            smtp={"host": "localhost", "port": server.port, "tls": mode},
        )
        assert reader.latest()["r1@customer.org"].owners == ("alice@example.com",)
        reader.adapter.write_owner(
            "r1@customer.org", "bob@example.com", ("alice@example.com",), HANDOFF
        )
        assert len(server.wait_for(1)) == 1
        reader.adapter.close()


def test_an_untrusted_certificate_is_fatal(
    make: Callable[..., Reader], tls_dovecot: TlsDovecot
) -> None:
    box = tls_dovecot.server.mailbox()
    reader = make(
        imap={
            "host": "localhost",
            "port": tls_dovecot.imaps_port,
            "tls": "implicit",
            "user": box.user,
        }
    )
    with pytest.raises(FatalError, match="certificate"):
        reader.cycle()


# -- credentials ------------------------------------------------------------------------


def test_a_wrong_password_is_fatal_and_never_shown(
    make: Callable[..., Reader], mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "not-the-password-5b1e9"
    monkeypatch.setenv("SYNCD_TEST_WRONG_PASSWORD", wrong)
    reader = make(imap={"password": {"env": "SYNCD_TEST_WRONG_PASSWORD"}})
    with pytest.raises(FatalError) as caught:
        reader.cycle()
    assert "login" in str(caught.value).lower()
    assert wrong not in str(caught.value)
    assert wrong not in repr(caught.value.__context__)


def test_quarantine_rows_and_ledger_stay_free_of_the_password(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, mailbox.password)
    mailbox.deliver(
        f"From: x@y.org\r\nSubject: =?utf-8?q?a=0D=0ABcc:_{mailbox.password}?=\r\n\r\n{mailbox.password}\r\n".encode()
    )
    engine, ledger = engine_for(tmp_path, mailbox, smtp)
    engine.sync_once()
    engine.close()
    ledger.close()
    dump = "\n".join(sqlite3.connect(tmp_path / "ledger.db").iterdump())
    assert "header injection" in dump
    assert mailbox.password not in dump
