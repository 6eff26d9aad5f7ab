"""Handoff commands written in comments: `/assign @login note`, `/assign person note`,
`/unassign note`. Pure: parsing a comment, and deciding what its author may cause.

The rules are the mailbox's: only a mapped person who is trusted by the tool (on GitHub, a
comment by an OWNER, MEMBER or COLLABORATOR) may hand off, and only to a person, a handle of
a person, or `me`. Quoted lines (`>`) and code (fenced blocks, indented lines, inline code)
never count, so quoting someone's command in a reply does not run it again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from syncd.people import Directory

MAX_NOTE = 1000
_COMMAND = re.compile(r"^ {0,3}/(assign|unassign)(?=\s|$)(.*)$", re.IGNORECASE)
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


@dataclass(frozen=True)
class Command:
    verb: Literal["assign", "unassign"]
    target: str | None  # as written: "@login", "person-id", "me"; None for /unassign
    note: str | None
    line: str  # the command line as written, bounded


@dataclass(frozen=True)
class Decision:
    """What a command does: hand the request to `owner` (None: unowned), or refuse."""

    ok: bool
    owner: str | None = None
    actor: str | None = None  # person id of the author, or kind:handle when unmapped
    note: str | None = None
    reason: str | None = None  # why it was refused, in words the commenter understands


def _live_lines(text: str) -> list[str | None]:
    """The comment's lines, with quoted and code lines replaced by None."""
    out: list[str | None] = []
    fenced = False
    for line in text.replace("\r\n", "\n").split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
            out.append(None)
        elif fenced or line.startswith(("    ", "\t")) or line.lstrip().startswith(">"):
            out.append(None)
        else:
            out.append(line)
    return out


def parse(text: str | None) -> Command | None:
    """The first command line of a comment, or None when it holds no command.

    The note is the rest of the command line after the target; when that is empty, the
    lines that follow (up to a blank line, quote, code or another command) are the note."""
    if not text:
        return None
    lines = _live_lines(text)
    for i, line in enumerate(lines):
        match = _COMMAND.match(line) if line is not None else None
        if line is None or match is None:
            continue
        verb: Literal["assign", "unassign"] = (
            "assign" if match.group(1).lower() == "assign" else "unassign"
        )
        rest = match.group(2).strip()
        target: str | None = None
        if verb == "assign":
            first, _, rest = rest.partition(" ")
            target, rest = first.strip() or None, rest.strip()
        note = rest
        if not note:
            following = []
            for nxt in lines[i + 1 :]:
                if nxt is None or not nxt.strip() or _COMMAND.match(nxt):
                    break
                following.append(nxt.strip())
            note = " ".join(following)
        # Inline code around the command would have been `...`; a line starting with a
        # backtick never matched, so only the note's own text is kept here.
        return Command(verb, target, note[:MAX_NOTE] or None, line.strip()[:200])
    return None


def without_note(text: str) -> str:
    """A comment reduced to its command line without the note, for a comment its author
    showed to a restricted audience (a Jira role or group): the command is the author's,
    but their words must not be carried to other tools as a handoff note."""
    command = parse(text)
    if command is None:
        return text
    return f"/assign {command.target or ''}".rstrip() if command.verb == "assign" else "/unassign"


_QUOTED = re.compile(r"^\s*(?:>\s*)+/(assign|unassign)(?=\s|$)", re.IGNORECASE)
_ANY = re.compile(r"^\s*`*\s*/(assign|unassign)(?=\s|$|`)", re.IGNORECASE)


def ignored_reason(text: str | None) -> str | None:
    """Why a comment that holds /assign only in a quote or in code runs nothing; None when
    it holds no such line at all. Said so that the commenter can see why nothing happened."""
    if not text or parse(text) is not None:
        return None
    lines = text.replace("\r\n", "\n").split("\n")
    if any(_QUOTED.match(line) for line in lines):
        return "the /assign is in a quote (>), which never runs as a command"
    if any(_ANY.match(line) for line in lines) or "`/assign" in text or "`/unassign" in text:
        return "the /assign is in code, which never runs as a command"
    return None


def resolve_target(target: str, author: str, kind: str, d: Directory) -> str | None:
    """The person a command's target names, or None: `me`, a person id, or a handle
    (`@login`, or bare) that a person in the config claims in this tool."""
    if target.lower() == "me":
        return author if author in d.people else None
    bare = target.removeprefix("@")
    if not target.startswith("@") and bare.lower() in d.people:
        return bare.lower()
    if bare and d.is_mapped(kind, bare):
        return d.owner_for(kind, bare)
    return None


def decide(
    command: Command,
    author_handle: str,
    trusted: bool,
    kind: str,
    d: Directory,
    edited: bool = False,
) -> Decision:
    """What a comment's command may cause, given who wrote it."""
    author = d.owner_for(kind, author_handle)
    if edited:
        # The tool names the comment's author, not who edited it, nor when the line was
        # written: a command that arrives in an edit has no known author.
        return Decision(
            False,
            actor=author,
            reason="the comment was edited before syncd read it; an edited comment gives no "
            "command (write the /assign in a new comment)",
        )
    if not d.is_mapped(kind, author_handle):
        return Decision(
            False,
            actor=author,
            reason=f"{author_handle} is not a person in syncd's config; only mapped people "
            "may hand off from comments",
        )
    if not trusted:
        return Decision(
            False,
            actor=author,
            reason=f"{author_handle} is not a member of this project (on GitHub: owner, "
            "member or collaborator); only members may hand off from comments",
        )
    if command.verb == "unassign":
        return Decision(True, owner=None, actor=author, note=command.note)
    if command.target is None:
        return Decision(
            False, actor=author, reason="/assign needs a target: @login, a person or me"
        )
    owner = resolve_target(command.target, author, kind, d)
    if owner is None:
        return Decision(
            False,
            actor=author,
            reason=f"{command.target} is not a person, a handle of a person, or me",
        )
    return Decision(True, owner=owner, actor=author, note=command.note)
