"""The email adapter's pure decisions: subjects, commands, threading, owners, replies."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from email.policy import default

import pytest
from structlog.testing import capture_logs

from syncd.adapters.base import MemoryStore
from syncd.adapters.email import EmailAdapter, EmailConfig
from syncd.adapters.email_message import (
    MailFacts,
    find_command,
    message_ids,
    strip_reply_prefixes,
    valid_address,
)
from syncd.adapters.email_reply import ReplyTarget, UnsafeReply, compose_reply, thread_headers
from syncd.adapters.email_thread import REUSED_ID, FolderState, Keywords, MailState, Sent
from syncd.config import parse_config
from syncd.errors import ConfigError
from syncd.models import Handoff

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("subject", "title"),
    [
        ("Printer", "Printer"),
        ("Re: Printer", "Printer"),
        ("RE: Fwd: AW: SV: WG: Printer", "Printer"),
        ("Re[2]: Re^3: Printer", "Printer"),
        ("  re :  fw: Printer  ", "Printer"),
        ("Regarding the printer", "Regarding the printer"),
        ("Re:", "(no subject)"),
        ("", "(no subject)"),
    ],
)
def test_reply_prefixes_are_stripped_from_titles(subject: str, title: str) -> None:
    assert strip_reply_prefixes(subject) == title


@pytest.mark.parametrize(
    ("text", "who"),
    [
        ("/assign bob", "bob"),
        ("/ASSIGN Bob", "bob"),
        ("thanks\n/assign bob@example.com\n", "bob@example.com"),
        ("/assign\tme  ", "me"),
        ("first\n/assign carol\n/assign dave", "carol"),
        (" /assign bob", None),
        ("/assign bob please", None),
        ("/assign", None),
        ("/assignbob", None),
        ("/assign bob,carol", None),
        ("> /assign bob", None),
        ("ok\n\nOn Mon, 2 Mar 2026, Bob wrote:\n/assign bob", None),
        ("ok\n-----Original Message-----\n/assign bob", None),
        ("ok\n-- \n/assign bob", None),
        ("ok\nFrom: Bob\n/assign bob", None),
    ],
)
def test_assign_command_syntax(text: str, who: str | None) -> None:
    assert find_command(text) == who


def test_message_ids_keep_the_root_and_the_nearest_parents() -> None:
    value = " ".join(f"<m{i}@x>" for i in range(100)) + ' junk <not an id> <a"b@x>'
    ids = message_ids(value)
    assert len(ids) == 40
    assert ids[0] == "m0@x"
    assert ids[-1] == "m99@x"
    assert message_ids("<ok@x>\r\nBcc: evil@x") == ("ok@x",)


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("Bob@Example.COM", "bob@example.com"),
        ("bob@example.com\r\nBcc: x@y", None),
        ("bob@exa mple.com", None),
        ("<bob@example.com>", None),
        ("bob", None),
        ("", None),
    ],
)
def test_addresses_are_plain_or_nothing(address: str, valid: str | None) -> None:
    assert valid_address(address) == valid


# -- threads and the cursor -------------------------------------------------------------


def facts(
    mid: str,
    references: tuple[str, ...] = (),
    *,
    uid: int,
    subject: str = "Printer",
    sender: str | None = "carol@customer.org",
    keywords: tuple[str, ...] = (),
    minutes: int = 0,
    own: bool = False,
) -> MailFacts:
    return MailFacts(
        folder="INBOX",
        uid=uid,
        message_id=mid,
        synthetic_id=False,
        references=references,
        subject=subject,
        sender=sender,
        sender_name=None,
        received_at=T0 + timedelta(minutes=minutes),
        own=own,
        keywords=keywords,
        modseq=uid,
    )


ROOT = facts("r1", uid=1, subject="Printer")
REPLY = facts("r2", ("r1",), uid=2, subject="Re: Printer", sender="alice@example.com", minutes=5)
# A client that sets only In-Reply-To, to the reply.
LATE = facts("r3", ("r2",), uid=3, subject="Fwd: Printer", sender="bob@example.com", minutes=9)


def fresh() -> MailState:
    state = MailState()
    state.folders["INBOX"] = FolderState(7, 1, None, 0)
    return state


def state_of(*messages: MailFacts, commands: dict[str, str] | None = None) -> MailState:
    state = fresh()
    state.begin_cycle()
    for m in messages:
        command = (commands or {}).get(m.message_id)
        state.add_message(m, 7, Sent(command=command, actor=m.sender) if command else None)
    state.settle(NOW)
    return state


@pytest.mark.parametrize(
    "order", [(ROOT, REPLY, LATE), (LATE, REPLY, ROOT), (REPLY, ROOT, LATE), (REPLY, LATE, ROOT)]
)
def test_threading_does_not_depend_on_arrival_order(order: tuple[MailFacts, ...]) -> None:
    # Delivered one cycle at a time, in any order, the three are one thread named r1.
    state = fresh()
    for m in order:
        state.begin_cycle()
        state.add_message(m, 7, None)
        state.settle(NOW)
    if order[0] is LATE:
        # The one order that splits: r3 alone names only r2, so its thread is r2, and an
        # item's ref never changes once reported (changing it would duplicate the
        # request), so r2 joins that thread when it comes, and r1 starts its own.
        assert set(state.threads) == {"r1", "r2"}
        return
    (thread,) = state.threads.values()
    assert thread.root == "r1"
    assert thread.title == "Printer"
    assert thread.requester == "carol@customer.org"
    assert thread.last_id == "r3"
    assert {m.message_id for m in thread.messages} == {"r1", "r2", "r3"}


def test_syncd_own_mail_never_joins_or_starts_a_thread() -> None:
    own = facts("s1", ("r1",), uid=4, own=True)
    state = state_of(ROOT, own, facts("s2", uid=5, own=True))
    assert set(state.threads) == {"r1"}
    assert len(state.threads["r1"].messages) == 1


def test_latest_owner_event_wins_and_removal_falls_back() -> None:
    state = state_of(ROOT, REPLY, commands={"r2": "bob"})
    thread = state.threads["r1"]
    assert thread.owner is not None
    assert (thread.owner.value, thread.owner.via) == ("bob", "command")
    # A keyword seen later wins over the earlier command.
    state.begin_cycle()
    assert state.set_keywords("INBOX", 1, ["owner-alice", "$label1"], 20, NOW) == "r1"
    assert state.settle(NOW) == ["r1"]
    assert thread.owner.value == "alice"
    # Two more keywords; the later one (higher MODSEQ) wins.
    state.begin_cycle()
    state.set_keywords("INBOX", 2, ["owner-carol"], 22, NOW)
    state.set_keywords("INBOX", 1, ["owner-alice", "owner-dave"], 21, NOW)
    state.settle(NOW)
    assert thread.owner.value == "carol"
    # The winner's keyword goes: the latest one still present takes over.
    state.begin_cycle()
    state.set_keywords("INBOX", 2, [], 23, NOW)
    state.settle(NOW)
    assert thread.owner.value == "dave"
    state.begin_cycle()
    state.set_keywords("INBOX", 1, [], 24, NOW)
    state.settle(NOW)
    assert thread.owner.value is None
    assert thread.owner.via == "fallback"


def test_keywords_that_do_not_change_are_no_event() -> None:
    state = state_of(replace(ROOT, keywords=("owner-alice",)), REPLY)
    state.begin_cycle()
    # The same keyword now on another message as well, and a flag syncd doesn't use.
    assert state.set_keywords("INBOX", 2, ["owner-alice"], 30, NOW) == "r1"
    assert state.set_keywords("INBOX", 1, ["owner-alice", "\\seen"], 31, NOW) is None
    assert state.settle(NOW) == []


def test_the_cursor_and_the_store_round_trip_and_a_broken_cursor_is_refused() -> None:
    store = MemoryStore()
    state = fresh()
    state.store = store
    state.begin_cycle()
    for m in (replace(ROOT, keywords=("owner-alice", "state-done")), REPLY):
        state.add_message(m, 7)
    state.settle(NOW)
    state.folders["INBOX"] = FolderState(7, 3, 12, 2)
    store.apply(state.changes())
    again = MailState.load(state.dump(), Keywords(), store)
    assert again.dump() == state.dump()
    loaded = again.thread("r1")
    assert loaded is not None
    assert loaded.dump() == state.threads["r1"].dump()
    assert again.tracked_uids("INBOX") == [1, 2]
    assert again.changes() == {}  # reading changes nothing
    for broken in (
        {"v": 99},
        {"v": 2, "seq": "x"},
        {"v": 2, "seq": 1, "folders": []},
        {"v": 1, "seq": 1, "folders": {}, "threads": {}},  # the old capped cursor
    ):
        with pytest.raises(ValueError, match="unreadable email cursor"):
            MailState.load(broken, Keywords(), store)


def test_no_thread_is_forgotten_however_many_there_are() -> None:
    store = MemoryStore()
    state = fresh()
    state.store = store
    for i in range(6000):
        state.begin_cycle()
        state.add_message(facts(f"t{i}", uid=i + 1, minutes=i), 7)
        state.settle(NOW)
        store.apply(state.changes())
    later = MailState.load(state.dump(), Keywords(), store)
    later.begin_cycle()
    assert later.set_keywords("INBOX", 1, ["owner-alice"], 9000, NOW) == "t0"
    assert later.settle(NOW) == ["t0"]
    assert later.threads["t0"].owner is not None
    assert later.threads["t0"].owner.value == "alice"


def test_a_reused_message_id_with_another_sender_or_date_is_refused() -> None:
    state = state_of(ROOT, REPLY)
    forged_sender = replace(ROOT, uid=9, sender="mallory@evil.example")
    forged_date = replace(ROOT, uid=10, date="Tue, 03 Mar 2026 09:00:00 +0000")
    for forged in (forged_sender, forged_date):
        state.begin_cycle()
        with pytest.raises(Exception, match="reuses the Message-ID") as caught:
            state.add_message(forged, 7)
        assert str(caught.value) == REUSED_ID
        assert state.settle(NOW) == []
    # The same message again (copied to another folder) is the same message.
    state.folders["Archive"] = FolderState(3, 1, None, 0)
    state.begin_cycle()
    assert state.add_message(replace(ROOT, folder="Archive", uid=1), 3) == "r1"
    assert state.threads["r1"].last_id == "r2"


# -- replies ----------------------------------------------------------------------------

HANDOFF = Handoff("REQ-42", "Printer", "bob", "Bob", "alice", "Alice", "operator", note="one\ntwo")
TARGET = ReplyTarget("syncd@example.com", "support@example.com", "Printer", "r1@x", "r3@x")


def test_the_reply_threads_and_marks_itself() -> None:
    message = compose_reply(HANDOFF, TARGET, "m1@example.com", NOW, "owner-")
    parsed = BytesParser(policy=default).parsebytes(message.as_bytes())
    assert parsed["In-Reply-To"] == "<r3@x>"
    assert parsed["References"] == "<r1@x> <r3@x>"
    assert parsed["Subject"] == "Re: [REQ-42] Printer"
    assert parsed["X-Syncd-Request"] == "REQ-42"
    body = parsed.get_content()
    assert "    one\r\n    two\r\n" in body
    assert find_command(body) is None


def test_thread_headers_skip_derived_and_malformed_ids() -> None:
    derived = "abc@missing-message-id.syncd.invalid"
    assert thread_headers(derived, derived) == {}
    assert thread_headers("r1@x", derived) == {"In-Reply-To": "<r1@x>", "References": "<r1@x>"}
    assert thread_headers("r1@x", "a b@x") == {"In-Reply-To": "<r1@x>", "References": "<r1@x>"}


@pytest.mark.parametrize(
    "target",
    [
        replace(TARGET, recipient="a@x.org\r\nBcc: evil@x.org"),
        replace(TARGET, recipient="a@x.org, evil@x.org"),
        replace(TARGET, sender="syncd"),
    ],
)
def test_a_reply_to_an_unsafe_address_is_refused(target: ReplyTarget) -> None:
    with pytest.raises(UnsafeReply):
        compose_reply(HANDOFF, target, "m1@example.com", NOW, "owner-")


def test_line_breaks_in_titles_and_names_stay_on_one_line() -> None:
    handoff = replace(HANDOFF, to_name="Bob\r\nBcc: evil@x.org", request_key="REQ-42")
    target = replace(TARGET, title="Printer\r\nBcc: evil@x.org")
    data = compose_reply(handoff, target, "m1@example.com", NOW, "owner-").as_bytes()
    headers = data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc" not in headers
    assert b"Subject: Re: [REQ-42] Printer Bcc: evil@x.org" in headers
    with pytest.raises(UnsafeReply):
        compose_reply(replace(HANDOFF, request_key="REQ-1\r\nBcc: x"), TARGET, "m@x", NOW, "o-")


# -- configuration ----------------------------------------------------------------------


def source(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "name": "support",
        "type": "email",
        "address": "support@example.com",
        "imap": {"host": "imap.example.com", "user": "support", "password": {"env": "X"}},
        "smtp": {"host": "smtp.example.com"},
    }
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"address": "support"}, "sources[0] (support).address: must be a plain address"),
        (
            {"imap": {"host": "h", "user": "u", "password": "hunter2"}},
            "sources[0] (support).imap.password: secrets are not read inline",
        ),
        (
            {"imap": {"host": "h", "user": "u", "password": {"env": "X"}, "tls": "ssl"}},
            "sources[0] (support).imap.tls: Input should be 'implicit', 'starttls' or 'plain'",
        ),
        (
            {"smtp": {"host": "h", "user": "u"}},
            "sources[0] (support).smtp: set both user and password",
        ),
        ({"reply_to": "all"}, "sources[0] (support).reply_to: Input should be 'mailbox' or"),
        ({"owner_prefix": "Owner "}, "sources[0] (support).owner_prefix: use lower-case"),
        ({"state_prefix": "owner-x"}, "must not be prefixes of each other"),
        ({"max_body_bytes": 10**9}, "sources[0] (support).max_body_bytes"),
    ],
)
def test_config_problems_name_the_field(changes: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": [source(**changes)]}, resolve=False)
    assert problem in str(caught.value)


def test_defaults_and_ports() -> None:
    config = parse_config({"sources": [source()]}, resolve=False).sources[0]
    assert isinstance(config, EmailConfig)
    assert (config.imap.tls, config.imap.effective_port, config.imap.folders) == (
        "implicit",
        993,
        ["INBOX"],
    )
    assert (config.smtp.tls, config.smtp.effective_port) == ("starttls", 587)
    assert (config.reply_to, config.owner_prefix, config.state_prefix) == (
        "mailbox",
        "owner-",
        "state-",
    )
    assert config.sender == "support@example.com"


@pytest.mark.parametrize(
    ("host", "warned"), [("127.0.0.1", False), ("::1", False), ("mail.example.com", True)]
)
def test_plain_text_to_a_remote_server_is_warned_about(host: str, warned: bool) -> None:
    doc = source(
        imap={"host": host, "user": "u", "password": {"env": "X"}, "tls": "plain"},
        smtp={"host": "localhost", "tls": "plain"},
    )
    config = parse_config({"sources": [doc]}, resolve=False).sources[0]
    assert isinstance(config, EmailConfig)
    with capture_logs() as logs:
        EmailAdapter(config)
    warnings = [e for e in logs if e["log_level"] == "warning" and "protocol" in e]
    assert bool(warnings) == warned
    if warned:
        assert warnings[0]["protocol"] == "IMAP"
        assert "clear text" in warnings[0]["event"]


def test_only_authenticated_internal_mail_is_reply_activity() -> None:
    # What accepts a handoff from the mail thread: mail from an authenticated internal
    # sender. A customer's reply, or a From line claiming a colleague, is no such activity.
    state = fresh()
    state.begin_cycle()
    state.add_message(ROOT, 7, None)
    state.add_message(REPLY, 7, Sent(trusted=True))
    state.add_message(LATE, 7, Sent(trusted=False))
    state.settle(NOW)
    assert state.take_replies("r1") == [("alice@example.com", T0 + timedelta(minutes=5))]
    assert state.take_replies("r1") == []  # handed over once
