"""Who a mail's sender is, and what they may command: the pure decisions of email_trust."""

from __future__ import annotations

import pytest

from syncd.adapters.email_trust import (
    Sender,
    aligned,
    assign_target,
    is_internal,
    judge_sender,
    parse_authentication_results,
    verify_sender,
)

MTA = "mx.example.com"
ALICE = "alice@example.com"


def test_an_authentication_results_value_is_read_with_its_comments_dropped() -> None:
    parsed = parse_authentication_results(
        "MX.example.com 1; (checked (twice)) dkim=pass (2048-bit key) header.d=Example.com "
        'header.s=sel; spf=fail smtp.mailfrom="x@evil.example"; dmarc=pass (p=reject) '
        "header.from=example.com"
    )
    assert parsed is not None
    authserv_id, results = parsed
    assert authserv_id == MTA
    assert [(r.method, r.result) for r in results] == [
        ("dkim", "pass"),
        ("spf", "fail"),
        ("dmarc", "pass"),
    ]
    assert results[0].properties["header.d"] == "example.com"
    assert parse_authentication_results("") is None


@pytest.mark.parametrize(
    ("headers", "ok", "why"),
    [
        ([f"{MTA}; dmarc=pass header.from=example.com"], True, "dmarc=pass"),
        ([f"{MTA}; dkim=pass header.d=example.com; dmarc=none"], True, "dkim=pass"),
        # A DKIM signature by a parent or a subdomain of the From domain is aligned (relaxed).
        ([f"{MTA}; dkim=pass header.d=mail.example.com"], True, "dkim=pass"),
        # A signature by some other domain proves nothing about the From address.
        ([f"{MTA}; dkim=pass header.d=evil.example; spf=pass"], False, "dkim=pass, spf=pass"),
        ([f"{MTA}; dkim=pass header.d=com"], False, "says"),
        # DMARC passed for another From domain than this message's.
        ([f"{MTA}; dmarc=pass header.from=evil.example"], False, "says"),
        ([f"{MTA}; dkim=fail; spf=fail; dmarc=fail"], False, "dkim=fail, spf=fail, dmarc=fail"),
        ([f"{MTA}; none"], False, "no results"),
        # Only the topmost header of the configured MTA counts: the sender's own below it...
        (
            [f"{MTA}; dmarc=fail header.from=example.com", f"{MTA}; dmarc=pass"],
            False,
            "dmarc=fail",
        ),
        # ...and headers with any other authserv-id are ignored, wherever they are.
        (["evil.example; dmarc=pass", f"{MTA}; dmarc=fail"], False, "dmarc=fail"),
        (["evil.example; dmarc=pass", "mx.example.com.evil; dmarc=pass"], False, "no Auth"),
        ([], False, "no Authentication-Results header from mx.example.com"),
    ],
)
def test_only_the_configured_mta_s_topmost_verdict_authenticates(
    headers: list[str], ok: bool, why: str
) -> None:
    verdict = verify_sender(ALICE, headers, MTA)
    assert verdict.ok is ok
    assert why in verdict.why


@pytest.mark.parametrize(
    ("d", "f", "ok"),
    [
        ("example.com", "example.com", True),
        ("example.com", "mail.example.com", True),
        ("mail.example.com", "example.com", True),
        ("example.com", "badexample.com", False),
        ("com", "example.com", False),
        ("evil.example", "example.com", False),
    ],
)
def test_alignment(d: str, f: str, ok: bool) -> None:
    assert aligned(d, f) is ok


def test_internal_is_a_person_s_address_or_an_internal_domain_exactly() -> None:
    people = {"alice@example.com"}
    assert is_internal("ALICE@example.com", people, [])
    assert is_internal("dev@corp.example", people, ["corp.example"])
    assert not is_internal("dev@evil.corp.example", people, ["corp.example"])
    assert not is_internal("mallory@evil.example", people, ["corp.example"])
    assert not is_internal(None, people, ["corp.example"])


def test_without_required_authentication_the_from_header_is_believed() -> None:
    sender = judge_sender(
        ALICE, [], person_addresses={ALICE}, internal_domains=(), authserv_id=None
    )
    assert sender.trusted
    forged = judge_sender(
        ALICE,
        [f"{MTA}; dmarc=fail"],
        person_addresses={ALICE},
        internal_domains=(),
        authserv_id=MTA,
    )
    assert forged.internal
    assert not forged.trusted


TRUSTED = Sender(ALICE, internal=True, authenticated=True, why="dmarc=pass")
PEOPLE = {"alice", "bob"}
ADDRESSES = {"alice@example.com": "alice", "bob@example.com": "bob"}
MAILBOX = {"support@example.com", "syncd@example.com"}


@pytest.mark.parametrize(
    ("argument", "sender", "person", "refused"),
    [
        ("bob", TRUSTED, "bob", None),
        ("bob@example.com", TRUSTED, "bob", None),
        ("me", TRUSTED, "alice", None),
        ("..", TRUSTED, None, "not a person id, a person's email handle or 'me'"),
        ("owner-x", TRUSTED, None, "not a person id"),
        ("support@example.com", TRUSTED, None, "the shared mailbox itself"),
        ("syncd@example.com", TRUSTED, None, "the shared mailbox itself"),
        ("mallory@evil.example", TRUSTED, None, "not a person id"),
        (
            "me",
            Sender("dev@corp.example", internal=True, authenticated=True, why=""),
            None,
            "not a person's email handle",
        ),
        (
            "bob",
            Sender(ALICE, internal=True, authenticated=False, why="mx.example.com says dmarc=fail"),
            None,
            "sender not authenticated (mx.example.com says dmarc=fail)",
        ),
        (
            "bob",
            Sender("carol@customer.org", internal=False, authenticated=True, why=""),
            None,
            "not an internal sender",
        ),
    ],
)
def test_assign_names_a_person_or_is_refused_with_a_reason(
    argument: str, sender: Sender, person: str | None, refused: str | None
) -> None:
    target = assign_target(
        argument,
        sender,
        people=PEOPLE,
        person_of_address=ADDRESSES,
        mailbox_addresses=MAILBOX,
    )
    assert target.person == person
    if refused is None:
        assert target.refused is None
    else:
        assert target.refused is not None
        assert refused in target.refused
