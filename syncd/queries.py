"""What the operator CLI reads from the ledger, as plain dicts: the `--json` output of syncd.

Each function takes an open Ledger (read-only is enough) and returns
JSON-ready values; the CLI prints them with `json.dumps` or hands them to syncd.render.
Keys are snake_case. Timestamps are ISO 8601 UTC strings as the ledger stores them
(``2026-01-02T10:00:00.000000Z``), or null. The shapes below are a stable interface for
scripts: keys may be added, none are renamed or removed.

``syncd ls --json`` -- an array, one object per request, ordered by id::

    {"key": "REQ-42", "id": 42, "title": str, "state": str,
     "owner": str|null,         # person id, or "kind:handle" for an unmapped identity
     "owner_name": str|null,    # the person's name from config, when there is one
     "sources": [str],          # names of the sources holding a linked item, sorted
     "created_at": ts, "updated_at": ts,
     "last_activity_at": ts}    # the later of any linked item's update and updated_at

``syncd show REQ --json`` -- one object::

    {"key", "id", "title", "state", "owner", "owner_name",
     "owner_at", "state_at",    # source-side time of the current owner / state
     "created_at", "updated_at",
     "links": [{"source", "kind", "ref", "url",
                "snapshot_owner", "snapshot_state",   # last values synced with that item
                "source_updated_at", "first_seen_at", "last_seen_at",
                "via": str|null,      # how it joined: created|declared|mention|operator|unlinked
                "declares": [str],    # keys it declares to be the same work ("jira:OPS-7")
                "held": bool,         # `syncd link` put it there; its text does not move it
                "writeback": null | {        # null: nothing owed, the item is in step
                    "status": "pending"|"dead"|"skipped",
                    "value": str|null,       # owner to write; null means unassign
                    "attempts": int, "next_attempt_at": ts|null,
                    "reason": str|null,      # last error, or why it was skipped
                    "origin": str|null, "actor": str|null, "updated_at": ts}}],
     "relations": [{"direction": "mentions"|"mentioned_by",
                    "item": str,              # this request's item ("source:ref")
                    "relation": str,          # blocked_by|blocks|duplicate_of|parent|child|related|mention
                    "other_key": str,         # the key as written ("jira:OPS-9", "req:7")
                    "other_item": str|null,   # the other item, when the ledger holds it
                    "other_request": str|null}],   # never linked: shown only
     "events": [EVENT]}         # the whole timeline, oldest first

    EVENT = {"id": int, "at": ts,            # when syncd recorded it
             "source_at": ts|null,           # when it happened at the source
             "kind": "created"|"linked"|"owner_changed"|"state_changed"|"conflict"|"writeback"
                     |"merged"|"split"|"unlinked"|"relinked",   # conflict with field "link":
                     # declarations that name another request, not merged (detail says why)
             "field": str|null, "source": str|null,   # source name, or "operator"
             "actor": str|null, "from_value": str|null, "to_value": str|null,
             "note": str|null, "detail": str|null}

``syncd history --json`` -- an array of handoffs (owner_changed events) and changes of
identity (merged, split, unlinked, relinked), oldest first; with --all, every event (write-backs, conflicts, links, merges, quarantines, comments)::

    {"id", "when",              # source_at when known, else at; --since compares this
     "at", "source_at", "request": "REQ-42"|null, "kind": "owner_changed"|"conflict"|...,
     "field", "from_value", "to_value", "source", "actor", "note", "detail",
     "from", "to",              # owner before and after (= from_value, to_value)
     "from_name", "to_name",    # their names from config, when they are people
     "who", "who_name",         # who made it (= actor): person id or "kind:handle"
     "where": {"source": str|null,   # source name, "operator" or "routing"
               "tool": str|null,     # github|jira|trello|email, for a source
               "item": str|null,     # the item there, e.g. "acme/api#12"
               "url": str|null},
     "why": str|null}           # the note, or the reason; no text repeated from elsewhere

``syncd status --json`` -- one object::

    {"now": ts,
     "sources": [{"source": str, "kind": str|null,
                  "health": "ok"|"failing"|"stale"|"never",
                  "last_poll_at", "last_success_at",
                  "lag_seconds": int|null,           # now - last_success_at
                  "last_error": str|null, "last_error_at": ts|null,
                  "retry_at": ts|null,               # the source asked us to wait until then
                  "items_seen": int,                 # items of this source in the ledger
                  "last_requests": int|null,
                  "outbox_pending": int, "outbox_dead": int, "outbox_skipped": int,
                  "rate_remaining": int|null, "rate_limit": int|null, "rate_reset_at": ts|null,
                  "quarantined": int}],
     "totals": {"requests", "open", "unowned_open", "outbox_pending", "outbox_dead",
                "outbox_skipped", "quarantined"}}    # all int

    "dead" and "skipped" count only write-backs still owed: not replaced by a newer one for
    the same item, and still for the owner the request has. They fall back to 0 once the
    problem is fixed or the request has moved on. `show`'s "writeback" follows the same rule.

``syncd people --json`` -- one object::

    {"people": [{"id", "name": str|null,
                 "handles": {"github": [str], ...},  # per tool type, sorted
                 "owned_open": int}],                # requests owned, not done/cancelled
     "unmapped": [{"owner": "github:zed", "kind", "handle",
                   "first_seen_at", "last_seen_at", "owned_open"}]}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from syncd.errors import NotFound
from syncd.ledger import Ledger, iso, parse_iso, parse_request_key, request_key
from syncd.models import State

# States in which a request still needs someone.
OPEN_STATES: tuple[State, ...] = ("open", "in_progress", "blocked")

# Every filter is a parameter that may be NULL, so the SQL text is constant and no user
# input is ever spliced into it.
_LIST_SQL = """
WITH r AS (
    SELECT r.*, p.name AS owner_name,
           max(r.updated_at, coalesce(
               (SELECT max(l.source_updated_at) FROM links l WHERE l.request_id = r.id), ''
           )) AS last_activity_at,
           (SELECT json_group_array(source) FROM (
               SELECT DISTINCT l.source FROM links l WHERE l.request_id = r.id ORDER BY l.source
           )) AS sources
    FROM requests r LEFT JOIN people p ON p.id = r.owner
)
SELECT id, key, title, state, owner, owner_name, sources, created_at, updated_at,
       last_activity_at
