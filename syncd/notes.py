"""Handoff notes as comments in the tools where teams work: what they say, and when one is due.

Pure: the outbox gathers the facts from the ledger and the config, these functions decide and
word the comment, and the adapter renders it in its tool's format and posts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from syncd.models import Comment

MARKER_PREFIX = "syncd:handoff:"
TOOL_NAMES = {"github": "GitHub", "jira": "Jira", "trello": "Trello", "email": "the mailbox"}


def marker_for(request_key: str, event_id: int) -> str:
    """The marker of the comment telling of one handoff: unique per handoff, stable across
    retries, so a retry after a lost answer finds the comment instead of posting it again."""
    return f"{MARKER_PREFIX}{request_key}:{event_id}"


def is_syncd_text(text: str | None) -> bool:
    """Whether a comment carries syncd's marker: syncd's own, never a person's change."""
    return text is not None and MARKER_PREFIX in text


def comment_due(policy: str, note: str | None, origin: str, source: str) -> bool:
    """Whether a handoff gets a comment in `source`. Never where the handoff was made: the
    people there saw it happen (and a command's note is already the comment they wrote)."""
    if origin == source or policy == "never":
        return False
    return policy == "always" or bool(note and note.strip())


@dataclass(frozen=True)
class HandoffFacts:
    request_key: str
    title: str
    to_name: str | None  # None: the request is now unowned
    from_name: str | None
    actor_name: str | None  # who handed it over, when known
    where: str  # "GitHub acme/api#1", "Jira", "syncd (operator)"
    at: datetime | None  # when, at the source
    note: str | None
    links: tuple[tuple[str, str], ...] = ()  # other items the audience may see


def where_text(origin: str, origin_kind: str | None, origin_ref: str | None, shown: bool) -> str:
    """Where the handoff was made, naming the item only when its link may be shown."""
    if origin_kind is None:
        return {"operator": "the syncd CLI", "routing": "syncd's routing"}.get(
            origin, f"syncd ({origin})"
        )
    tool = TOOL_NAMES.get(origin_kind, origin_kind)
    return f"{tool} {origin_ref}" if shown and origin_ref else tool


def compose(facts: HandoffFacts, marker: str) -> Comment:
    """The comment's words: who owns the request now, who handed it over, where, when, why."""
    owner = facts.to_name or "nobody"
    head = f"{facts.request_key} ({facts.title}) is now owned by {owner}"
    if facts.from_name and facts.actor_name == facts.from_name:
        head += f", handed over by {facts.from_name}"
    else:
        if facts.from_name:
            head += f", handed over from {facts.from_name}"
        if facts.actor_name:
            head += f" by {facts.actor_name}"
    head += f" in {facts.where}"
    if facts.at is not None:
        head += f" at {facts.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    paragraphs = [head + "."]
    if facts.note and facts.note.strip():
        paragraphs.append(f"Note: {facts.note.strip()}")
    return Comment(marker=marker, paragraphs=tuple(paragraphs), links=facts.links)


def plain_text(comment: Comment) -> str:
    """The comment as plain text lines, for tools that take text (Trello, GitHub)."""
    lines = list(comment.paragraphs)
    if comment.links:
        lines.append("Also tracked in: " + ", ".join(f"{lbl} {url}" for lbl, url in comment.links))
    return "\n\n".join(lines)
