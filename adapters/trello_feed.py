"""Trello: a board's action feed, read as pure data. Where each board's feed stands (the
cursor), which cards its actions name, and when and by whom their members last changed.
No I/O: the adapter in syncd.adapters.trello asks for the actions and reads the cards.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.adapters.base import timestamp_or_none
from syncd.models import Cursor
from syncd.notes import is_syncd_text

ID = re.compile(r"^[0-9a-f]{24}$")  # a Trello object id: board, card, member, action

# An attachment added to a card is how Power-Ups link it to an issue elsewhere: the card is
# then read again, with its attachments.
ACTION_TYPES = (
    "addMemberToCard",
    "removeMemberFromCard",
    "updateCard",
    "createCard",
    "addAttachmentToCard",
)
COMMENT = "commentCard"  # read only with `commands` or `read_comments`
_MAX_COMMENT = 4000  # characters of a comment kept as activity
_MEMBER_ACTIONS = frozenset({"addMemberToCard", "removeMemberFromCard"})
ACTIONS_LIMIT = 1000  # Trello's maximum; a full answer may have left actions out


@dataclass(frozen=True)
class Mark:
    """Where one board's feed stands."""

    since: str | None = None  # newest action id read
    swept: datetime | None = None  # when its cards were last all read
    # Cards quarantined and not readable since: card id -> fingerprint of what was read.
    # A sweep reads them again unchanged; they are reported once, not every hour.
    bad: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    id: str
    type: str
    date: datetime
    card: str
    creator: str | None = None  # idMemberCreator: who did it
    text: str | None = None  # a comment's text
    kind: str | None = None  # as activity: comment, assign, state (list or archive), edit

    @property
    def by_syncd(self) -> bool:
        return self.type == COMMENT and is_syncd_text(self.text)


def resume(cursor: Cursor | None, boards: Sequence[str]) -> dict[str, Mark]:
    """Each configured board's mark from a stored cursor. What cannot be read starts that
    board over (a sweep), which is slow but changes nothing."""
    stored = cursor.get("boards") if isinstance(cursor, dict) else None
    marks = {}
    for board in boards:
        entry = stored.get(board) if isinstance(stored, dict) else None
        entry = entry if isinstance(entry, dict) else {}
        since = entry.get("since")
        bad = entry.get("quarantined")
        marks[board] = Mark(
            since if isinstance(since, str) and ID.match(since) else None,
            timestamp_or_none(entry.get("swept")),
            {
                k: v
                for k, v in (bad.items() if isinstance(bad, dict) else ())
                if isinstance(k, str) and isinstance(v, str)
            },
        )
    return marks


def cursor_of(marks: dict[str, Mark]) -> Cursor:
    boards: dict[str, Any] = {}
    for board, mark in marks.items():
        entry: dict[str, Any] = {}
        if mark.since is not None:
            entry["since"] = mark.since
        if mark.swept is not None:
            entry["swept"] = mark.swept.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if mark.bad:
            entry["quarantined"] = dict(mark.bad)
        boards[board] = entry
    return {"boards": boards}


def sweep_due(mark: Mark, now: datetime, every: timedelta, overflowed: bool) -> bool:
    return overflowed or mark.swept is None or now - mark.swept >= every


def changed_cards(actions: Sequence[Action]) -> list[str]:
    """The cards the actions touched, by the time of their latest action, oldest first.
    syncd's own comments change nothing: they are no reason to read a card."""
    latest: dict[str, datetime] = {}
    for action in actions:
        if action.by_syncd:
            continue
        if action.card not in latest or action.date > latest[action.card]:
            latest[action.card] = action.date
    return sorted(latest, key=lambda card: latest[card])


def owner_times(actions: Sequence[Action]) -> dict[str, tuple[datetime, str | None]]:
    """When each card's members last changed, and who changed them (the action's
    memberCreator), from its add/remove member actions."""
    times: dict[str, tuple[datetime, str | None]] = {}
    for action in actions:
        if action.type in _MEMBER_ACTIONS and (
            action.card not in times or action.date > times[action.card][0]
        ):
            times[action.card] = (action.date, action.creator)
    return times


def read_action(raw: object, types: Sequence[str] = ACTION_TYPES) -> Action | None:
    """An action that names a card, or None. Actions only say which cards to read, so one
    that cannot be read is skipped; the card still comes with the next sweep."""
    if not isinstance(raw, dict):
        return None
    action_id, kind = raw.get("id"), raw.get("type")
    data = raw.get("data")
    card = data.get("card") if isinstance(data, dict) else None
    card_id = card.get("id") if isinstance(card, dict) else None
    when = timestamp_or_none(raw.get("date"))
    if (
        not isinstance(action_id, str)
        or not ID.match(action_id)
        or kind not in types
        or not isinstance(card_id, str)
        or not ID.match(card_id)
        or when is None
    ):
        return None
    creator = raw.get("idMemberCreator")
    text = data.get("text") if isinstance(data, dict) else None
    return Action(
        action_id,
        str(kind),
        when,
        card_id,
        creator if isinstance(creator, str) and ID.match(creator) else None,
        text[:_MAX_COMMENT] if isinstance(text, str) else None,
        _activity_kind(str(kind), data if isinstance(data, dict) else {}),
    )


def _activity_kind(kind: str, data: dict[str, Any]) -> str | None:
    if kind == COMMENT:
        return "comment"
    if kind in _MEMBER_ACTIONS:
        return "assign"
    if kind == "updateCard":
        old = data.get("old")
        moved = "listAfter" in data or (isinstance(old, dict) and "closed" in old)
        return "state" if moved else "edit"
    return None