FROM r
WHERE (:owner IS NULL OR owner = :owner)
  AND (:unowned = 0 OR owner IS NULL)
  AND (:states IS NULL OR state IN (SELECT value FROM json_each(:states)))
  AND (:source IS NULL OR EXISTS (
        SELECT 1 FROM links l WHERE l.request_id = r.id AND l.source = :source))
  AND (:cutoff IS NULL OR last_activity_at < :cutoff)
ORDER BY id
"""


def _select(
    ledger: Ledger, sql: str, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    cur = ledger.conn.execute(sql, dict(params or {}))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def list_requests(
    ledger: Ledger,
    *,
    now: datetime,
    owner: str | None = None,
    states: Iterable[str] = (),
    source: str | None = None,
    unowned: bool = False,
    stale: timedelta | None = None,
) -> list[dict[str, Any]]:
    """Requests matching every filter given (`syncd ls`)."""
    state_list = list(states)
    rows = _select(
        ledger,
        _LIST_SQL,
        {
            "owner": owner,
            "unowned": int(unowned),
            "states": json.dumps(state_list) if state_list else None,
            "source": source,
            "cutoff": iso(now - stale) if stale is not None else None,
        },
    )
    for row in rows:
        row["sources"] = json.loads(row["sources"])
    return [{"key": r.pop("key"), **r} for r in rows]


def request_fields(ledger: Ledger, key: str) -> dict[str, Any]:
    """The request's own fields, as in `syncd show` without links and events."""
    rid = parse_request_key(key)
    rows = _select(
        ledger,
        "SELECT r.key, r.id, r.title, r.state, r.owner, p.name AS owner_name, r.owner_at, "
        "r.state_at, r.created_at, r.updated_at "
        "FROM requests r LEFT JOIN people p ON p.id = r.owner WHERE r.id = :id",
        {"id": rid},
    )
    if not rows:
        merged = ledger.conn.execute(
            "SELECT to_value FROM events WHERE kind = 'merged' AND from_value = ? "
            "ORDER BY id DESC LIMIT 1",
            (request_key(rid),),
        ).fetchone()
        if merged:
            raise NotFound(
                f"{request_key(rid)} was merged into {merged[0]}; see `syncd show {merged[0]}`"
            )
        raise NotFound(f"no request {request_key(rid)} (see `syncd ls`)")
    return rows[0]


