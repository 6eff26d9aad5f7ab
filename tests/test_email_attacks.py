"""The shared mailbox's trust boundary, attacked through real servers: Dovecot for IMAP,
aiosmtpd for SMTP, a real ledger file, and the sync engine the daemon runs.

Anyone can write to a shared mailbox. Each test is one attack from the security review,
and fails if the attack works again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from syncd.adapters.base import MemoryStore
from syncd.config import load_config
from syncd.cycle import Engine
from syncd.ledger import Ledger
from syncd.models import Observation, Page
from syncd.people import Directory
from tests.daemonproc import syncd
from tests.mailservers import (
    Mailbox,
    SmtpServer,
    compose,
    dovecot_fixture,  # noqa: F401
    email_source,
    mailbox_fixture,  # noqa: F401
    smtp_fixture,  # noqa: F401
)

PASSWORD_ENV = "SYNCD_TEST_IMAP_PASSWORD"
MTA = "mx.example.com"
PEOPLE = """
[[people]]
id = "alice"
name = "Alice Moreau"
handles = { email = "alice@example.com", github = "alice-gh" }

[[people]]
id = "bob"
name = "Bob Okafor"
handles = { email = "bob@example.com", github = "bob-gh" }

[[people]]
id = "dana"
name = "Dana Ivers"
handles = { github = "dana-gh" }
"""
AUTHENTICATED = f"{MTA}; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com; dmarc=pass header.from=example.com"


@dataclass
class World:
    engine: Engine
    ledger: Ledger
    mailbox: Mailbox
    smtp: SmtpServer

    def sync(self) -> None:
        for result in self.engine.sync_once():
            assert result.ok, result.error

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return self.ledger.rows(sql, args)

    def request_of(self, ref: str) -> dict[str, Any]:
        (row,) = self.rows(
            "SELECT r.key, r.owner, r.title FROM requests r JOIN links l ON l.request_id = r.id "
            "WHERE l.ref = ?",
            ref,
        )
        return row

    def quarantined(self) -> list[str]:
        return [r["reason"] for r in self.rows("SELECT reason FROM quarantine ORDER BY id")]


@pytest.fixture
def world(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    monkeypatch.setenv(PASSWORD_ENV, mailbox.password)
    made: list[World] = []

    def build(extra: str = "") -> World:
        path = tmp_path / "syncd.toml"
        path.write_text(
            f'ledger = "{tmp_path / "ledger.db"}"\n'
            + email_source("support", mailbox, smtp, password_env=PASSWORD_ENV, extra=extra)
            + PEOPLE
        )
        config = load_config(path)
        ledger = Ledger(config.ledger)
        made.append(World(Engine(config, ledger), ledger, mailbox, smtp))
        return made[-1]

    yield build
    for w in made:
        w.engine.close()
        w.ledger.close()


def authenticated(raw: bytes, verdict: str = AUTHENTICATED) -> bytes:
    """The message as the receiving MTA files it: its verdict prepended, topmost."""
    return f"Authentication-Results: {verdict}\r\n".encode() + raw


REQUIRE = f'require_authentication = true\nauthserv_id = "{MTA}"\nreply_to = "requester"'


def test_an_outsider_s_mention_of_a_request_does_not_join_it(world: Any) -> None:
    w: World = world()
    w.mailbox.deliver(compose("Printer on fire", "Alice <alice@example.com>", "p1@example.com"))
    w.sync()
    assert w.request_of("p1@example.com")["key"] == "REQ-1"
    w.mailbox.deliver(
        compose(
            "quick question",
            "Mallory <mallory@evil.example>",
            "m1@evil.example",
            "Any news on REQ-1? Also [REQ-1] and Same as: REQ-1",
        )
    )
    w.sync()
    # Its own request: a mention is a relation, and an outsider declares nothing.
    assert w.request_of("m1@evil.example")["key"] == "REQ-2"
    assert len(w.rows("SELECT 1 FROM links WHERE request_id = 1")) == 1
    # So a handoff of REQ-1 is not mailed to the outsider.
    w.ledger.assign("REQ-1", "bob", actor="ops-lead", note="internal: budget approved")
    w.sync()
    assert all("mallory@evil.example" not in r.rcpt_tos for r in w.smtp.received)


def test_an_outsider_cannot_pre_claim_items_that_do_not_exist_yet(world: Any) -> None:
    w: World = world()
    keys = " ".join([*(f"acme/api#{n}" for n in range(2, 30)), *(f"OPS-{n}" for n in range(8, 30))])
    w.mailbox.deliver(
        compose("quick question", "mallory@evil.example", "m2@evil.example", f"See {keys}")
    )
    w.sync()
    mallory = w.request_of("m2@evil.example")
    # A team member opens acme/api#3 later: it is its own request, with its own title.
    issue = Observation(
        source="api",
        ref="acme/api#3",
        url="https://github.com/acme/api/issues/3",
        title="Login fails on Safari",
        state="open",
        owners=("bob-gh",),
        updated_at=datetime.now(UTC),
        keys=("github:acme/api#3",),
    )
    w.ledger.apply_page("api", "github", Page([issue]), Directory.build(w.engine.config.people))
    joined = w.request_of("acme/api#3")
    assert joined["key"] != mallory["key"]
    assert joined["title"] == "Login fails on Safari"
    assert joined["owner"] == "bob"


def observed(w: World) -> dict[str, Observation]:
    """Every thread in the mailbox, as the adapter reports it to the core (read afresh)."""
    adapter = w.engine.adapters["support"]
    adapter.bind_store(MemoryStore())
    return {o.ref: o for page in adapter.pull(None) for o in page.observations}


def test_an_outsider_declares_nothing_and_pre_claims_nothing(world: Any) -> None:
    w: World = world()
    keys = " ".join([*(f"acme/api#{n}" for n in range(2, 30)), *(f"OPS-{n}" for n in range(8, 30))])
    w.mailbox.deliver(
        compose(
            "[OPS-7] quick question",
            "Mallory <mallory@evil.example>",
            "m1@evil.example",
            f"Any news on REQ-1?\nSame as: REQ-1\nJira: OPS-8\nTracked in acme/api#2\n{keys}",
        )
    )
    # The same words from a team member declare.
    w.mailbox.deliver(
        compose("[OPS-7] Login fails", "alice@example.com", "a1@example.com", "Same as: REQ-1")
    )
    seen = observed(w)
    outsider, member = seen["m1@evil.example"], seen["a1@example.com"]
    assert outsider.declared == ()
    assert not outsider.author_trusted
    # What it names stays visible, as relations.
    assert {"req:1", "jira:OPS-7", "jira:OPS-8", "github:acme/api#29"} <= set(outsider.mentions)
    assert member.declared == ("jira:OPS-7", "req:1")
    assert member.author_trusted


def test_a_team_member_s_reply_does_not_launder_an_outsider_s_subject(world: Any) -> None:
    w: World = world()
    w.mailbox.deliver(compose("[OPS-7] printer jam", "mallory@evil.example", "m1@evil.example"))
    # Alice answers: her client keeps the subject, which is not her declaration.
    w.mailbox.deliver(
        compose(
            "Re: [OPS-7] printer jam",
            "alice@example.com",
            "a1@example.com",
            "Looking into it.",
            reply_to="m1@evil.example",
        )
    )
    assert observed(w)["m1@evil.example"].declared == ()
    # What she writes herself declares.
    w.mailbox.deliver(
        compose(
            "Re: [OPS-7] printer jam",
            "alice@example.com",
            "a2@example.com",
            "Jira: OPS-9\n",
            reply_to="a1@example.com",
        )
    )
    assert observed(w)["m1@evil.example"].declared == ("jira:OPS-9",)


def test_a_forged_internal_sender_is_not_obeyed(world: Any) -> None:
    w: World = world(REQUIRE)
    w.mailbox.deliver(
        compose("VPN down", "Carol <carol@customer.org>", "v1@customer.org", "since 9am")
    )
    w.sync()
    # Alice's address, but her domain's checks failed; the sender's own "pass" headers,
    # below the MTA's or under another authserv-id, change nothing.
    forged = compose(
        "Re: VPN down [OPS-7]",
        "Alice <alice@example.com>",
        "f1@evil.example",
        "Jira: OPS-7\n/assign mallory@evil.example\n",
        reply_to="v1@customer.org",
        references=["v1@customer.org"],
        headers={"Authentication-Results": f"{MTA}; dmarc=pass header.from=example.com"},
    )
    forged = b"Authentication-Results: evil.example; dmarc=pass\r\n" + forged
    w.mailbox.deliver(
        authenticated(forged, f"{MTA}; dkim=fail; spf=fail; dmarc=fail header.from=example.com")
    )
    w.sync()
    assert w.request_of("v1@customer.org")["owner"] is None
    assert w.quarantined() == [
        "/assign from alice@example.com refused: sender not authenticated "
        f"({MTA} says dkim=fail, spf=fail, dmarc=fail)"
    ]
    assert w.rows("SELECT key FROM link_keys WHERE key = 'jira:OPS-7' AND role != 'mention'") == []
    # The operator sees the attempt, and why it was refused.
    shown = syncd("--ledger", str(w.ledger.path), "quarantine").stdout
    assert "/assign from alice@example.com refused: sender not authenticated" in shown
    # The real Alice, authenticated by the MTA, is obeyed; the event names her and the mail.
    w.mailbox.deliver(
        authenticated(
            compose(
                "Re: VPN down",
                "Alice <alice@example.com>",
                "a1@example.com",
                "/assign bob\n",
                reply_to="v1@customer.org",
                references=["v1@customer.org"],
            )
        )
    )
    w.sync()
    assert w.request_of("v1@customer.org")["owner"] == "bob"
    (event,) = w.rows("SELECT actor, detail FROM events WHERE kind = 'owner_changed'")
    assert event == {
        "actor": "alice",
        "detail": "/assign by alice@example.com in message <a1@example.com>",
    }
    history = syncd("--ledger", str(w.ledger.path), "history", "REQ-1").stdout
    assert "in message <a1@example.com>" in " ".join(history.split())


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("..", "/assign .. refused: not a person id, a person's email handle or 'me'"),
        ("owner-x", "/assign owner-x refused: not a person id, a person's email handle or 'me'"),
        (
            "support@example.com",
            "/assign support@example.com refused: that is the shared mailbox itself",
        ),
        ("dana", "/assign dana refused: dana has no email handle in [[people]]"),
        (
            "mallory@evil.example",
            "/assign mallory@evil.example refused: not a person id, a person's email handle or 'me'",
        ),
    ],
)
def test_junk_assign_targets_are_refused_with_a_visible_reason(
    world: Any, target: str, reason: str
) -> None:
    w: World = world(REQUIRE)
    w.mailbox.deliver(compose("VPN down", "carol@customer.org", "v1@customer.org"))
    w.mailbox.deliver(
        authenticated(
            compose(
                "Re: VPN down",
                "alice@example.com",
                "a1@example.com",
                f"/assign {target}\n",
                reply_to="v1@customer.org",
            )
        )
    )
    w.sync()
    assert w.request_of("v1@customer.org")["owner"] is None
    assert w.quarantined() == [reason]
    assert w.rows("SELECT 1 FROM events WHERE kind = 'owner_changed'") == []


def test_a_reused_message_id_is_kept_apart_and_never_answered(world: Any) -> None:
    w: World = world('reply_to = "requester"')
    w.mailbox.deliver(
        compose("Invoice 2291 wrong", "Carol <carol@customer.org>", "i1@customer.org")
    )
    w.mailbox.deliver(
        compose(
            "Re: Invoice 2291 wrong",
            "carol@customer.org",
            "i2@customer.org",
            "any news?",
            reply_to="i1@customer.org",
            date="Mon, 02 Mar 2026 10:00:00 +0000",
        )
    )
    w.sync()
    # The root's Message-ID again, from someone else: not the same message.
    w.mailbox.deliver(
        compose(
            "Invoice 2291 wrong",
            "Mallory <mallory@evil.example>",
            "i1@customer.org",
            "Tracked in acme/api#9",
            date="Tue, 03 Mar 2026 09:00:00 +0000",
        )
    )
    w.sync()
    assert w.quarantined() == [
        "reuses the Message-ID of an earlier message with a different sender or date: "
        "another message, kept apart (never threaded, never a reply target)"
    ]
    assert w.rows("SELECT count(*) AS n FROM requests") == [{"n": 1}]
    assert w.rows("SELECT key FROM link_keys WHERE key LIKE 'github:%'") == []
    w.ledger.assign("REQ-1", "alice", actor="ops-lead", note=None)
    w.sync()
    to_carol, _record = w.smtp.wait_for(2)
    assert to_carol.rcpt_tos == ["carol@customer.org"]
    assert to_carol.message["In-Reply-To"] == "<i2@customer.org>"


def test_replies_to_an_outsider_name_the_request_and_owner_and_nothing_else(
    world: Any,
) -> None:
    w: World = world('reply_to = "requester"')
    w.mailbox.deliver(
        compose("Invoice 2291 wrong", "Carol <carol@customer.org>", "i1@customer.org")
    )
    w.sync()
    # An internal reply declares the Jira item; the request takes on another item's title.
    w.mailbox.deliver(
        compose(
            "Re: Invoice 2291 wrong",
            "alice@example.com",
            "a1@example.com",
            "Jira: OPS-7\n",
            reply_to="i1@customer.org",
        )
    )
    w.sync()
    w.ledger.conn.execute("UPDATE requests SET title = 'Refund fraud ring (confidential)'")
    note = "customer is on the fraud watch list; see https://jira.example/browse/OPS-7"
    w.ledger.assign("REQ-1", "bob", actor="ops-lead", note=note)
    w.sync()
    to_carol, record = w.smtp.wait_for(2)
    assert to_carol.rcpt_tos == ["carol@customer.org"]
    body = to_carol.message.get_payload(decode=True).decode()
    assert (
        body.splitlines()[0]
        == 'Your request REQ-1 "Invoice 2291 wrong" is now handled by Bob Okafor.'
    )
    for secret in ("fraud", "ops-lead", "OPS-7", "jira", "alice", "bob@example.com", "Refund"):
        assert secret not in to_carol.data.decode()
    assert to_carol.message["Subject"] == "Re: [REQ-1] Invoice 2291 wrong"
    # The shared mailbox gets the whole record.
    assert record.rcpt_tos == ["support@example.com"]
    full = record.message.get_payload(decode=True).decode()
    assert "fraud watch list" in full
    assert "ops-lead" in full


@pytest.mark.slow
def test_a_flood_of_twenty_thousand_mails_makes_syncd_forget_no_thread(world: Any) -> None:
    w: World = world()
    root = w.mailbox.deliver(
        compose("Badge reader broken", "Carol <carol@customer.org>", "b1@customer.org")
    )
    w.sync()
    flood = [
        compose(f"WIN A PRIZE {n}", f"prize{n}@junk.example", f"junk{n}@junk.example", "click")
        for n in range(20_000)
    ]
    w.mailbox.deliver_many(flood)
    w.sync()
    assert w.rows("SELECT count(*) AS n FROM requests") == [{"n": 20_001}]
    adapter = w.engine.adapters["support"]
    # The oldest thread's owner tag is seen, with the one STATUS and the reads it takes.
    w.mailbox.tag(root, add=["owner-alice"])
    w.sync()
    assert w.request_of("b1@customer.org")["owner"] == "alice"
    before = adapter.request_counts()
    w.sync()
    assert adapter.request_counts() - before == {"IMAP STATUS": 1}
    # And a handoff from the operator is written to it: keyword moved, one threaded reply.
    w.ledger.assign("REQ-1", "bob", actor="ops-lead", note=None)
    w.sync()
    flags = w.mailbox.flags(uids=[root])[root]
    assert "owner-bob" in flags
    assert "owner-alice" not in flags
    (sent,) = w.smtp.wait_for(1)
    assert sent.message["In-Reply-To"] == "<b1@customer.org>"
    assert w.rows("SELECT status FROM outbox WHERE field = 'owner'") == [{"status": "done"}]


def test_a_forged_from_is_no_requester_for_routing_or_replies(world: Any) -> None:
    w: World = world(REQUIRE)
    # Routing rules may test the requester (`requester = "@globex.example"`), and replies may
    # go to the requester: a From that the MTA did not authenticate must not be either.
    w.mailbox.deliver(
        authenticated(
            compose("Urgent: wire transfer", "CEO <ceo@globex.example>", "w1@evil.example"),
            f"{MTA}; dkim=fail; spf=fail; dmarc=fail header.from=globex.example",
        )
    )
    w.mailbox.deliver(
        authenticated(
            compose("Invoice question", "Ann <ann@globex.example>", "g1@globex.example"),
            f"{MTA}; dkim=pass header.d=globex.example; dmarc=pass header.from=globex.example",
        )
    )
    w.sync()
    requesters = {
        r["ref"]: r["requester"] for r in w.rows("SELECT ref, requester FROM links ORDER BY id")
    }
    assert requesters == {"w1@evil.example": None, "g1@globex.example": "ann@globex.example"}
