"""The comment command parser and its author rules (syncd.commands), and the handoff note's
words and policy (syncd.notes): pure functions, tested directly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from syncd import commands, notes
from syncd.config import Person
from syncd.people import Directory

D = Directory.build(
    [
        Person(id="alice", name="Alice Moreau", handles={"github": "alice-m", "jira": "acc-a"}),
        Person(id="bob", name="Bob Stone", handles={"github": "bobs", "trello": "bobstone"}),
    ]
)


@pytest.mark.parametrize(
    ("text", "verb", "target", "note"),
    [
        (
            "/assign @bobs covering while Alice is out",
            "assign",
            "@bobs",
            "covering while Alice is out",
        ),
        (
            "Thanks!\n/assign bob\nhe knows the CSS\nreally\n\nbye",
            "assign",
            "bob",
            "he knows the CSS really",
        ),
        ("/unassign back to the queue", "unassign", None, "back to the queue"),
        ("  /ASSIGN me", "assign", "me", None),
    ],
)
def test_a_command_line_is_read_with_its_note(
    text: str, verb: str, target: str | None, note: str | None
) -> None:
    command = commands.parse(text)
    assert command is not None
    assert (command.verb, command.target, command.note) == (verb, target, note)


@pytest.mark.parametrize(
    "text",
    [
        "> /assign @bobs please",  # a quote of someone else's command
        "```\n/assign @bobs\n```",  # a fenced code block
        "~~~\n/assign @bobs\n~~~",
        "    /assign @bobs",  # an indented code block
        "`/assign @bobs` is how you hand off",  # inline code
        "please /assign @bobs",  # not at the start of a line
        "/assignee @bobs",
        "",
    ],
)
def test_quotes_code_and_prose_hold_no_command(text: str) -> None:
    assert commands.parse(text) is None


def _decide(
    text: str, author: str, trusted: bool = True, kind: str = "github"
) -> commands.Decision:
    command = commands.parse(text)
    assert command is not None
    return commands.decide(command, author, trusted, kind, D)


def test_a_mapped_member_hands_off_to_a_handle_a_person_or_themself() -> None:
    assert _decide("/assign @bobs note", "alice-m") == commands.Decision(
        True, owner="bob", actor="alice", note="note"
    )
    assert _decide("/assign bob", "alice-m").owner == "bob"
    assert _decide("/assign me", "alice-m").owner == "alice"
    unassign = _decide("/unassign", "alice-m")
    assert unassign.ok
    assert unassign.owner is None


def test_outsiders_and_unknown_targets_are_refused_with_a_reason() -> None:
    outsider = _decide("/assign @bobs", "mallory")
    assert not outsider.ok
    assert outsider.actor == "github:mallory"
    assert "not a person in syncd's config" in (outsider.reason or "")
    untrusted = _decide("/assign @bobs", "alice-m", trusted=False)
    assert not untrusted.ok
    assert "member" in (untrusted.reason or "")
    nobody = _decide("/assign @zed", "alice-m")
    assert not nobody.ok
    assert "@zed is not a person" in (nobody.reason or "")
    # A handle in another tool's namespace is not a handle here.
    assert not _decide("/assign @bobstone", "alice-m").ok
    assert not _decide("/assign", "alice-m").ok


def test_a_note_comment_is_due_by_policy_and_never_where_the_handoff_was_made() -> None:
    assert notes.comment_due("with_note", "why", "jira", "github")
    assert not notes.comment_due("with_note", "  ", "jira", "github")
    assert notes.comment_due("always", None, "operator", "github")
    assert not notes.comment_due("never", "why", "jira", "github")
    assert not notes.comment_due("always", "why", "github", "github")


def test_the_note_says_who_owns_it_who_handed_it_over_where_when_and_why() -> None:
    facts = notes.HandoffFacts(
        request_key="REQ-4",
        title="Login fails",
        to_name="Bob Stone",
        from_name="Alice Moreau",
        actor_name="Alice Moreau",
        where="Jira OPS-7",
        at=datetime(2026, 1, 2, 10, 30, tzinfo=UTC),
        note="covering while Alice is out",
    )
    comment = notes.compose(facts, notes.marker_for("REQ-4", 17))
    text = notes.plain_text(comment)
    assert text.startswith(
        "REQ-4 (Login fails) is now owned by Bob Stone, handed over by Alice Moreau in Jira "
        "OPS-7 at 2026-01-02 10:30 UTC."
    )
    other = notes.compose(
        notes.HandoffFacts(
            "REQ-4", "Login fails", None, "Alice Moreau", "Carol", "Jira", None, None
        ),
        "m",
    )
    assert notes.plain_text(other) == (
        "REQ-4 (Login fails) is now owned by nobody, handed over from Alice Moreau by Carol in Jira."
    )
    assert "Note: covering while Alice is out" in text
    assert comment.marker == "syncd:handoff:REQ-4:17"
    assert notes.is_syncd_text(f"hello <!-- {comment.marker} -->")
    assert not notes.is_syncd_text("hello")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("> /assign @bobs please", "quote"),
        ("```\n/assign @bobs\n```", "code"),
        ("`/assign @bobs`", "code"),
        ("just words", None),
        ("/assign @bobs", None),  # a command: nothing ignored
    ],
)
def test_a_quoted_or_code_command_is_ignored_with_a_reason(text: str, reason: str | None) -> None:
    got = commands.ignored_reason(text)
    assert (got is None) == (reason is None)
    if reason is not None:
        assert reason in (got or "")