# The write-backs still owed: per item, its latest outbox row (older ones are history a later
# write replaced), if pending, or if dead or skipped while its value is still the owner the
# request has. A failed write that the owner has since moved on from is owed no more.
_OWED_SQL = """
SELECT o.* FROM outbox o JOIN requests r ON r.id = o.request_id
WHERE o.field = 'owner'
  AND o.id = (SELECT max(x.id) FROM outbox x WHERE x.link_id = o.link_id AND x.field = o.field)
  AND (o.status = 'pending' OR (o.status IN ('dead', 'skipped') AND o.value IS r.owner))
"""

_LINKS_SQL = f"""
SELECT l.source, l.kind, l.ref, l.url,
       l.snap_owner AS snapshot_owner, l.snap_state AS snapshot_state,
       l.source_updated_at, l.first_seen_at, l.last_seen_at, l.via,
       (SELECT json_group_array(k.key) FROM link_keys k
        WHERE k.link_id = l.id AND k.role = 'declared') AS declares,
       coalesce((SELECT p.held FROM link_pins p WHERE p.link_id = l.id), 0) AS held,
       o.status AS wb_status, o.value AS wb_value, o.attempts AS wb_attempts,
       o.next_attempt_at AS wb_next_attempt_at, o.last_error AS wb_reason,
       o.origin AS wb_origin, o.actor AS wb_actor, o.updated_at AS wb_updated_at
FROM links l
LEFT JOIN ({_OWED_SQL}) o ON o.link_id = l.id AND o.field = 'owner'
WHERE l.request_id = :id
ORDER BY l.id
"""  # noqa: S608 - built from constants only


def _links(ledger: Ledger, request_id: int) -> list[dict[str, Any]]:
    out = []
    for row in _select(ledger, _LINKS_SQL, {"id": request_id}):
        link = {k: v for k, v in row.items() if not k.startswith("wb_")}
        link["declares"] = json.loads(link["declares"])
        link["held"] = bool(link["held"])
        link["writeback"] = (
            {k.removeprefix("wb_"): v for k, v in row.items() if k.startswith("wb_")}
            if row["wb_status"] is not None
            else None
        )
        out.append(link)
    return out


def request_detail(ledger: Ledger, key: str) -> dict[str, Any]:
    """One request, its linked items and its whole timeline (`syncd show`)."""
    request = request_fields(ledger, key)
    request["links"] = _links(ledger, request["id"])
    request["relations"] = relations(ledger, request["id"])
    request["events"] = _select(
        ledger,
        "SELECT id, at, source_at, kind, field, source, actor, from_value, to_value, note, "
        "detail FROM events WHERE request_id = :id ORDER BY id",
        {"id": request["id"]},
    )
    return request


# What a request's items say about other items (mentions), and what other items say about
# its items (mentioned by): relations, never links. The item at the other end is named by
# its ref and request when the ledger holds it, else by the key as written.
_RELATIONS_SQL = """
SELECT 'mentions' AS direction, l.source || ':' || l.ref AS item,
       coalesce(k.relation, 'mention') AS relation, k.key AS other_key,
       (SELECT o.source || ':' || o.ref FROM link_keys s JOIN links o ON o.id = s.link_id
        WHERE s.key = k.key AND s.role = 'self' LIMIT 1) AS other_item,
       (SELECT r.key FROM link_keys s JOIN links o ON o.id = s.link_id
        JOIN requests r ON r.id = o.request_id
        WHERE s.key = k.key AND s.role = 'self' LIMIT 1) AS other_request
FROM links l JOIN link_keys k ON k.link_id = l.id AND k.role = 'mention'
WHERE l.request_id = :id AND k.key != 'req:' || :id
UNION ALL
SELECT 'mentioned_by', l.source || ':' || l.ref, coalesce(m.relation, 'mention'), m.key,
       o.source || ':' || o.ref, r.key
FROM links l JOIN link_keys s ON s.link_id = l.id AND s.role = 'self'
JOIN link_keys m ON m.key = s.key AND m.role = 'mention'
JOIN links o ON o.id = m.link_id AND o.request_id != :id
JOIN requests r ON r.id = o.request_id
WHERE l.request_id = :id
UNION ALL
SELECT 'mentioned_by', :key, coalesce(m.relation, 'mention'), m.key, o.source || ':' || o.ref,
       r.key
FROM link_keys m JOIN links o ON o.id = m.link_id AND o.request_id != :id
JOIN requests r ON r.id = o.request_id
WHERE m.key = 'req:' || :id AND m.role = 'mention'
"""


def relations(ledger: Ledger, request_id: int) -> list[dict[str, Any]]:
    """The request's relations, both ways (`syncd show`)."""
    return _select(ledger, _RELATIONS_SQL, {"id": request_id, "key": request_key(request_id)})


