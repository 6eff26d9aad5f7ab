"""The ledger side of routing and follow-through: storage and queries, no decisions.

What routing rules test (labels, requesters) and what acceptance reads (who did what on a
request, as "touches") are recorded here as observations are applied; absences, the
rotation, and the handoffs awaiting acceptance are kept here between cycles. The decisions
are syncd.routing's and syncd.acceptance's; syncd.dispatch joins the two.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from syncd.acceptance import Accepted, OwnerChange, Pending, Touch
from syncd.clock import iso, parse_iso
from syncd.models import Observation
from syncd.people import Directory
from syncd.request_keys import parse_request_key
from syncd.routing import Absence, Assignment, Candidate, Owned

if TYPE_CHECKING:
    from syncd.ledger import Ledger

OPEN = ("open", "in_progress", "blocked")


def _must(text: str | None) -> datetime:
    t = parse_iso(text)
    assert t is not None
    return t


# -- recorded as observations are applied ---------------------------------------------------


def record_item_facts(
    c: sqlite3.Connection,
    request_id: int,
    link_id: int,
    obs: Observation,
    kind: str,
    d: Directory,
) -> None:
    """Keep an item's requester and labels, and who did what on it (for acceptance)."""
    labels = json.dumps(list(obs.labels), ensure_ascii=False) if obs.labels else None
    c.execute(
        "UPDATE links SET requester = ?, labels = ? WHERE id = ? "
        "AND (requester IS NOT ? OR labels IS NOT ?)",
        (obs.requester, labels, link_id, obs.requester, labels),
    )
    touches: list[tuple[str, datetime, str]] = []
    for a in obs.activity:
        # syncd's own comments are nobody's acceptance; and a mail sender only counts when
        # the adapter could tell it is who it says (a From line is easy to forge).
        if a.by_syncd or (kind == "email" and not a.trusted):
            continue
        touches.append((d.owner_for(kind, a.actor), a.at, a.kind))
    if obs.owner_actor:
        touches.append((d.owner_for(kind, obs.owner_actor), obs.owner_time, "assign"))
    for person, at, what in touches:
        c.execute(
            "INSERT INTO touches (request_id, person, at, kind, source) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (request_id, person) DO UPDATE SET at = excluded.at, "
            "kind = excluded.kind, source = excluded.source WHERE excluded.at > touches.at",
            (request_id, person, iso(at), what, obs.source),
        )


# -- absences ---------------------------------------------------------------------------------


def absences(c: sqlite3.Connection) -> dict[str, Absence]:
    return {
        r[0]: Absence(r[0], _must(r[1]), _must(r[2]), r[3], bool(r[4]), r[5])
        for r in c.execute(
            "SELECT person, since, until, delegate, move_open, note FROM absences ORDER BY person"
        )
    }


def _event(
    c: sqlite3.Connection,
    request_id: int | None,
    kind: str,
    now: datetime,
    *,
    source: str,
    actor: str | None = None,
    from_value: str | None = None,
    to_value: str | None = None,
    note: str | None = None,
    detail: str | None = None,
    source_at: datetime | None = None,
) -> None:
    c.execute(
        "INSERT INTO events (request_id, at, source_at, kind, field, source, actor, from_value, "
        "to_value, note, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            request_id,
            iso(now),
            iso(source_at),
            kind,
            "owner" if kind == "owner_changed" else None,
            source,
            actor,
            from_value,
            to_value,
            note,
            detail,
        ),
    )


def set_absence(ledger: Ledger, a: Absence, actor: str, now: datetime) -> None:
    with ledger.transaction() as c:
        c.execute(
            "INSERT INTO absences (person, since, until, delegate, move_open, note, actor) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (person) DO UPDATE SET "
            "since = excluded.since, until = excluded.until, delegate = excluded.delegate, "
            "move_open = excluded.move_open, note = excluded.note, actor = excluded.actor",
            (a.person, iso(a.since), iso(a.until), a.delegate, int(a.move_open), a.note, actor),
        )
        detail = f"until {iso(a.until)}"
        if a.delegate:
            detail += f", delegate {a.delegate}" + (" (open requests too)" if a.move_open else "")
        _event(c, None, "away", now, source="operator", actor=actor, to_value=a.person,
               note=a.note, detail=detail)  # fmt: skip


def clear_absence(ledger: Ledger, person: str, actor: str, now: datetime) -> bool:
    with ledger.transaction() as c:
        gone = c.execute("DELETE FROM absences WHERE person = ?", (person,)).rowcount
        if gone:
            _event(c, None, "back", now, source="operator", actor=actor, to_value=person)
    return bool(gone)


