"""Jira: what an issue's changelog says, read as pure data. Who changed the assignee and
when (the owner change time that decides conflicts, and its actor), and assignee and status
changes as activity. Entries that cannot be read are left out: the worst outcome is an
unknown time, never a wrong one. The adapter in syncd.adapters.jira fetches the changelog.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from syncd.adapters.base import timestamp_or_none
from syncd.models import Activity

CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # never part of a user id, name or query

# An issue's assignee history: (time, new assignee id, author id) for each change.
History = tuple[tuple[datetime, str | None, str | None], ...]


def owner_change(
    history: History, owner_ids: frozenset[str], created: datetime | None
) -> tuple[datetime | None, str | None]:
    """When the current assignee got the issue, and who made that change (the changelog
    entry's author), from its assignee history.

    No assignee change at all: the assignee has been the same since the issue was created
    (by whom, the changelog does not say). A last change that does not lead to the current
    assignee: the history is behind the issue, and time and actor are unknown.
    """
    if not history:
        return created, None
    at, to, author = max(history, key=lambda h: h[0])
    if (to is None and not owner_ids) or (to is not None and to in owner_ids):
        return at, author
    return None, None


def owner_change_time(
    history: History, owner_ids: frozenset[str], created: datetime | None
) -> datetime | None:
    return owner_change(history, owner_ids, created)[0]


def user_id(raw: object, cloud: bool) -> str | None:
    """The handle of a user object: accountId on Cloud, the user name on Data Center."""
    value = raw.get("accountId" if cloud else "name") if isinstance(raw, dict) else None
    if not isinstance(value, str) or not value or len(value) > 128 or CONTROL.search(value):
        return None
    return value


def _changes(
    raw: object, cloud: bool
) -> Iterator[tuple[dict[str, Any], datetime, str | None, object, dict[str, Any]]]:
    """(entry, time, author, field id, item) for each item of the changelog entries that
    can be read; an entry without a readable time is left out, its author may be None."""
    for entry in raw if isinstance(raw, list) else ():
        if not isinstance(entry, dict):
            continue
        at = timestamp_or_none(entry.get("created"))
        items = entry.get("items")
        if at is None or not isinstance(items, list):
            continue
        author = user_id(entry.get("author"), cloud)
        for item in items:
            if isinstance(item, dict):
                yield entry, at, author, item.get("fieldId", item.get("field")), item


def assignee_changes(
    raw: object, cloud: bool = True
) -> list[tuple[datetime, str | None, str | None]]:
    """(time, new assignee id, author) for each assignee change in a list of changelog
    entries. Entries that cannot be read are left out: the worst outcome is an unknown time."""
    out: list[tuple[datetime, str | None, str | None]] = []
    for _, at, author, field_id, item in _changes(raw, cloud):
        to = item.get("to")
        if field_id == "assignee" and (to is None or isinstance(to, str)):
            out.append((at, to, author))
    return out


def history_activity(raw: object, cloud: bool = True) -> list[Activity]:
    """Assignee changes ("assign") and status changes ("state") in changelog entries, as
    activity by the entry's author. Entries without a readable author or time are left out."""
    out: list[Activity] = []
    for entry, at, author, field_id, _ in _changes(raw, cloud):
        kind = {"assignee": "assign", "status": "state"}.get(str(field_id))
        if kind is not None and author is not None:
            out.append(Activity(actor=author, at=at, kind=kind, id=f"{entry.get('id')}:{kind}"))
    return out


def inline_activity(raw: object) -> tuple[Activity, ...]:
    histories = raw.get("histories") if isinstance(raw, dict) else None
    return tuple(history_activity(histories, cloud=False))


def inline_history(raw: object, cloud: bool = False) -> History:
    histories = raw.get("histories") if isinstance(raw, dict) else None
    return tuple(assignee_changes(histories, cloud))
