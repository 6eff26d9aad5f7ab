"""Hostile mail, delivered into a real Dovecot and read by the email adapter.

Each message is quarantined with a reason, or read with a safe fallback. None of them
stops a cycle, leaks the IMAP password, makes syncd fetch a whole huge message, or gets a
header into the replies syncd sends.
"""

from __future__ import annotations

import base64
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

import pytest

from syncd.adapters.email import EmailAdapter, EmailConfig
from syncd.config import Person, load_config
from syncd.cycle import Engine
from syncd.ledger import Ledger
from syncd.models import Handoff, Observation, Quarantined
from syncd.people import Directory
from tests.mailservers import (
    Mailbox,
    SmtpServer,
    dovecot_fixture,  # noqa: F401
    email_source,
    mailbox_fixture,  # noqa: F401
    smtp_fixture,  # noqa: F401
)

PASSWORD_ENV = "SYNCD_TEST_IMAP_PASSWORD"
PEOPLE = [Person(id="alice", name="Alice", handles={"email": "alice@example.com"})]
MB = 1024 * 1024


def raw(*header_lines: str, body: str = "hello\r\n") -> bytes:
    return ("\r\n".join(header_lines) + "\r\n\r\n" + body).encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Case:
    name: str
    message: bytes
    # Either the quarantine reason must match `quarantined`, or the observation of the
    # thread must pass `check`.
    quarantined: str | None = None
    check: Callable[[Observation], bool] | None = None