def expire_absences(c: sqlite3.Connection, now: datetime) -> list[str]:
    """End the absences whose time is up, each with a `back` event."""
    ended = [
        r[0]
        for r in c.execute(
            "SELECT person FROM absences WHERE until <= ? ORDER BY person", (iso(now),)
        )
    ]
    for person in ended:
        c.execute("DELETE FROM absences WHERE person = ?", (person,))
        _event(c, None, "back", now, source="routing", to_value=person, detail="absence ended")
    return ended


# -- routing's inputs -------------------------------------------------------------------------


def candidates(c: sqlite3.Connection, only: Iterable[int] | None = None) -> list[Candidate]:
    """Unowned open requests (or the requests named in `only`, owned or not), with what
    routing rules test, gathered over every linked item."""
    if only is None:
        rows = c.execute(
            "SELECT id, key, title, state, coalesce(owner_at, created_at) FROM requests "
            "WHERE owner IS NULL AND state IN (?, ?, ?)",
            OPEN,
        ).fetchall()
    else:
        ids = json.dumps(list(only))
        rows = c.execute(
            "SELECT id, key, title, state, coalesce(owner_at, created_at) FROM requests "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (ids,),
        ).fetchall()
    if not rows:
        return []
    facts: dict[int, dict[str, set[str]]] = {}
    ids = json.dumps([r[0] for r in rows])
    for rid, source, kind, labels, requester in c.execute(
        "SELECT request_id, source, kind, labels, requester FROM links "
        "WHERE request_id IN (SELECT value FROM json_each(?))",
        (ids,),
    ):
        f = facts.setdefault(rid, {"sources": set(), "tools": set(), "labels": set(), "req": set()})
        f["sources"].add(source)
        f["tools"].add(kind)
        for label in json.loads(labels) if labels else []:
            f["labels"].add(str(label).lower())
        if requester:
            f["req"].add(requester.lower())
    # The owner each had until its last owner change left it unowned, if any.
    gave_up = dict(
        c.execute(
            "SELECT e.request_id, e.from_value FROM events e WHERE e.id IN ("
            " SELECT max(x.id) FROM events x WHERE x.kind = 'owner_changed' "
            " AND x.request_id IN (SELECT value FROM json_each(?)) GROUP BY x.request_id) "
            "AND e.to_value IS NULL",
            (ids,),
        ).fetchall()
    )
    out = []
    for rid, key, title, state, since in rows:
        f = facts.get(rid, {})
        out.append(
            Candidate(
                rid,
                key,
                title,
                state,
                _must(since),
                frozenset(f.get("sources", ())),
                frozenset(f.get("tools", ())),
                frozenset(f.get("labels", ())),
                frozenset(f.get("req", ())),
                gave_up.get(rid),
            )
        )
    return out


def owned_by(c: sqlite3.Connection, people: Iterable[str]) -> list[Owned]:
    """Open requests these people own, each with when it was handed to its owner: the last
    owner change to them (not requests.owner_at, which a tool confirming the same owner
    also moves)."""
    return [
        Owned(r[0], r[1], r[2], parse_iso(r[3]))
        for r in c.execute(
            "SELECT r.id, r.key, r.owner, (SELECT max(coalesce(e.source_at, e.at)) FROM events e "
            " WHERE e.request_id = r.id AND e.kind = 'owner_changed' AND e.to_value = r.owner) "
            "FROM requests r WHERE r.state IN (?, ?, ?) "
            "AND r.owner IN (SELECT value FROM json_each(?)) ORDER BY r.id",
            (*OPEN, json.dumps(sorted(people))),
        )
    ]


def open_load(c: sqlite3.Connection) -> dict[str, int]:
    return dict(
        c.execute(
            "SELECT owner, count(*) FROM requests WHERE owner IS NOT NULL AND state IN (?, ?, ?) "
            "GROUP BY owner",
            OPEN,
        ).fetchall()
    )


def rotation(c: sqlite3.Connection) -> dict[str, str]:
    return {
        r[0].removeprefix("rotation:"): r[1]
        for r in c.execute("SELECT key, value FROM routing_state WHERE key LIKE 'rotation:%'")
    }


def save_rotation(c: sqlite3.Connection, turns: dict[str, str], now: datetime) -> None:
    for team, person in turns.items():
        c.execute(
            "INSERT INTO routing_state (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (f"rotation:{team}", person, iso(now)),
        )


