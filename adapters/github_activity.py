"""GitHub: who changed an issue's assignees and when (issue events), and what people said
(the repository's comment feed). Pure parsing and bookkeeping; the adapter does the I/O.

Owner changes. ``updated_at`` moves on any edit, so it cannot date an owner change. When an
issue's assignees differ from the ones syncd last saw, its events
(``GET /repos/{o}/{r}/issues/{n}/events``) are read, and the latest ``assigned`` or
``unassigned`` event gives the exact time and the actor. What syncd last saw of each issue's
assignees is kept in the adapter's keyed state in the ledger (key ``a:<number>``), committed
with the page: unlike a cache in the cursor it forgets nothing, and unlike comparing with
the previous page it survives restarts. Only issues whose assignees changed cost a request,
so a quiet cycle stays at one.

Comments. With ``commands`` or ``read_comments``, each cycle first reads
``GET /repos/{o}/{r}/issues/comments?since=…&sort=updated&direction=asc`` conditionally: one
more request per cycle, answered 304 when nothing was said. The feed's place is kept in the
cursor under ``"comments"``: ``{"since": ts, "seen": [ids at since], "etag": …}``. The first
pull starts the feed at the current time: old comments are history, not commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncd.adapters.base import Unreadable
from syncd.models import Activity, Cursor
from syncd.notes import is_syncd_text

TRUSTED_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
MAX_TEXT = 4000  # characters of a comment kept as activity: commands sit in the first lines
MAX_SEEN = 500


def _login(user: object) -> str | None:
    login = user.get("login") if isinstance(user, dict) else None
    return login if isinstance(login, str) and 0 < len(login) <= 100 else None


def latest_assignment(
    events: list[Any], owners: tuple[str, ...], parse_time: Any
) -> tuple[str | None, datetime | None]:
    """(actor login, time) of the latest assigned/unassigned event, when it explains the
    assignees the issue shows now; (None, None) when the events lag behind the issue."""
    latest: tuple[datetime, int, dict[str, Any]] | None = None
    for raw in events:
        if not isinstance(raw, dict) or raw.get("event") not in ("assigned", "unassigned"):
            continue
        try:
            at = parse_time(raw.get("created_at"))
        except Unreadable:
            continue
        raw_id = raw.get("id")
        ident = raw_id if isinstance(raw_id, int) else 0
        if latest is None or (at, ident) > latest[:2]:
            latest = (at, ident, raw)
    if latest is None:
        return None, None
    at, _, raw = latest
    assignee = _login(raw.get("assignee"))
    current = {o.lower() for o in owners}
    explained = assignee is not None and (
        (raw["event"] == "assigned") == (assignee.lower() in current)
    )
    return (_login(raw.get("actor")), at) if explained else (None, None)


@dataclass
class CommentFeed:
    """Where the repository's comment feed stands."""

    since: str | None
    seen: set[int] = field(default_factory=set)
    etag: str | None = None
    start: tuple[str | None, frozenset[int]] = (None, frozenset())

    @classmethod
    def resume(cls, cursor: Cursor | None, now: str) -> CommentFeed:
        raw = cursor.get("comments") if isinstance(cursor, dict) else None
        if not isinstance(raw, dict) or not isinstance(raw.get("since"), str):
            return cls(now, start=(None, frozenset()))
        seen = {i for i in raw.get("seen", []) if type(i) is int}
        etag = raw.get("etag") if isinstance(raw.get("etag"), str) else None
        return cls(raw["since"], seen, etag, start=(raw["since"], frozenset(seen)))

    @property
    def unmoved(self) -> bool:
        return (self.since, frozenset(self.seen)) == self.start

    def record(self, comment_id: int, updated: str) -> bool:
        """Note one comment read; False when it was read before (the boundary repeats)."""
        if self.since is not None and updated < self.since:
            return False
        if updated == self.since:
            if comment_id in self.seen:
                return False
        else:
            self.since, self.seen = updated, set()
        if len(self.seen) < MAX_SEEN:
            self.seen.add(comment_id)
        return True

    def cursor(self, etag: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"since": self.since, "seen": sorted(self.seen)}
        if etag is not None:
            out["etag"] = etag
        return out


def read_comment(raw: object, parse_time: Any) -> tuple[int, int, str, Activity] | None:
    """(issue number, comment id, updated_at as sent, Activity) of one comment; None for
    one that cannot be read (a comment is evidence of activity, never worth a quarantine)."""
    if not isinstance(raw, dict):
        return None
    comment_id, issue_url, updated = raw.get("id"), raw.get("issue_url"), raw.get("updated_at")
    login = _login(raw.get("user"))
    if type(comment_id) is not int or not isinstance(issue_url, str) or login is None:
        return None
    number = issue_url.rstrip("/").rpartition("/")[2]
    if not number.isdigit() or not isinstance(updated, str):
        return None
    try:
        created = parse_time(raw.get("created_at"))
    except Unreadable:
        return None
    raw_body = raw.get("body")
    body = raw_body if isinstance(raw_body, str) else ""
    association = raw.get("author_association")
    activity = Activity(
        actor=login,
        at=created,
        kind="comment",
        id=str(comment_id),
        text=body[:MAX_TEXT],
        trusted=association in TRUSTED_ASSOCIATIONS,
        by_syncd=is_syncd_text(body),
        edited=updated != raw.get("created_at"),
    )
    return int(number), comment_id, updated, activity


def marker_comment(comments: list[Any], marker: str) -> str | None:
    """The id of a comment carrying syncd's hidden marker, written by a trusted account (an
    outsider's copy of a marker must not stop syncd's own comment)."""
    hidden = f"<!-- {marker} -->"
    for raw in comments:
        if (
            isinstance(raw, dict)
            and isinstance(raw.get("body"), str)
            and hidden in raw["body"]
            and raw.get("author_association") in TRUSTED_ASSOCIATIONS
            and type(raw.get("id")) is int
        ):
            return str(raw["id"])
    return None


def group_activity(items: Mapping[int, list[Activity]], number: int) -> tuple[Activity, ...]:
    return tuple(sorted(items.get(number, ()), key=lambda a: a.at))