def nested(depth: int) -> bytes:
    parts = ["Content-Type: multipart/mixed; boundary=b0\r\n\r\n"]
    for i in range(depth):
        parts.append(f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n")
    parts.append(f"--b{depth}\r\nContent-Type: text/plain\r\n\r\nvery deep REQ-77\r\n")
    return (
        "From: deep@customer.org\r\nSubject: deep\r\nMessage-ID: <deep@x>\r\n" + "".join(parts)
    ).encode()


def with_attachment(size: int) -> bytes:
    blob = base64.encodebytes(b"\0" * size).replace(b"\n", b"\r\n")
    return (
        b"From: big@customer.org\r\nSubject: Logs attached\r\nMessage-ID: <big@x>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
        b"--zz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee OPS-9\r\n"
        b"--zz\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="core.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + blob + b"--zz--\r\n"
    )


CASES = [
    Case(
        "encoded CR/LF in the subject",
        raw(
            "From: a@customer.org",
            "Subject: =?utf-8?q?Invoice=0D=0ABcc:_victim@evil.example?=",
            "Message-ID: <inj1@x>",
        ),
        quarantined=r"header Subject .*header injection",
    ),
    Case(
        "encoded line feed in the sender's name",
        raw(
            "From: =?utf-8?q?Eve=0ABcc=3A_victim=40evil.example?= <eve@evil.example>",
            "Subject: hi",
            "Message-ID: <inj2@x>",
        ),
        quarantined=r"header From .*header injection",
    ),
    Case(
        "encoded NUL in the subject",
        raw("From: a@customer.org", "Subject: =?utf-8?b?YQBi?=", "Message-ID: <nul@x>"),
        quarantined=r"header Subject .*NUL",
    ),
    Case(
        "bare CR splitting a header",
        raw(
            "From: a@customer.org", "Subject: Hello\rBcc: victim@evil.example", "Message-ID: <cr@x>"
        ),
        check=lambda o: o.title == "Hello",
    ),
    Case(
        "no Message-ID",
        raw("From: a@customer.org", "Subject: who am I"),
        check=lambda o: o.ref.endswith("@missing-message-id.syncd.invalid"),
    ),
    Case(
        "a Message-ID that is not one",
        raw("From: a@customer.org", "Subject: bad id", 'Message-ID: <a b"c@x>'),
        check=lambda o: o.ref.endswith("@missing-message-id.syncd.invalid"),
    ),
    Case(
        "an unknown body charset",
        raw(
            "From: a@customer.org",
            "Subject: charset",
            "Message-ID: <cs1@x>",
            "Content-Type: text/plain; charset=x-no-such-charset",
            body="see REQ-5 \udce9\udce8\r\n",
        ),
        check=lambda o: o.mentions == ("req:5",),
    ),
    Case(
        "mixed and unknown charsets in the subject",
        raw(
            "From: a@customer.org",
            "Subject: =?iso-8859-1?q?Caf=E9?= =?utf-8?b?4piV?= =?x-unknown?q?na=EFve?=",
            "Message-ID: <cs2@x>",
        ),
        check=lambda o: o.title == "Café☕naïve",
    ),
    Case(
        "raw 8-bit Latin-1 in the subject",
        raw("From: a@customer.org", "Subject: Caf\udce9 au lait", "Message-ID: <cs3@x>"),
        check=lambda o: o.title == "Café au lait",
    ),
    Case(
        "UTF-8 body declared as ASCII, Latin-1 bytes in UTF-8",
        raw(
            "From: a@customer.org",
            "Subject: mixed body",
            "Message-ID: <cs4@x>",
            "Content-Type: text/plain; charset=us-ascii",
            body="\u00e9t\u00e9 \udcff OPS-12\r\n",
        ),
        check=lambda o: "jira:OPS-12" in o.mentions,
    ),
    Case(
        "multipart without a boundary",
        raw(
            "From: a@customer.org",
            "Subject: no boundary",
            "Message-ID: <mime1@x>",
            "Content-Type: multipart/mixed",
            body="REQ-8 in what should be parts\r\n",
        ),
        check=lambda o: o.title == "no boundary",
    ),
    Case(
        "multipart that never closes",
        raw(
            "From: a@customer.org",
            "Subject: open ended",
            "Message-ID: <mime2@x>",
            "Content-Type: multipart/alternative; boundary=q",
            body="--q\r\nContent-Type: text/plain\r\n\r\nsee OPS-3\r\n--q\r\nContent-Type: text/ht",
        ),
        check=lambda o: "jira:OPS-3" in o.mentions,
    ),
    Case("multipart nested 3000 deep", nested(3000), check=lambda o: o.title == "deep"),
    Case(
        "broken base64",
        raw(
            "From: a@customer.org",
            "Subject: b64",
            "Message-ID: <b64@x>",
            "Content-Type: text/plain",
            "Content-Transfer-Encoding: base64",
            body="!!!not base64 at all***\r\n",
        ),
        check=lambda o: o.title == "b64",
    ),
    Case(
        "a 300 kB subject on one line",
        raw("From: a@customer.org", "Subject: " + "A" * 300_000, "Message-ID: <long@x>"),
        check=lambda o: len(o.title) <= 300 and o.ref == "long@x",
    ),
    Case(
        "5000 References",
        raw(
            "From: a@customer.org",
            "Subject: Re: deep thread",
            "Message-ID: <refs@x>",
            "References: " + " ".join(f"<r{i}@x>" for i in range(5000)),
        ),
        check=lambda o: o.ref == "r0@x",
    ),
    Case(
        "terminal escapes and tabs in the subject",
        raw("From: a@customer.org", "Subject: \x1b[31mred\x1b[0m\ttabbed", "Message-ID: <esc@x>"),
        check=lambda o: o.title == "[31mred [0m tabbed",
    ),
    Case(
        "no header at all",
        b"\r\njust a body with REQ-6\r\n",
        check=lambda o: o.title == "(no subject)" and o.requester is None,
    ),
    Case(
        "binary garbage",
        bytes(range(256)) * 40,
        check=lambda o: o.title == "(no subject)",
    ),
    Case(
        "a 30 MB attachment",
        with_attachment(22 * MB),
        check=lambda o: o.mentions == ("jira:OPS-9",),
    ),
]


@pytest.fixture
def make(
    mailbox: Mailbox, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., EmailAdapter]]:
    monkeypatch.setenv(PASSWORD_ENV, mailbox.password)
    made: list[EmailAdapter] = []

    def build(**overrides: Any) -> EmailAdapter:
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
            },
            "smtp": {"host": smtp.host, "port": smtp.port, "tls": "plain"},
            **overrides,
        }
        config = EmailConfig.model_validate(doc)
        config.resolve_secrets()
        adapter = EmailAdapter(config)
        adapter.bind_people(Directory.build(PEOPLE))
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        adapter.close()