_HISTORY_SQL = """
SELECT e.id, coalesce(e.source_at, e.at) AS "when", e.at, e.source_at, r.key AS request,
       e.kind, e.field, e.from_value, e.to_value, e.source, e.actor, e.note, e.detail,
       fp.name AS from_name, tp.name AS to_name, ap.name AS who_name,
       l.kind AS where_tool, l.ref AS where_item, l.url AS where_url
FROM events e
LEFT JOIN requests r ON r.id = e.request_id
LEFT JOIN people fp ON fp.id = e.from_value
LEFT JOIN people tp ON tp.id = e.to_value
LEFT JOIN people ap ON ap.id = e.actor
LEFT JOIN links l ON l.id = (SELECT min(x.id) FROM links x
                             WHERE x.request_id = e.request_id AND x.source = e.source)
WHERE (:all = 1 OR e.kind IN ('owner_changed', 'merged', 'split', 'unlinked', 'relinked')
       OR (e.kind = 'conflict' AND e.field = 'link'))
  AND (:request_id IS NULL OR e.request_id = :request_id)
  AND (:since IS NULL OR coalesce(e.source_at, e.at) >= :since)
ORDER BY "when", e.id
"""


def why_text(kind: str, note: str | None, detail: str | None, item: str | None) -> str | None:
    """Why a history row happened, in words not already in its other columns: the note of
    a handoff, the reason of a conflict or a refusal, what became of a write-back."""
    if note:
        return note
    if detail is None:
        return None
    if kind == "writeback" and item is not None and detail == f"written to {item}":
        return "written"  # the item is the row's WHERE already
    return detail


def history(
    ledger: Ledger,
    *,
    now: datetime,
    key: str | None = None,
    since: timedelta | None = None,
    all_kinds: bool = False,
) -> list[dict[str, Any]]:
    """Handoffs, oldest first (`syncd history`); with `all_kinds`, every event: write-backs,
    conflicts, links, merges, quarantines, comments posted, commands refused."""
    request_id = request_fields(ledger, key)["id"] if key is not None else None
    rows = _select(
        ledger,
        _HISTORY_SQL,
        {
            "request_id": request_id,
            "since": iso(now - since) if since is not None else None,
            "all": 1 if all_kinds else 0,
        },
    )
    for r in rows:
        r["from"], r["to"], r["who"] = r["from_value"], r["to_value"], r["actor"]
        r["where"] = {
            "source": r["source"],
            "tool": r.pop("where_tool"),
            "item": r.pop("where_item"),
            "url": r.pop("where_url"),
        }
        r["why"] = why_text(r["kind"], r["note"], r["detail"], r["where"]["item"])
    return rows


def _count_by(
    ledger: Ledger, sql: str, params: Mapping[str, Any] | None = None
) -> dict[tuple[Any, ...], int]:
    """{group key columns: count} for a query whose last column is a count."""
    return {tuple(r[:-1]): int(r[-1]) for r in ledger.conn.execute(sql, dict(params or {}))}


