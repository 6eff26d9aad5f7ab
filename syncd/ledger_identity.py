"""The ledger's request-identity operations: an operator's link, unlink, split and relink.

They are storage steps (which rows move, which pins and events are written), kept apart from
the ledger's schema, polling and outbox code; what the rule makes of the ledger is decided in
syncd.matching. Ledger takes them in as a base class, so callers keep `ledger.link_item(...)`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from syncd.clock import iso, now_utc
from syncd.errors import NotFound
from syncd.matching import Finding, LinkOn, rematch
from syncd.matching import Item as MatchItem
from syncd.request_keys import parse_request_key, request_key

if TYPE_CHECKING:
    import threading

    from syncd.matching import Decision
    from syncd.reconcile import RequestState


class IdentityOps:
    """Ledger methods for operator identity decisions; Ledger is the only class built on it."""

    if TYPE_CHECKING:
        # What these methods use of the Ledger they are part of (defined in syncd.ledger).
        conn: sqlite3.Connection
        _lock: threading.RLock

        @staticmethod
        def rows_in(
            c: sqlite3.Connection, sql: str, args: Iterable[Any] = ()
        ) -> list[dict[str, Any]]: ...

        def _merge(
            self,
            c: sqlite3.Connection,
            keep: int,
            gone: int,
            via: str,
            now: datetime,
            *,
            actor: str | None = None,
            note: str | None = None,
            why: Decision | None = None,
            keep_owner: bool = False,
            source: str | None = None,
        ) -> None: ...

        def _next_request_id(self, c: sqlite3.Connection) -> int: ...

        def _pin(
            self, c: sqlite3.Connection, link_id: int | None
        ) -> tuple[bool, frozenset[str]]: ...

        def _queue_owner_writes(
            self,
            c: sqlite3.Connection,
            request_id: int,
            *,
            origin: str,
            actor: str | None,
            note: str | None,
            now: datetime,
        ) -> None: ...

        def _request_state(self, c: sqlite3.Connection, request_id: int) -> RequestState: ...

        def _self_keys(self, c: sqlite3.Connection, link_id: int) -> frozenset[str]: ...

    @contextmanager
    def _trial(self, dry_run: bool) -> Iterator[sqlite3.Connection]:
        """A write transaction that, for --dry-run, is rolled back: what it would do is
        worked out by the very code that would do it."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("ROLLBACK" if dry_run else "COMMIT")

    def _link_row(self, c: sqlite3.Connection, link_id: int) -> dict[str, Any]:
        rows = self.rows_in(
            c,
            "SELECT id, request_id, source, kind, ref, snap_owner, snap_state, snap_title, "
            "source_updated_at FROM links WHERE id = ?",
            (link_id,),
        )
        if not rows:
            raise NotFound(f"no linked item {link_id}")
        return rows[0]

    def _live_request(self, c: sqlite3.Connection, key: str) -> int:
        rid = parse_request_key(key)
        if c.execute("SELECT 1 FROM requests WHERE id = ?", (rid,)).fetchone():
            return rid
        merged = c.execute(
            "SELECT k.key FROM merges m JOIN requests k ON k.id = m.kept_id "
            "WHERE m.gone_id = ? AND m.split_at IS NULL ORDER BY m.id DESC LIMIT 1",
            (rid,),
        ).fetchone()
        if merged:
            raise NotFound(f"{request_key(rid)} was merged into {merged[0]}")
        raise NotFound(f"no request {request_key(rid)} (see `syncd ls`)")

    def _operator_event(
        self,
        c: sqlite3.Connection,
        rid: int,
        kind: str,
        now: datetime,
        *,
        actor: str | None,
        note: str | None,
        from_value: str | None = None,
        to_value: str | None = None,
        detail: str | None = None,
        field: str | None = None,
    ) -> None:
        """The one writer of the events an operator's identity decisions record."""
        c.execute(
            "INSERT INTO events (request_id, at, source_at, kind, field, source, actor, "
            "from_value, to_value, note, detail) VALUES (?, ?, ?, ?, ?, 'operator', ?, ?, ?, ?, ?)",
            (rid, iso(now), iso(now), kind, field, actor, from_value, to_value, note, detail),
        )

    def _owed(self, c: sqlite3.Connection, rid: int) -> list[dict[str, Any]]:
        return self.rows_in(
            c,
            "SELECT l.source, l.ref, o.value FROM outbox o JOIN links l ON l.id = o.link_id "
            "WHERE o.request_id = ? AND o.field = 'owner' AND o.status = 'pending' "
            "ORDER BY l.id",
            (rid,),
        )

    def merge_requests(
        self,
        key: str,
        other_key: str,
        *,
        actor: str | None,
        note: str | None,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """An operator's `syncd link REQ REQ-7`: REQ-7 folds into REQ, whose owner stands (the
        other's, if REQ has none) and is owed to every item. `syncd split REQ-7` undoes it."""
        now = now or now_utc()
        with self._trial(dry_run) as c:
            rid, other = self._live_request(c, key), self._live_request(c, other_key)
            if other == rid:
                raise NotFound(f"{request_key(rid)} and {other_key} are one request already")
            links = [r[0] for r in c.execute("SELECT id FROM links WHERE request_id = ?", (other,))]
            self._merge(c, rid, other, "operator", now, actor=actor, note=note, keep_owner=True)
            self._hold(c, links, actor, note, now)
            self._queue_owner_writes(c, rid, origin="operator", actor=actor, note=note, now=now)
            return {
                "action": "merged",
                "request": request_key(rid),
                "item": request_key(other),
                "from": request_key(other),
                "owner": self._request_state(c, rid).values["owner"],
                "writes": self._owed(c, rid),
                "dry_run": dry_run,
            }

    def link_item(
        self,
        key: str,
        link_id: int,
        *,
        actor: str | None,
        note: str | None,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """An operator's `syncd link REQ ITEM` (the item's link id; syncd.lookup.find_item):
        the item joins REQ and stays there whatever its text says. REQ's owner stands (the
        item's, if REQ has none) and is owed to the item's tool. An item alone in its request
        takes that request along: a merge, which `syncd split` undoes."""
        now = now or now_utc()
        with self._trial(dry_run) as c:
            rid = self._live_request(c, key)
            rkey = request_key(rid)
            link = self._link_row(c, link_id)
            name = f"{link['source']}:{link['ref']}"
            old = link["request_id"]
            outcome: dict[str, Any] = {
                "item": name,
                "request": rkey,
                "from": request_key(old),
                "dry_run": dry_run,
            }
            if old == rid:
                self._hold(c, [link["id"]], actor, note, now)
                owner = self._request_state(c, rid).values["owner"]
                return {**outcome, "action": "already", "owner": owner, "writes": []}
            alone = (
                c.execute("SELECT count(*) FROM links WHERE request_id = ?", (old,)).fetchone()[0]
                == 1
            )
            apart: set[str] = set()
            if alone:
                self._merge(c, rid, old, name, now, actor=actor, note=note, keep_owner=True)
                outcome["action"] = "merged"
            else:
                apart = self._group_keys(c, old, link["id"])
                self._move_link(c, link, rid, now)
                target = self._request_state(c, rid)
                if target.values["owner"] is None and link["snap_owner"] is not None:
                    c.execute(
                        "UPDATE requests SET owner = ?, owner_at = ?, updated_at = ? WHERE id = ?",
                        (link["snap_owner"], iso(now), iso(now), rid),
                    )
                    self._operator_event(
                        c,
                        rid,
                        "owner_changed",
                        now,
                        actor=actor,
                        note=note,
                        to_value=link["snap_owner"],
                        detail=f"taken from {name}, linked by an operator",
                        field="owner",
                    )
                self._operator_event(
                    c,
                    old,
                    "unlinked",
                    now,
                    actor=actor,
                    note=note,
                    from_value=request_key(old),
                    to_value=rkey,
                    detail=f"{name} left {request_key(old)} for {rkey}",
                )
                self._operator_event(
                    c,
                    rid,
                    "relinked",
                    now,
                    actor=actor,
                    note=note,
                    from_value=request_key(old),
                    to_value=rkey,
                    detail=f"{name} linked by an operator, from {request_key(old)}",
                )
                outcome["action"] = "linked"
            c.execute("UPDATE links SET via = 'operator' WHERE id = ?", (link["id"],))
            self._hold(c, [link["id"]], actor, note, now, apart)
            self._queue_owner_writes(c, rid, origin="operator", actor=actor, note=note, now=now)
            outcome["owner"] = self._request_state(c, rid).values["owner"]
            outcome["writes"] = self._owed(c, rid)
            return outcome

    def _hold(
        self,
        c: sqlite3.Connection,
        link_ids: Iterable[int],
        actor: str | None,
        note: str | None,
        now: datetime,
        apart: Iterable[str] = (),
    ) -> None:
        """Pin items where an operator put them: held there, and set apart from `apart` only
        (the items an operator just took it away from), whatever it was apart from before."""
        ignored = json.dumps(sorted(set(apart)))
        for lid in link_ids:
            c.execute(
                "INSERT INTO link_pins (link_id, held, ignored, actor, note, at) VALUES (?, 1, ?, ?, ?, ?) "
                "ON CONFLICT (link_id) DO UPDATE SET held = 1, ignored = excluded.ignored, "
                "actor = excluded.actor, note = excluded.note, at = excluded.at",
                (lid, ignored, actor, note, iso(now)),
            )

    def _group_keys(self, c: sqlite3.Connection, request_id: int, but: int) -> set[str]:
        """The keys of a request's items other than `but`, and the request's own "req:N":
        what an item taken out of it is set apart from."""
        keys = {
            r[0]
            for r in c.execute(
                "SELECT k.key FROM link_keys k JOIN links l ON l.id = k.link_id "
                "WHERE l.request_id = ? AND l.id != ? AND k.role = 'self'",
                (request_id, but),
            )
        }
        return keys | {f"req:{request_id}"}

    def _set_apart(
        self,
        c: sqlite3.Connection,
        link_id: int,
        keys: Iterable[str],
        actor: str | None,
        note: str | None,
        now: datetime,
    ) -> None:
        """Sticky unlink: declarations naming `keys` no longer link this item (either way)."""
        _held, ignored = self._pin(c, link_id)
        merged = sorted(ignored | set(keys))
        c.execute(
            "INSERT INTO link_pins (link_id, held, ignored, actor, note, at) VALUES (?, 0, ?, ?, ?, ?) "
            "ON CONFLICT (link_id) DO UPDATE SET held = 0, ignored = excluded.ignored, "
            "actor = excluded.actor, note = excluded.note, at = excluded.at",
            (link_id, json.dumps(merged), actor, note, iso(now)),
        )

    def _move_link(
        self, c: sqlite3.Connection, link: dict[str, Any], rid: int, now: datetime
    ) -> None:
        """Move one item to another request. Writes owed to it for the old request are off."""
        c.execute("UPDATE links SET request_id = ? WHERE id = ?", (rid, link["id"]))
        c.execute(
            "UPDATE outbox SET status = 'superseded', updated_at = ? WHERE link_id = ? AND status = 'pending'",
            (iso(now), link["id"]),
        )

    def unlink_item(
        self,
        link_id: int,
        *,
        actor: str | None,
        note: str | None,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """An operator's `syncd unlink ITEM` (the item's link id; syncd.lookup.find_item): the item leaves its request and becomes a request
        of its own, with the owner, state and title its tool last showed. Nothing is written
        to any tool. The declarations that linked it stop linking it (sticky) until its text
        names a different item."""
        now = now or now_utc()
        with self._trial(dry_run) as c:
            link = self._link_row(c, link_id)
            name = f"{link['source']}:{link['ref']}"
            old = link["request_id"]
            others = self.rows_in(
                c, "SELECT id FROM links WHERE request_id = ? AND id != ?", (old, link["id"])
            )
            if not others:
                raise NotFound(f"{name} is alone in {request_key(old)}: nothing to unlink it from")
            # What linked it, and what could link it back: every key of the items it leaves
            # (whichever declared which, then or since), the request's own id, and what it
            # declares now. A declaration naming anything else links it again.
            apart = {
                r[0]
                for r in c.execute(
                    "SELECT key FROM link_keys WHERE link_id = ? AND role = 'declared'",
                    (link["id"],),
                )
            }
            apart |= self._group_keys(c, old, link["id"])
            new = self._next_request_id(c)
            at = link["source_updated_at"]
            c.execute(
                "INSERT INTO requests (id, key, title, state, owner, owner_at, state_at, title_at, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new,
                    request_key(new),
                    link["snap_title"] or "",
                    link["snap_state"] or "open",
                    link["snap_owner"],
                    at,
                    at,
                    at,
                    iso(now),
                    iso(now),
                ),
            )
            self._move_link(c, link, new, now)
            c.execute("UPDATE links SET via = 'unlinked' WHERE id = ?", (link["id"],))
            self._set_apart(c, link["id"], apart, actor, note, now)
            self._operator_event(
                c,
                old,
                "unlinked",
                now,
                actor=actor,
                note=note,
                from_value=request_key(old),
                to_value=request_key(new),
                detail=f"{name} left {request_key(old)}; it is {request_key(new)} now",
            )
            self._operator_event(
                c,
                new,
                "created",
                now,
                actor=actor,
                note=note,
                to_value=link["snap_title"],
                detail=f"{name} unlinked from {request_key(old)}",
            )
            self._operator_event(
                c,
                new,
                "unlinked",
                now,
                actor=actor,
                note=note,
                from_value=request_key(old),
                to_value=request_key(new),
                detail=f"{name} left {request_key(old)}",
            )
            return {
                "action": "unlinked",
                "item": name,
                "from": request_key(old),
                "request": request_key(new),
                "owner": link["snap_owner"],
                "set_apart": sorted(apart),
                "writes": [],
                "dry_run": dry_run,
            }

    def split(
        self,
        key: str,
        *,
        actor: str | None,
        note: str | None,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Undo a merge: REQ (the request merged away) comes back with the items that came
        with it and its own timeline. Its owner is what its first item's tool shows, and
        nothing is written. Declarations between the two sides stop linking them (sticky).
        REQ may also name the request that stayed, when exactly one merge into it is undone-able."""
        now = now or now_utc()
        rid = parse_request_key(key)
        with self._trial(dry_run) as c:
            merges = self.rows_in(
                c,
                "SELECT * FROM merges WHERE split_at IS NULL AND (gone_id = ? OR kept_id = ?) "
                "ORDER BY id DESC",
                (rid, rid),
            )
            gone_side = [m for m in merges if m["gone_id"] == rid]
            m = gone_side[0] if gone_side else None
            if m is None:
                kept_side = [x for x in merges if x["kept_id"] == rid]
                if len(kept_side) == 1:
                    m = kept_side[0]
                elif kept_side:
                    names = ", ".join(x["gone_key"] for x in kept_side)
                    raise NotFound(f"{request_key(rid)} took in {names}: give the one to split off")
                else:
                    raise NotFound(f"no merge of {request_key(rid)} to undo (see `syncd show`)")
            kept, gone = m["kept_id"], m["gone_id"]
            if not c.execute("SELECT 1 FROM requests WHERE id = ?", (kept,)).fetchone():
                raise NotFound(f"{request_key(kept)} was itself merged since; split that first")
            back = [
                r
                for r in self.rows_in(
                    c,
                    "SELECT id, source, ref, snap_owner, source_updated_at FROM links "
                    "WHERE request_id = ? ORDER BY id",
                    (kept,),
                )
                if r["id"] in set(json.loads(m["link_ids"]))
            ]
            stay = self.rows_in(c, "SELECT id FROM links WHERE request_id = ? ORDER BY id", (kept,))
            stay = [r for r in stay if r["id"] not in {b["id"] for b in back}]
            if not back or not stay:
                raise NotFound(
                    f"nothing to split: the items {m['gone_key']} brought have left "
                    f"{request_key(kept)} since"
                    if not back
                    else f"{request_key(kept)} would be left with no items; use `syncd unlink`"
                )
            row = json.loads(m["gone_row"])
            owner = back[0]["snap_owner"]
            c.execute(
                "INSERT INTO requests (id, key, title, state, owner, owner_at, state_at, title_at, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    gone,
                    request_key(gone),
                    row["title"],
                    row["state"],
                    owner,
                    row["owner_at"] if owner == row["owner"] else back[0]["source_updated_at"],
                    row["state_at"],
                    row["title_at"],
                    row["created_at"],
                    iso(now),
                ),
            )
            stay_keys: set[str] = set()
            for s in stay:
                stay_keys |= self._self_keys(c, s["id"])
            stay_keys.add(f"req:{kept}")
            for b in back:
                self._move_link(c, b, gone, now)
                self._set_apart(c, b["id"], stay_keys, actor, note, now)
            moved = [e for e in json.loads(m["event_ids"])]
            c.executemany(
                "UPDATE events SET request_id = ? WHERE id = ? AND request_id = ?",
                [(gone, e, kept) for e in moved],
            )
            c.execute(
                "UPDATE merges SET split_at = ?, split_by = ? WHERE id = ?",
                (iso(now), actor, m["id"]),
            )
            names = ", ".join(f"{b['source']}:{b['ref']}" for b in back)
            for target in (kept, gone):
                self._operator_event(
                    c,
                    target,
                    "split",
                    now,
                    actor=actor,
                    note=note,
                    from_value=request_key(kept),
                    to_value=request_key(gone),
                    detail=f"{request_key(gone)} split off {request_key(kept)} again, with {names}",
                )
            return {
                "action": "split",
                "request": request_key(gone),
                "from": request_key(kept),
                "items": [f"{b['source']}:{b['ref']}" for b in back],
                "owner": owner,
                "writes": [],
                "dry_run": dry_run,
            }

    def relink_report(self, link_on: LinkOn) -> list[Finding]:
        """What the current rule makes of the whole ledger (see matching.rematch)."""
        c = self.conn
        keys: dict[int, dict[str, set[str]]] = {}
        for lid, key, role in c.execute("SELECT link_id, key, role FROM link_keys"):
            keys.setdefault(lid, {}).setdefault(role, set()).add(key)
        pins = {
            lid: (bool(held), frozenset(json.loads(ignored)))
            for lid, held, ignored in c.execute("SELECT link_id, held, ignored FROM link_pins")
        }
        items = []
        for lid, rid, source, ref, via, trusted in c.execute(
            "SELECT id, request_id, source, ref, via, trusted FROM links ORDER BY id"
        ):
            k = keys.get(lid, {})
            linking = set(k.get("declared", set()))
            if link_on == "any-mention" and trusted:
                linking |= k.get("mention", set())
            held, ignored = pins.get(lid, (False, frozenset()))
            items.append(
                MatchItem(
                    lid,
                    rid,
                    f"{source}:{ref}",
                    frozenset(k.get("self", set())),
                    tuple(sorted(linking)),
                    ignored,
                    held,
                    via,
                )
            )
        return rematch(items)