def pull(adapter: EmailAdapter) -> tuple[list[Observation], list[Quarantined]]:
    observations: list[Observation] = []
    quarantined: list[Quarantined] = []
    for page in adapter.pull(None):
        observations += page.observations
        quarantined += page.quarantined
    return observations, quarantined


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_hostile_message_is_quarantined_or_read_safely(
    case: Case, make: Callable[..., EmailAdapter], mailbox: Mailbox
) -> None:
    mailbox.deliver(case.message)
    observations, quarantined = pull(make())
    if case.quarantined is not None:
        assert observations == []
        (q,) = quarantined
        assert re.search(case.quarantined, q.reason), q.reason
        assert q.ref == f"INBOX/{mailbox.uidvalidity()}/1"
    else:
        assert quarantined == []
        (o,) = observations
        assert case.check is not None
        assert case.check(o), o


def test_a_derived_message_id_is_stable_across_readers(
    make: Callable[..., EmailAdapter], mailbox: Mailbox
) -> None:
    mailbox.deliver(raw("From: a@customer.org", "Subject: who am I"))
    (first,), _ = pull(make())
    (second,), _ = pull(make())
    assert first.ref == second.ref


def test_a_forged_syncd_header_only_hides_that_message(
    make: Callable[..., EmailAdapter], mailbox: Mailbox
) -> None:
    mailbox.deliver(
        raw("From: a@customer.org", "Subject: x", "Message-ID: <f@x>", "X-Syncd-Request: REQ-1")
    )
    mailbox.deliver(raw("From: b@customer.org", "Subject: y", "Message-ID: <g@x>"))
    observations, quarantined = pull(make())
    assert [o.ref for o in observations] == ["g@x"]
    assert quarantined == []


def test_a_huge_message_is_never_fetched_whole(
    make: Callable[..., EmailAdapter], mailbox: Mailbox
) -> None:
    mailbox.deliver(with_attachment(30 * MB))
    adapter = make()
    (observation,), _ = pull(adapter)
    assert observation.mentions == ("jira:OPS-9",)
    adapter.close()
    # Dovecot logs how many bytes it sent to each session when it ends.
    sent = [
        int(m.group(1))
        for m in re.finditer(
            rf"imap\({mailbox.user}\).*Logged out in=\d+ out=(\d+)", mailbox.server.log
        )
    ]
    assert sent, mailbox.server.log[-2000:]
    assert max(sent) < 1 * MB


def test_the_whole_corpus_in_one_cycle_through_the_ledger(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, mailbox.password)
    for case in CASES:
        mailbox.deliver(case.message)
    mailbox.deliver(raw("From: a@customer.org", "Subject: fine", "Message-ID: <fine@x>"))
    path = tmp_path / "syncd.toml"
    path.write_text(
        f'ledger = "{tmp_path / "ledger.db"}"\n'
        + email_source("support", mailbox, smtp, password_env=PASSWORD_ENV)
    )
    config = load_config(path)
    ledger = Ledger(config.ledger)
    engine = Engine(config, ledger)
    (result,) = engine.sync_once()
    (again,) = engine.sync_once()
    engine.close()
    assert result.ok, result.error
    assert again.ok, again.error
    reasons = [r["reason"] for r in ledger.rows("SELECT reason FROM quarantine")]
    expected = [c for c in CASES if c.quarantined]
    assert len(reasons) == len(expected)
    handled = len(CASES) - len(expected) + 1
    # One item per thread; some of them name ledger ids (REQ-6) and join those requests.
    assert ledger.counts()["links"] == handled
    ledger.close()
    dump = "\n".join(sqlite3.connect(tmp_path / "ledger.db").iterdump())
    assert mailbox.password not in dump