def source_status(
    ledger: Ledger,
    *,
    now: datetime,
    stale_after: Mapping[str, timedelta] | None = None,
) -> dict[str, Any]:
    """Per-source health and totals (`syncd status`).

    `stale_after` maps the configured (enabled) sources to the lag beyond which a source
    counts as stale; those sources are listed even before their first poll. Without it
    (no config at hand) a source is never called stale, only failing.
    """
    stale_after = stale_after or {}
    polled = {
        r["source"]: r
        for r in _select(
            ledger,
            "SELECT source, kind, last_poll_at, last_success_at, last_error, last_error_at, "
            "retry_at, items_seen, last_requests, rate_remaining, rate_limit, rate_reset_at "
            "FROM source_status",
        )
    }
    linked = {r[0]: r[1] for r in ledger.conn.execute("SELECT DISTINCT source, kind FROM links")}
    # Items the source holds in the ledger now; source_status.items_seen counts every
    # observation ever applied, so one busy issue would be counted once per change.
    items = dict(
        ledger.conn.execute("SELECT source, count(*) FROM links GROUP BY source").fetchall()
    )
    outbox = _count_by(
        ledger,
        f"SELECT l.source, o.status, count(*) FROM ({_OWED_SQL}) o "  # noqa: S608 - constants
        "JOIN links l ON l.id = o.link_id GROUP BY l.source, o.status",
    )
    quarantined = _count_by(
        ledger,
        "SELECT source, count(*) FROM quarantine WHERE released_at IS NULL GROUP BY source",
    )
    names = sorted(set(polled) | set(linked) | set(stale_after) | {k[0] for k in quarantined})
    sources: list[dict[str, Any]] = []
    for name in names:
        row = polled.get(name, {})
        success = parse_iso(row.get("last_success_at"))
        lag = int((now - success).total_seconds()) if success else None
        limit = stale_after.get(name)
        if row.get("last_error"):
            health = "failing"
        elif success is None:
            health = "never"
        elif limit is not None and now - success > limit:
            health = "stale"
        else:
            health = "ok"
        sources.append(
            {
                "source": name,
                "kind": row.get("kind") or linked.get(name),
                "health": health,
                "last_poll_at": row.get("last_poll_at"),
                "last_success_at": row.get("last_success_at"),
                "lag_seconds": lag,
                "last_error": row.get("last_error"),
                "last_error_at": row.get("last_error_at"),
                "retry_at": row.get("retry_at"),
                "items_seen": items.get(name, 0),
                "last_requests": row.get("last_requests"),
                "outbox_pending": outbox.get((name, "pending"), 0),
                "outbox_dead": outbox.get((name, "dead"), 0),
                "outbox_skipped": outbox.get((name, "skipped"), 0),
                "rate_remaining": row.get("rate_remaining"),
                "rate_limit": row.get("rate_limit"),
                "rate_reset_at": row.get("rate_reset_at"),
                "quarantined": quarantined.get((name,), 0),
            }
        )
    requests = _select(
        ledger,
        "SELECT count(*) AS requests, "
        "coalesce(sum(state IN (SELECT value FROM json_each(:open))), 0) AS open, "
        "coalesce(sum(owner IS NULL AND state IN (SELECT value FROM json_each(:open))), 0) "
        "AS unowned_open FROM requests",
        {"open": json.dumps(OPEN_STATES)},
    )[0]
    totals: dict[str, int] = {
        **requests,
        **{
            f"outbox_{status}": sum(s[f"outbox_{status}"] for s in sources)
            for status in ("pending", "dead", "skipped")
        },
        "quarantined": sum(quarantined.values()),
    }
    return {"now": iso(now), "sources": sources, "totals": totals}


def _owned_open(ledger: Ledger) -> dict[str, int]:
    return {
        k[0]: n
        for k, n in _count_by(
            ledger,
            "SELECT owner, count(*) FROM requests WHERE owner IS NOT NULL "
            "AND state IN (SELECT value FROM json_each(:open)) GROUP BY owner",
            {"open": json.dumps(OPEN_STATES)},
        ).items()
    }


def people(ledger: Ledger) -> dict[str, Any]:
    """People from config with their handles, and identities nobody claims (`syncd people`)."""
    owned = _owned_open(ledger)
    persons: dict[str, dict[str, Any]] = {
        r["id"]: {**r, "handles": {}, "owned_open": owned.get(r["id"], 0)}
        for r in _select(ledger, "SELECT id, name FROM people ORDER BY id")
    }
    unmapped = []
    for ident in _select(
        ledger,
        "SELECT kind, handle, person_id, first_seen_at, last_seen_at FROM identities "
        "ORDER BY kind, handle",
    ):
        person = persons.get(ident["person_id"]) if ident["person_id"] else None
        if person is not None:
            person["handles"].setdefault(ident["kind"], []).append(ident["handle"])
        elif ident["person_id"] is None:
            owner = f"{ident['kind']}:{ident['handle']}"
            unmapped.append(
                {
                    "owner": owner,
                    "kind": ident["kind"],
                    "handle": ident["handle"],
                    "first_seen_at": ident["first_seen_at"],
                    "last_seen_at": ident["last_seen_at"],
                    "owned_open": owned.get(owner, 0),
                }
            )
    return {"people": list(persons.values()), "unmapped": unmapped}


def owner_known(ledger: Ledger, owner: str) -> bool:
    """Whether `owner` names a person in config or an identity the ledger has seen."""
    kind, sep, handle = owner.partition(":")
    if sep:
        sql, params = (
            "SELECT 1 FROM identities WHERE kind = :kind AND handle = :handle",
            {"kind": kind, "handle": handle},
        )
    else:
        sql, params = "SELECT 1 FROM people WHERE id = :id", {"id": owner}
    return bool(_select(ledger, sql, params))


