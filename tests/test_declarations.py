"""Declared identity versus mentions, on phrasing taken from real issue, ticket and mail text."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.config import parse_config
from syncd.crossref import (
    DEFAULT_LABELS,
    MAX_KEYS,
    References,
    Rules,
    item_key,
    read_references,
    title_declaration,
)
from syncd.errors import ConfigError

OPS = Rules.build(jira_projects=["OPS", "STREAMPIPES", "ARROW", "FOO", "DOCK", "JIRA"])


@pytest.mark.parametrize(
    ("title", "body", "declared"),
    [
        # a key or item URL in brackets at the start of the title
        ("[OPS-7] Login fails", "", "jira:OPS-7"),
        ("  [acme/api#12] Login fails", "", "github:acme/api#12"),
        ("[Bug] [OPS-7] Login fails", "", "jira:OPS-7"),
        ("[https://github.com/acme/api/issues/3] mirror", "", "github:acme/api#3"),
        ("[REQ-42] printer on fire", "", "req:42"),
        # the colon form, for a project a Jira source holds
        ("OPS-7: Login fails", "", "jira:OPS-7"),
        # declaring lines
        ("Login fails", "Jira: OPS-7", "jira:OPS-7"),
        ("Login fails", "JIRA Issue: OPS-7", "jira:OPS-7"),
        ("Login fails", "Jira ticket: https://acme.atlassian.net/browse/OPS-7", "jira:OPS-7"),
        ("Login fails", "**Jira:** [OPS-7](https://acme.atlassian.net/browse/OPS-7)", "jira:OPS-7"),
        ("Login fails", "GitHub: acme/api#12", "github:acme/api#12"),
        (
            "Login fails",
            "GitHub issue: https://github.com/acme/api/issues/12",
            "github:acme/api#12",
        ),
        ("Login fails", "Trello: https://trello.com/c/AbCd1234/7-login", "trello:AbCd1234"),
        ("Login fails", "Tracked in OPS-7", "jira:OPS-7"),
        ("Login fails", "Tracked as acme/api#12 upstream", "github:acme/api#12"),
        ("Login fails", "Same as OPS-7", "jira:OPS-7"),
        ("Login fails", "Mirror of acme/api#12", "github:acme/api#12"),
        ("Login fails", "Mirrors https://github.com/acme/api/issues/12", "github:acme/api#12"),
        (
            "Login fails",
            "Migrated to Jira: https://issues.apache.org/jira/browse/ARROW-9",
            "jira:ARROW-9",
        ),
        ("Login fails", "Imported from Jira OPS-7", "jira:OPS-7"),
        ("Login fails", "Synchronized with OPS-7", "jira:OPS-7"),
        ("Login fails", "Request: REQ-42", "req:42"),
        ("Login fails", "- Tracked in: STREAMPIPES-651", "jira:STREAMPIPES-651"),
        (
            "Login fails",
            "Steps...\n\n\u2506Issue is synchronized with this [Jira Task]"
            "(https://foo.atlassian.net/browse/FOO-12) by [Unito](https://www.unito.io)",
            "jira:FOO-12",
        ),
        (
            "Login fails",
            "**Note**: *This issue was originally created as [ARROW-1234]"
            "(https://issues.apache.org/jira/browse/ARROW-1234). Please see the migration notes.*",
            "jira:ARROW-1234",
        ),
        (
            "Login fails",
            "This issue is mirrored in our internal Jira: https://acme.atlassian.net/browse/OPS-3",
            "jira:OPS-3",
        ),
        # Unito's footers, as they appear in public issues
        (
            "Login fails",
            "some comment\n\n\u2506Issue is synchronized with this [Jira Story]"
            "(https://mock-jira.atlassian.net/browse/JIRA-5)\n\u2506Project Name: Test-Project\n"
            "\u2506Issue Number: JIRA-5\n",
            "jira:JIRA-5",
        ),
        (
            "Login fails",
            "\u2506Issue is synchronized with this Jira Story\n\u2506Fix Versions: Dockstore 1.16\n"
            "\u2506Issue Number: DOCK-2519\n\u2506Sprint: 136 - Izmir",
            "jira:DOCK-2519",
        ),
        (
            "Login fails",
            "- Jira issue: https://acme.atlassian.net/browse/SCRUM-201",
            "jira:SCRUM-201",
        ),
    ],
)
def test_each_declaring_form_declares(title: str, body: str, declared: str) -> None:
    refs = read_references(title, body, OPS)
    assert refs.declared == (declared,)
    assert declared not in refs.mentions


@pytest.mark.parametrize(
    ("title", "body", "kinds"),
    [
        ("Login fails", "Blocked by OPS-7.", {"jira:OPS-7": "blocked_by"}),
        (
            "Login fails",
            "This blocks acme/api#3 and OPS-8",
            {"github:acme/api#3": "blocks", "jira:OPS-8": "blocks"},
        ),
        ("Sub-task of OPS-7", "", {"jira:OPS-7": "parent"}),
        ("Login fails", "Closed as duplicate of acme/api#9", {"github:acme/api#9": "duplicate_of"}),
        (
            "Login fails",
            "See also rust-lang/rust#101548",
            {"github:rust-lang/rust#101548": "related"},
        ),
        (
            "Login fails",
            "## Related issues\n- OPS-1\n- https://github.com/acme/api/issues/4\n",
            {"jira:OPS-1": "related", "github:acme/api#4": "related"},
        ),
        (
            "Login fails",
            "Depends on OPS-2. Then OPS-3 needs a look",
            {"jira:OPS-2": "blocked_by", "jira:OPS-3": None},
        ),
        # a mention in prose, with no phrase: no kind
        ("Login fails", "Alice hit this while working on OPS-7 yesterday", {"jira:OPS-7": None}),
        # a key typed into a declaring label mid-sentence is prose, not a declaration
        ("Login fails", "We talked about it, and Jira: OPS-7 came up", {"jira:OPS-7": None}),
        (
            "Login fails",
            "GitHub issue acme/api#3 is blocked by OPS-7",
            {"github:acme/api#3": None, "jira:OPS-7": "blocked_by"},
        ),
        ("Login fails", "Jira is down again, see OPS-7", {"jira:OPS-7": "related"}),
        (
            "Login fails",
            "Related Jira issue: https://issues.apache.org/jira/browse/OPS-257",
            {"jira:OPS-257": "related"},
        ),
        ("Login fails", "You just mentioned this Jira issue: OPS-8", {"jira:OPS-8": None}),
        # code, quotes, stack traces and indented blocks never declare
        ("Login fails", "```\nJira: OPS-7\n```", {"jira:OPS-7": None}),
        ("Login fails", "{code}\nJira: OPS-7\n{code}", {"jira:OPS-7": None}),
        ("Login fails", "> Jira: OPS-7\n> (quoted from the customer)", {"jira:OPS-7": None}),
        ("Login fails", "    Jira: OPS-7", {"jira:OPS-7": None}),
        (
            "Login fails",
            'Traceback (most recent call last):\n  File "x.py", line 3, in OPS-7',
            {"jira:OPS-7": None},
        ),
    ],
)
def test_relations_are_mentions_never_declarations(
    title: str, body: str, kinds: dict[str, str | None]
) -> None:
    refs = read_references(title, body, OPS)
    assert refs.declared == ()
    assert refs.mentions == tuple(kinds)
    assert dict(refs.relation_kinds) == {k: v for k, v in kinds.items() if v is not None}


@pytest.mark.parametrize(
    ("title", "body"),
    [
        ("NO-JIRA: fix a typo in the README", ""),
        ("NO-JIRA: fix a typo", "NO-JIRA: this is a trivial change"),
        ("ORA-00942: table or view does not exist", ""),
        (
            "Query fails",
            "java.sql.SQLSyntaxErrorException: ORA-00942: table or view does not exist\n"
            "\tat oracle.jdbc.driver.T4CTTIoer11.processError(T4CTTIoer11.java:494)\n",
        ),
        ("UTF-8 names are garbled", "Names in UTF-8 come back as ISO-8859-1; SHA-256 differs"),
        ("[UTF-8] names are garbled", "Fixes CVE-2021-44228 (CWE-502), see RFC-7231 and KIP-4"),
        ("GPT-4 answers", "Replace PROJ-123 with your key, like KEP-1287 does"),
        ("[WIP] login", "Request for comments on the approach"),
        ("[OPS-7, OPS-8] login", ""),
    ],
)
def test_look_alikes_and_non_labels_declare_nothing(title: str, body: str) -> None:
    # Without known projects the denylist applies; with them, only their keys count.
    for rules in (Rules(), OPS):
        assert read_references(title, body, rules).declared == ()


def test_known_projects_decide_bare_keys() -> None:
    text = "see OPS-7 and ZZZ-9 and https://acme.atlassian.net/browse/ZZZ-10"
    # unknown projects: every non-denylisted key; known: only theirs (URLs always count)
    assert read_references("x", text).mentions == ("jira:OPS-7", "jira:ZZZ-9", "jira:ZZZ-10")
    assert read_references("x", text, OPS).mentions == ("jira:OPS-7", "jira:ZZZ-10")
    # a real project named like a look-alike counts once a source holds it
    assert read_references("x", "see SQL-3", Rules.build(jira_projects=["SQL"])).mentions == (
        "jira:SQL-3",
    )


def test_colon_title_needs_a_known_project() -> None:
    assert title_declaration("OPS-7: Login fails", Rules()) is None
    assert title_declaration("OPS-7: Login fails", OPS) == "jira:OPS-7"
    assert title_declaration("OPS-7 Login fails", OPS) is None
    assert title_declaration("Re: OPS-7: Login fails", OPS) is None


def test_configured_labels_add_to_the_defaults() -> None:
    rules = Rules.build(extra_labels=["Ticket:", "Kundenticket"], jira_projects=["OPS"])
    assert rules.labels[: len(DEFAULT_LABELS)] == DEFAULT_LABELS
    assert read_references("x", "Ticket: OPS-7", rules).declared == ("jira:OPS-7",)
    assert read_references("x", "Kundenticket: OPS-8", rules).declared == ("jira:OPS-8",)
    # a noun label needs its colon
    assert read_references("x", "Ticket OPS-7 is related", rules).declared == ()
    assert read_references("x", "Ticket: OPS-7", OPS).declared == ()


def test_own_keys_are_neither_declared_nor_mentioned() -> None:
    refs = read_references("[OPS-7] x", "Jira: OPS-7\nsee OPS-8", OPS, own=["jira:OPS-7"])
    assert refs == References((), ("jira:OPS-8",), (("jira:OPS-8", "related"),))


def test_an_author_who_may_not_declare_only_mentions() -> None:
    refs = read_references("[OPS-7] x", "Jira: OPS-8", OPS, declaring=False)
    assert refs.declared == ()
    assert refs.mentions == ("jira:OPS-7", "jira:OPS-8")


def test_one_declaration_per_line_and_title_first() -> None:
    refs = read_references("[OPS-1] x", "Tracked in OPS-2, blocked by OPS-3\nJira: OPS-4", OPS)
    assert refs.declared == ("jira:OPS-1", "jira:OPS-2", "jira:OPS-4")
    assert refs.relation_kinds == (("jira:OPS-3", "blocked_by"),)


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://github.com/Acme/API/issues/12", "github:acme/api#12"),
        ("https://github.com/acme/api/issues/12#issuecomment-1", "github:acme/api#12"),
        ("https://acme.atlassian.net/browse/OPS-7", "jira:OPS-7"),
        (
            "https://issues.apache.org/jira/browse/STREAMPIPES-651?focusedId=1",
            "jira:STREAMPIPES-651",
        ),
        ("https://trello.com/c/AbCd1234/12-login", "trello:AbCd1234"),
        ("https://github.com/acme/api/pull/12", None),
        ("https://example.com/search?q=OPS-7", None),
        ("https://example.com/docs/acme/api#12", None),
        ("https://trello.com/b/AbCd1234/board", None),
        ("ftp://github.com/acme/api/issues/12", None),
        ("see https://github.com/acme/api/issues/12", None),
        ("https://github.com/acme/api/issues/12x", None),
    ],
)
def test_item_key_of_a_link_field(url: str, key: str | None) -> None:
    assert item_key(url) == key


# -- property: relation phrases never declare; one declaration declares exactly its key -----

_KEYS = st.sampled_from(
    [
        ("OPS-7", "jira:OPS-7"),
        ("OPS-12", "jira:OPS-12"),
        ("STREAMPIPES-651", "jira:STREAMPIPES-651"),
        ("acme/api#3", "github:acme/api#3"),
        ("https://github.com/acme/web/issues/9", "github:acme/web#9"),
        ("https://acme.atlassian.net/browse/OPS-30", "jira:OPS-30"),
        ("https://trello.com/c/AbCd1234/5-card", "trello:AbCd1234"),
        ("REQ-4", "req:4"),
    ]
)
_RELATIONS = st.sampled_from(
    [
        "blocked by {k}",
        "Blocked by {k}.",
        "This blocks {k}",
        "depends on {k}",
        "Sub-task of {k}",
        "subtask of {k}",
        "duplicate of {k}",
        "Closed as duplicate of {k}",
        "See also {k}",
        "see {k}",
        "related to {k}",
        "cf. {k}",
        "- {k}",
        "* {k} (similar)",
        "Alice hit this while working on {k}",
        "the fix for {k} broke this",
        "> Jira: {k}",
        "```\nTracked in {k}\n```",
        "    Same as {k}",
        "NO-JIRA: {k}",
        "{k}",
        "Related issues:\n- {k}",
        "caused by {k}, which is Jira: {k} in the old tracker",
        "GitHub issue {k} is blocked by it",
    ]
)
_NOISE = st.sampled_from(
    ["", "Login fails.", "UTF-8 and SHA-256", "ORA-00942: no table", "Steps:", "Thanks!"]
)
_DECLARATIONS = st.sampled_from(
    ["Jira: {k}", "Tracked in {k}", "Same as {k}", "Mirror of {k}", "Imported from Jira {k}"]
)


@st.composite
def _relation_text(draw: st.DrawFn) -> tuple[str, str]:
    lines = []
    for _ in range(draw(st.integers(1, 8))):
        phrase = draw(_RELATIONS)
        text, _ = draw(_KEYS)
        lines.append(draw(_NOISE) + (" " if draw(st.booleans()) else "\n") + phrase.format(k=text))
    title_phrase = draw(st.sampled_from(["Login fails", "Blocked by {k}", "Follow-up to {k}"]))
    return title_phrase.format(k=draw(_KEYS)[0]), "\n".join(lines)


@settings(max_examples=300, deadline=None)
@given(_relation_text())
def test_relation_phrases_never_declare(text: tuple[str, str]) -> None:
    title, body = text
    for rules in (Rules(), OPS):
        assert read_references(title, body, rules).declared == ()


@settings(max_examples=300, deadline=None)
@given(_relation_text(), _DECLARATIONS, _KEYS, st.integers(0, 8))
def test_one_declaration_declares_exactly_its_key(
    text: tuple[str, str], form: str, key: tuple[str, str], where: int
) -> None:
    title, body = text
    lines = body.split("\n")
    # Insert it between lines, outside any code fence the relations opened.
    fences = [i for i, line in enumerate(lines) if "```" in line]
    spots = [i for i in range(len(lines) + 1) if sum(f < i for f in fences) % 2 == 0]
    spot = spots[where % len(spots)]
    lines.insert(spot, form.format(k=key[0]))
    refs = read_references(title, "\n".join(lines), OPS)
    assert refs.declared == (key[1],)


def test_hostile_text_is_read_in_linear_time() -> None:
    texts = [
        "see " * 16000 + "OPS-7",
        ("blocked by OPS-1. " * 4000),
        "Jira:" + " this" * 20000 + " OPS-7",
        "- " * 30000,
        "Tracked in " + "[" * 30000,
        "https://x/" + "a/" * 30000 + "browse/OPS-1",
        "\n".join(["```"] * 30000),
    ]
    for text in texts:
        started = time.monotonic()
        read_references(text[:300], text, OPS)
        assert time.monotonic() - started < 2.0, text[:40]


@pytest.mark.parametrize("label", ["", " : ", "1234", "x" * 61])
def test_configured_labels_must_be_words(label: str) -> None:
    with pytest.raises(ConfigError, match="is not a label"):
        parse_config({"matching": {"declare_labels": ["Ticket", label]}}, resolve=False)


def test_a_flood_of_mentions_does_not_push_out_a_declaration() -> None:
    body = " ".join(f"OPS-{n}" for n in range(1, 200)) + "\nJira: OPS-999"
    refs = read_references("x", body, OPS)
    assert refs.declared == ("jira:OPS-999",)
    assert len(refs.mentions) == MAX_KEYS