@pytest.mark.parametrize(
    ("sender", "recipient"),
    [
        ("victim@customer.org, attacker@evil.example", "victim@customer.org"),
        ("Eve <eve@evil.example>\t(comment) <x@y>", "eve@evil.example"),
        ('"quoted, name" <victim@customer.org>', "victim@customer.org"),
        ("not an address", "support@example.com"),  # no usable requester: the mailbox
    ],
)
def test_replies_to_hostile_threads_carry_no_injected_header(
    make: Callable[..., EmailAdapter],
    mailbox: Mailbox,
    smtp: SmtpServer,
    sender: str,
    recipient: str,
) -> None:
    mailbox.deliver(
        raw(
            f"From: {sender}",
            "Subject: Re: Hello\rBcc: victim@evil.example\r\n\tX-Injected: yes",
            "Message-ID: <hostile@x>",
            'References: <a"b@x> <ok@x>\r\n Bcc: folded@evil.example',
        )
    )
    adapter = make(reply_to="requester")
    (observation,), _ = pull(adapter)
    handoff = Handoff(
        "REQ-3", "Hello\r\nBcc: evil@x", "alice", "Al\r\nBcc: e@x", None, None, "api\nX: y"
    )
    adapter.write_owner(observation.ref, "alice@example.com", (), handoff)
    # An outside requester's reply comes first; the shared mailbox's full record after it.
    sent = smtp.wait_for(1 if recipient == "support@example.com" else 2)[0]
    assert sent.rcpt_tos == [recipient]
    header_block = sent.data.split(b"\r\n\r\n", 1)[0].decode()
    names = [line.split(":", 1)[0] for line in header_block.split("\r\n") if not line[:1].isspace()]
    assert sorted(names) == sorted(
        [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "In-Reply-To",
            "References",
            "Auto-Submitted",
            "X-Auto-Response-Suppress",
            "X-Syncd-Request",
            "Content-Type",
            "Content-Transfer-Encoding",
            "MIME-Version",
        ]
    )
    message = BytesParser(policy=default).parsebytes(sent.data)
    assert message["Subject"] == "Re: [REQ-3] Hello"
    assert message["To"] == recipient
    assert message["References"] == "<ok@x> <hostile@x>"
    assert "Bcc" not in header_block


# -- automatic mail: bounces, auto-replies, read receipts ---------------------------------


def report(
    original: bytes,
    *,
    sender: str = "MAILER-DAEMON@mx.customer.org (Mail Delivery System)",
    auto_submitted: str | None = "auto-replied",
    report_type: str = "delivery-status",
    message_id: str = "20260302090001.4F2A1@mx.customer.org",
) -> bytes:
    """A delivery status notification returning `original`, shaped as Postfix sends one
    (RFC 3464 inside RFC 6522's multipart/report)."""
    header = [
        f"From: {sender}",
        "To: syncd@example.com",
        "Subject: Undelivered Mail Returned to Sender",
        "Date: Mon, 02 Mar 2026 09:00:01 +0000",
        f"Message-ID: <{message_id}>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type={report_type}; boundary="dsn"',
    ]
    if auto_submitted is not None:
        header.append(f"Auto-Submitted: {auto_submitted}")
    body = (
        "--dsn\r\nContent-Description: Notification\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is the mail system at host mx.customer.org.\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients. It's attached below.\r\n\r\n"
        "--dsn\r\nContent-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.org\r\n\r\n"
        "Final-Recipient: rfc822; carol@customer.org\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <carol@customer.org>: User unknown\r\n\r\n"
        "--dsn\r\nContent-Description: Undelivered Message\r\n"
        "Content-Type: message/rfc822\r\n\r\n"
    )
    return ("\r\n".join(header) + "\r\n\r\n" + body).encode() + original + b"\r\n--dsn--\r\n"