def hand_over(ledger: Ledger, c: sqlite3.Connection, a: Assignment, now: datetime) -> bool:
    """Make one routing handoff, like any other (the owner changes, every linked item is owed
    the write and its handoff comment), but only if the owner is still the one routing
    planned from: a person's change made meanwhile stands."""
    row = c.execute("SELECT owner FROM requests WHERE id = ?", (a.request_id,)).fetchone()
    if row is None or row[0] != a.previous_owner:
        return False
    if a.meant_for is not None:
        _event(c, a.request_id, "delegated", now, source="routing", from_value=a.meant_for,
               to_value=a.owner, note=a.why, source_at=now)  # fmt: skip
    ledger._hand_off(
        c, a.request_id, a.owner, source="routing", actor=None, note=a.why, source_at=now, now=now
    )
    return True


# -- follow-through ---------------------------------------------------------------------------


def new_owner_changes(c: sqlite3.Connection) -> tuple[list[tuple[OwnerChange, str]], int | None]:
    """Owner changes recorded since follow-through last looked, with the source each was
    made in, and the last event id now read (None: no event since)."""
    row = c.execute("SELECT value FROM routing_state WHERE key = 'events'").fetchone()
    cursor = int(row[0]) if row and row[0] else 0
    last = c.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    if last <= cursor:
        return [], None
    out = []
    for eid, rid, key, to, frm, at, source, actor, created in c.execute(
        "SELECT e.id, e.request_id, r.key, e.to_value, e.from_value, coalesce(e.source_at, e.at), "
        "e.source, e.actor, r.created_at FROM events e JOIN requests r ON r.id = e.request_id "
        "WHERE e.id > ? AND e.id <= ? AND e.kind = 'owner_changed' ORDER BY e.id",
        (cursor, last),
    ):
        # An owner first seen as the request was created (a tool's existing assignment, at
        # syncd's first poll) was handed over before syncd watched; nobody awaits it.
        tracked = at > created
        out.append((OwnerChange(eid, rid, key, to, frm, _must(at), actor, tracked), source))
    return out, int(last)


def save_event_cursor(c: sqlite3.Connection, last: int, now: datetime) -> None:
    c.execute(
        "INSERT INTO routing_state (key, value, updated_at) VALUES ('events', ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (str(last), iso(now)),
    )


_PENDING_COLS = "h.request_id, r.key, h.owner, h.previous_owner, h.at, h.overdue_at, h.escalated_at"


def _pending(row: tuple[object, ...]) -> Pending:
    rid, key, owner, prev, at, overdue, escalated = row
    return Pending(
        int(str(rid)),
        str(key),
        str(owner),
        str(prev) if prev is not None else None,
        _must(str(at)),
        parse_iso(str(overdue)) if overdue else None,
        parse_iso(str(escalated)) if escalated else None,
    )


def pending(c: sqlite3.Connection) -> dict[int, Pending]:
    return {
        p.request_id: p
        for p in (
            _pending(r)
            for r in c.execute(
                f"SELECT {_PENDING_COLS} FROM handoffs h JOIN requests r ON r.id = h.request_id "
                "WHERE h.accepted_at IS NULL AND r.state IN (?, ?, ?)",
                OPEN,
            )
        )
    }


def pending_for(c: sqlite3.Connection, request_id: int) -> Pending | None:
    row = c.execute(
        f"SELECT {_PENDING_COLS} FROM handoffs h JOIN requests r ON r.id = h.request_id "
        "WHERE h.request_id = ? AND h.accepted_at IS NULL",
        (request_id,),
    ).fetchone()
    return _pending(row) if row else None


def set_pending(c: sqlite3.Connection, request_id: int, p: Pending | None, event_id: int) -> None:
    """The handoff now awaiting acceptance on a request (None: nothing awaits)."""
    if p is None:
        c.execute("DELETE FROM handoffs WHERE request_id = ?", (request_id,))
        return
    c.execute(
        "INSERT INTO handoffs (request_id, event_id, owner, previous_owner, at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (request_id) DO UPDATE SET "
        "event_id = excluded.event_id, owner = excluded.owner, "
        "previous_owner = excluded.previous_owner, at = excluded.at, accepted_at = NULL, "
        "accepted_by = NULL, accepted_how = NULL, overdue_at = NULL, escalated_at = NULL",
        (request_id, event_id, p.owner, p.previous_owner, iso(p.at)),
    )