def owed_writes(ledger: Ledger, key: str) -> dict[str, Any]:
    """After a handoff: the request's owner, and per linked item whether a write is now owed
    and which handles the new owner has in that item's tool (`syncd assign`)."""
    request = request_fields(ledger, key)
    handles: dict[str, list[str]] = {}
    owner = request["owner"]
    if owner is not None:
        kind, sep, handle = owner.partition(":")
        if sep:
            handles[kind] = [handle]
        for r in _select(
            ledger,
            "SELECT kind, handle FROM identities WHERE person_id = :id ORDER BY kind, handle",
            {"id": owner},
        ):
            handles.setdefault(r["kind"], []).append(r["handle"])
    links = _links(ledger, request["id"])
    for link in links:
        link["owner_handles"] = handles.get(link["kind"], [])
    return {**request, "links": links}


def requests_with_dead_writes(ledger: Ledger) -> set[str]:
    """Requests with a write-back still owed and dead-lettered (`ls` marks them)."""
    return {
        str(r[0])
        for r in ledger.conn.execute(
            f"SELECT DISTINCT r.key FROM ({_OWED_SQL}) o "  # noqa: S608 - constants
            "JOIN requests r ON r.id = o.request_id WHERE o.status = 'dead'"
        )
    }


def source_names(ledger: Ledger) -> set[str]:
    """Every source the ledger has seen: linked items, polls or quarantined items."""
    return {
        str(r[0])
        for r in ledger.conn.execute(
            "SELECT source FROM links UNION SELECT source FROM source_status "
            "UNION SELECT source FROM quarantine"
        )
    }


# Handoffs nobody has picked up yet, as follow-through (syncd.dispatch) keeps them in
# `handoffs`: only open requests whose owner is still the one who is to accept.
_AWAITING_SQL = """
SELECT r.key, r.id, r.title, r.state, r.owner, p.name AS owner_name,
       h.at AS handed_at, h.previous_owner AS from_owner, e.source, e.actor, e.note,
       h.overdue_at, h.escalated_at
FROM handoffs h
JOIN requests r ON r.id = h.request_id
LEFT JOIN events e ON e.id = h.event_id
LEFT JOIN people p ON p.id = r.owner
WHERE h.accepted_at IS NULL AND r.owner IS h.owner
  AND r.state IN (SELECT value FROM json_each(:open))
ORDER BY h.at, r.id
"""


def awaiting_acceptance(
    ledger: Ledger, *, now: datetime, within: Callable[[str], timedelta | None] | None = None
) -> list[dict[str, Any]]:
    """Open requests whose latest handoff nobody has accepted yet, oldest first; each with
    `waiting_seconds` and `overdue`: follow-through found it overdue, or `within(owner)`
    (the owner's accept_within, see syncd.acceptance) has passed."""
    rows = _select(ledger, _AWAITING_SQL, {"open": json.dumps(OPEN_STATES)})
    for row in rows:
        handed = parse_iso(row["handed_at"])
        waited = (now - handed).total_seconds() if handed else 0.0
        limit = within(row["owner"]) if within is not None else None
        row["waiting_seconds"] = int(max(0.0, waited))
        row["overdue"] = row["overdue_at"] is not None or (
            limit is not None and waited > limit.total_seconds()
        )
    return rows


def handoff_counts(ledger: Ledger) -> dict[str, int]:
    """Owner changes recorded per source ("operator" and "routing" included), ever."""
    return {
        k[0] or "": n
        for k, n in _count_by(
            ledger,
            "SELECT source, count(*) FROM events WHERE kind = 'owner_changed' GROUP BY source",
        ).items()
    }


def quarantine(
    ledger: Ledger, *, source: str | None = None, released: bool = False
) -> list[dict[str, Any]]:
    """Items syncd could not read (`syncd quarantine`), oldest first: in quarantine now, or
    with `released` those that have left it too. The URL is the item's, when syncd has read
    it cleanly before; `request` the request it belongs to then."""
    return _select(
        ledger,
        "SELECT q.source, q.ref, l.url, r.key AS request, q.reason, q.at AS first_seen_at, "
        "coalesce(q.last_seen_at, q.at) AS last_seen_at, q.times, q.released_at "
        "FROM quarantine q "
        "LEFT JOIN links l ON l.source = q.source AND l.ref = q.ref "
        "LEFT JOIN requests r ON r.id = l.request_id "
        "WHERE (:source IS NULL OR q.source = :source) "
        "AND (:released OR q.released_at IS NULL) "
        "ORDER BY q.at, q.id",
        {"source": source, "released": released},
    )