def test_a_bounce_of_syncds_own_reply_is_quarantined_not_a_request(
    tmp_path: Path,
    make: Callable[..., EmailAdapter],
    mailbox: Mailbox,
    smtp: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """syncd replies into a thread; the requester's server bounces it back to the mailbox.
    The bounce quotes the reply, which names the request and the /assign syntax: read as
    mail, it would be a new thread joining that request. The reply itself, which says
    Auto-Submitted as well, is syncd's own: skipped, not quarantined."""
    mailbox.deliver(
        raw(
            "From: Carol <carol@customer.org>",
            "Subject: Printer on fire",
            "Message-ID: <fire@customer.org>",
        )
    )
    adapter = make(reply_to="requester")
    (observation,), _ = pull(adapter)
    adapter.write_owner(
        observation.ref,
        "alice@example.com",
        (),
        Handoff("REQ-1", "Printer on fire", "alice", "Alice", None, None, "api"),
    )
    sent = smtp.wait_for(2)[0]  # to Carol; the second is the full record for the mailbox
    assert sent.rcpt_tos == ["carol@customer.org"]
    assert b"REQ-1" in sent.data  # what the bounce gives back, and must not act on
    mailbox.deliver(sent.data)  # the reply itself reaches the mailbox too, as by default
    mailbox.deliver(report(sent.data))

    path = tmp_path / "syncd.toml"
    path.write_text(
        f'ledger = "{tmp_path / "ledger.db"}"\n'
        + email_source("support", mailbox, smtp, password_env=PASSWORD_ENV)
    )
    monkeypatch.setenv(PASSWORD_ENV, mailbox.password)
    ledger = Ledger(load_config(path).ledger)
    engine = Engine(load_config(path), ledger)
    (result,) = engine.sync_once()
    engine.close()
    assert result.ok, result.error
    assert ledger.counts()["requests"] == 1
    (link,) = ledger.rows("SELECT ref FROM links")
    assert link["ref"] == "fire@customer.org"
    (q,) = ledger.rows("SELECT ref, reason FROM quarantine")
    assert q["reason"] == (
        "automatic message (bounce/auto-reply); not a request "
        "(Content-Type multipart/report, report-type delivery-status)"
    )
    assert q["ref"] == f"INBOX/{mailbox.uidvalidity()}/3"
    ledger.close()


THREAD = ("In-Reply-To: <fire@customer.org>", "References: <fire@customer.org>")
AUTOMATIC = [
    Case(
        "a delivery report without Auto-Submitted, from no special sender",
        report(
            b"Subject: Re: Printer on fire\r\n\r\nREQ-1\r\n",
            sender="Mail Delivery Subsystem <bounces@mx.customer.org>",
            auto_submitted=None,
        ),
        quarantined=r"\(Content-Type multipart/report, report-type delivery-status\)$",
    ),
    Case(
        "a read receipt",
        report(
            b"Subject: Printer on fire\r\n\r\n",
            sender="Carol <carol@customer.org>",
            auto_submitted=None,
            report_type="disposition-notification",
        ),
        quarantined=r"report-type disposition-notification\)$",
    ),
    Case(
        "an out-of-office reply in the thread",
        raw(
            "From: Carol <carol@customer.org>",
            "Subject: Out of office: Re: Printer on fire",
            "Message-ID: <ooo@customer.org>",
            *THREAD,
            "Auto-Submitted: auto-replied; owner-email=carol@customer.org",
            body="I am away until Monday.\r\n/assign carol\r\n",
        ),
        quarantined=r"\(Auto-Submitted: auto-replied\)$",
    ),
    Case(
        "a notification from a robot",
        raw(
            "From: monitor@customer.org",
            "Subject: Disk full",
            "Message-ID: <robot@customer.org>",
            "Auto-Submitted: Auto-Generated",
        ),
        quarantined=r"\(Auto-Submitted: auto-generated\)$",
    ),
    Case(
        "an Auto-Submitted value that is not a token",
        raw(
            "From: a@customer.org",
            "Subject: odd",
            "Message-ID: <odd@customer.org>",
            "Auto-Submitted: =?utf-8?q?Bcc=3A_x?= <evil@x>",
        ),
        quarantined=r"\(Auto-Submitted: other\)$",
    ),
    Case(
        "a plain-text bounce from MAILER-DAEMON without a domain",
        raw(
            "From: MAILER-DAEMON",
            "Subject: failure notice",
            "Message-ID: <qmail@mx.customer.org>",
            body="Sorry, I couldn't deliver your message about REQ-1.\r\n",
        ),
        quarantined=r"\(sent by mailer-daemon\)$",
    ),
    Case(
        "a bounce from postmaster",
        raw(
            "From: Postmaster <Postmaster@customer.org>",
            "Subject: Delivery has failed to these recipients",
            "Message-ID: <ndr@customer.org>",
            *THREAD,
        ),
        quarantined=r"\(sent by postmaster\)$",
    ),
    Case(
        "Auto-Submitted: no, from a person",
        raw(
            "From: Carol <carol@customer.org>",
            "Subject: Printer still on fire",
            "Message-ID: <human@customer.org>",
            "Auto-Submitted: No",
        ),
        check=lambda o: o.ref == "human@customer.org",
    ),
    Case(
        "a request forwarded by a mailing list (Precedence: bulk)",
        raw(
            "From: Dave <dave@customer.org>",
            "Subject: Printer on fire too",
            "Message-ID: <list@customer.org>",
            "Precedence: bulk",
            "List-Id: <it.customer.org>",
        ),
        check=lambda o: o.ref == "list@customer.org",
    ),
]


@pytest.mark.parametrize("case", AUTOMATIC, ids=[c.name for c in AUTOMATIC])
def test_automatic_mail_is_quarantined_and_people_s_mail_is_not(
    case: Case, make: Callable[..., EmailAdapter], mailbox: Mailbox
) -> None:
    mailbox.deliver(case.message)
    observations, quarantined = pull(make())
    if case.quarantined is not None:
        assert observations == []
        (q,) = quarantined
        assert q.reason.startswith("automatic message (bounce/auto-reply); not a request ")
        assert re.search(case.quarantined, q.reason), q.reason
    else:
        assert quarantined == []
        (o,) = observations
        assert case.check is not None
        assert case.check(o), o


def test_an_automatic_reply_does_not_hand_off_a_known_thread(
    make: Callable[..., EmailAdapter], mailbox: Mailbox
) -> None:
    """An out-of-office reply carrying a command, from a person who may give commands,
    into a thread syncd already follows: no new thread, no owner change."""
    mailbox.deliver(
        raw("From: carol@customer.org", "Subject: Printer on fire", "Message-ID: <fire@x>")
    )
    adapter = make()
    cursor = None
    for page in adapter.pull(None):
        assert [o.owners for o in page.observations] == [()]
        cursor = page.cursor or cursor
    mailbox.deliver(
        raw(
            "From: Alice <alice@example.com>",
            "Subject: Automatic reply: Printer on fire",
            "Message-ID: <ooo@example.com>",
            "In-Reply-To: <fire@x>",
            "Auto-Submitted: auto-replied",
            body="/assign alice\r\n",
        )
    )
    observations: list[Observation] = []
    quarantined: list[Quarantined] = []
    for page in adapter.pull(cursor):
        observations += page.observations
        quarantined += page.quarantined
    assert observations == []
    (q,) = quarantined
    assert "(Auto-Submitted: auto-replied)" in q.reason