def touches(c: sqlite3.Connection, request_ids: Iterable[int]) -> list[Touch]:
    return [
        Touch(r[0], r[1], _must(r[2]), r[3], r[4])
        for r in c.execute(
            "SELECT request_id, person, at, kind, source FROM touches "
            "WHERE request_id IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(request_ids)),),
        )
    ]


def record_accepted(
    c: sqlite3.Connection, a: Accepted, now: datetime, *, actor: str | None = None
) -> None:
    c.execute(
        "UPDATE handoffs SET accepted_at = ?, accepted_by = ?, accepted_how = ? "
        "WHERE request_id = ? AND accepted_at IS NULL",
        (iso(a.at), a.by, a.how, a.request_id),
    )
    _event(c, a.request_id, "accepted", now, source=a.source, actor=actor or a.by,
           to_value=a.by, detail=a.how, source_at=a.at)  # fmt: skip


def mark_overdue(c: sqlite3.Connection, request_id: int, now: datetime) -> None:
    c.execute(
        "UPDATE handoffs SET overdue_at = ? WHERE request_id = ? AND overdue_at IS NULL",
        (iso(now), request_id),
    )


def mark_escalated(
    c: sqlite3.Connection, p: Pending, what: str, now: datetime, *, note: str | None = None
) -> int | None:
    """Record the escalation of one overdue handoff: its event id, or None if one was
    already recorded."""
    done = c.execute(
        "UPDATE handoffs SET escalated_at = ? WHERE request_id = ? AND escalated_at IS NULL "
        "AND accepted_at IS NULL",
        (iso(now), p.request_id),
    ).rowcount
    if not done:
        return None
    _event(c, p.request_id, "escalated", now, source="routing", from_value=p.previous_owner,
           to_value=p.owner, note=note, detail=what)  # fmt: skip
    return int(c.execute("SELECT last_insert_rowid()").fetchone()[0])


def overdue_count(c: sqlite3.Connection) -> int:
    row = c.execute(
        "SELECT count(*) FROM handoffs WHERE accepted_at IS NULL AND overdue_at IS NOT NULL"
    ).fetchone()
    return int(row[0])


# -- reads for the CLI ------------------------------------------------------------------------


def absence_rows(c: sqlite3.Connection) -> list[dict[str, object]]:
    """Every recorded absence (`people`, `status`): current ones and those still to come."""
    cur = c.execute(
        "SELECT person, since, until, delegate, move_open, note, actor FROM absences "
        "ORDER BY until, person"
    )
    cols = [d[0] for d in cur.description]
    return [{**dict(zip(cols, r, strict=True)), "move_open": bool(r[4])} for r in cur]


def unaccepted(
    c: sqlite3.Connection, *, older_than: str | None = None
) -> dict[str, dict[str, object]]:
    """Handoffs of open requests not yet accepted, by request key: those the daemon found
    overdue, or (with `older_than`, an ISO time) those made before then."""
    cur = c.execute(
        "SELECT r.key, h.owner, h.previous_owner, h.at AS handed_at, h.overdue_at, "
        "h.escalated_at FROM handoffs h JOIN requests r ON r.id = h.request_id "
        "WHERE h.accepted_at IS NULL AND r.state IN (?, ?, ?) "
        "AND (CASE WHEN ? IS NULL THEN h.overdue_at IS NOT NULL ELSE h.at < ? END) "
        "ORDER BY h.at",
        (*OPEN, older_than, older_than),
    )
    cols = [d[0] for d in cur.description]
    return {r[0]: dict(zip(cols[1:], r[1:], strict=True)) for r in cur}


def follow_through_counts(c: sqlite3.Connection) -> dict[str, int]:
    row = c.execute(
        "SELECT count(*), coalesce(sum(h.overdue_at IS NOT NULL), 0) FROM handoffs h "
        "JOIN requests r ON r.id = h.request_id "
        "WHERE h.accepted_at IS NULL AND r.state IN (?, ?, ?)",
        OPEN,
    ).fetchone()
    return {"awaiting_acceptance": int(row[0]), "overdue_handoffs": int(row[1])}


def accept(ledger: Ledger, key: str, actor: str, note: str | None, now: datetime) -> Pending | None:
    """An operator accepts the handoff awaiting on a request, for its new owner. None when
    nothing awaits (never handed over, or already accepted)."""
    rid = parse_request_key(key)
    with ledger.transaction() as c:
        p = pending_for(c, rid)
        if p is None:
            return None
        how = "operator" + (f": {note}" if note else "")
        record_accepted(c, Accepted(rid, p.owner, how, "operator", now), now, actor=actor)
    return p
