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
    (sent,) = smtp.wait_for(1)
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
    assert message["Subject"] == "Re: Hello"
    assert message["To"] == recipient
    assert message["References"] == "<ok@x> <hostile@x>"
    assert "Bcc" not in header_block
