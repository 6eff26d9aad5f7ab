"""What the board shows, read from the ledger: lanes, stale work, the handoff feed, a
request's page. Plain dicts for the templates and the feed's JSON.

Everything here takes a read-only Ledger; the decisions (what is stale, which lane a request
goes in, what a filter keeps) are small pure functions over the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from syncd.config import Team
from syncd.ledger import Ledger, parse_iso
from syncd.models import STATES
from syncd.queries import OPEN_STATES, awaiting_acceptance, list_requests, source_status

UNOWNED = ""  # the lane of requests nobody owns
FEED_SIZE = 40


@dataclass(frozen=True)
class Filters:
    """The board's filters, as held in the URL so a view can be shared."""

    team: str | None = None
    person: str | None = None
    source: str | None = None
    states: tuple[str, ...] = ()

    @classmethod
    def from_query(cls, query: Mapping[str, str], states: Iterable[str]) -> Filters:
        def one(name: str) -> str | None:
            value = (query.get(name) or "").strip()
            return value[:100] or None

        chosen = tuple(s for s in states if s in STATES)
        return cls(one("team"), one("person"), one("source"), chosen)

    def effective_states(self) -> tuple[str, ...]:
        return self.states or OPEN_STATES


@dataclass
class Lane:
    owner: str  # UNOWNED for the unowned lane
    name: str
    cards: list[dict[str, Any]] = field(default_factory=list)


def safe_url(url: str | None) -> str | None:
    """A tool link the page may make clickable: http(s) only, so an item's URL can never be
    a javascript: or data: link."""
    if not url:
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def team_members(teams: Sequence[Team], team: str | None) -> set[str] | None:
    if team is None:
        return None
    for t in teams:
        if t.id == team:
            return set(t.members)
    return set()


def lanes(cards: Iterable[dict[str, Any]]) -> list[Lane]:
    """One lane per owner, the unowned lane first, then by the owner's name."""
    by_owner: dict[str, Lane] = {}
    for card in cards:
        owner = card["owner"] or UNOWNED
        name = card["owner_name"] or card["owner"] or "Unowned"
        by_owner.setdefault(owner, Lane(owner, name)).cards.append(card)
    unowned = [by_owner.pop(UNOWNED)] if UNOWNED in by_owner else [Lane(UNOWNED, "Unowned")]
    return unowned + sorted(by_owner.values(), key=lambda lane: lane.name.lower())


def is_stale(card: Mapping[str, Any], now: datetime, stale_after: timedelta) -> bool:
    last = parse_iso(card.get("last_activity_at"))
    return last is not None and now - last > stale_after


def board(
    ledger: Ledger,
    *,
    now: datetime,
    filters: Filters,
    teams: Sequence[Team],
    stale_after: timedelta,
    accept_within: Callable[[str], timedelta | None] | None,
) -> dict[str, Any]:
    """Everything the board page shows for these filters."""
    members = team_members(teams, filters.team)
    all_open = list_requests(ledger, now=now, source=filters.source, states=STATES)
    waiting = {w["key"]: w for w in awaiting_acceptance(ledger, now=now, within=accept_within)}
    counts = {s: 0 for s in STATES}
    cards = []
    for row in all_open:
        if filters.person is not None and row["owner"] != filters.person:
            continue
        if members is not None and row["owner"] not in members:
            continue
        counts[row["state"]] += 1
        if row["state"] not in filters.effective_states():
            continue
        w = waiting.get(row["key"])
        cards.append(
            {
                **row,
                "stale": row["state"] in OPEN_STATES and is_stale(row, now, stale_after),
                "awaiting": w is not None,
                "overdue": bool(w and w["overdue"]),
                "waiting_seconds": w["waiting_seconds"] if w else None,
            }
        )
    shown = {c["key"] for c in cards}
    return {
        "lanes": lanes(cards),
        "counts": counts,
        "total": len(cards),
        "awaiting": [w for k, w in waiting.items() if k in shown],
        "stale": sorted(
            (c for c in cards if c["stale"]), key=lambda c: c["last_activity_at"] or ""
        ),
    }


_FEED_SQL = """
SELECT event_id, happened_at, recorded_at, request, title, from_owner, from_name,
       to_owner, to_name, "where", actor, why
FROM handoff_log
WHERE event_id > :after
ORDER BY event_id DESC
LIMIT :limit
"""


def feed(ledger: Ledger, *, after: int = 0, limit: int = FEED_SIZE) -> list[dict[str, Any]]:
    """The latest handoffs, newest first: who, to whom, where, when, why."""
    cur = ledger.conn.execute(_FEED_SQL, {"after": after, "limit": limit})
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


_RELATIONS_SQL = """
SELECT DISTINCT 'mentions' AS direction, k.key AS item, other.key AS request
FROM links l
JOIN link_keys k ON k.link_id = l.id AND k.role = 'mention'
LEFT JOIN link_keys s ON s.key = k.key AND s.role = 'self'
LEFT JOIN links ol ON ol.id = s.link_id
LEFT JOIN requests other ON other.id = ol.request_id
WHERE l.request_id = :id AND (other.id IS NULL OR other.id != :id)
UNION
SELECT DISTINCT 'mentioned by' AS direction, ol.source || ' ' || ol.ref AS item,
       other.key AS request
FROM links l
JOIN link_keys s ON s.link_id = l.id AND s.role = 'self'
JOIN link_keys k ON k.key = s.key AND k.role = 'mention'
JOIN links ol ON ol.id = k.link_id
JOIN requests other ON other.id = ol.request_id
WHERE l.request_id = :id AND other.id != :id
ORDER BY direction DESC, item
"""


def relations(ledger: Ledger, request_id: int) -> list[dict[str, Any]]:
    """Items this request's items mention, and items that mention them: relations only,
    never links (see README "How items are linked")."""
    cur = ledger.conn.execute(_RELATIONS_SQL, {"id": request_id})
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def health(
    ledger: Ledger, *, now: datetime, stale_after: Mapping[str, timedelta] | None
) -> dict[str, Any]:
    return source_status(ledger, now=now, stale_after=stale_after)
