"""The ledger: one SQLite file (WAL) holding requests, links, people, events and the outbox.

The schema is plain SQL so that `sqlite3`, `sqlite-utils` and Datasette can read it without
syncd (see README "The ledger"). Migrations are named and recorded in `migrations`.
Timestamps are ISO 8601 UTC strings, which sort correctly as text.

One Ledger object is the daemon's single writer; its lock serialises the scheduler's
threads. Other processes (the operator CLI) open their own connection: WAL lets them read
while the daemon writes, and busy_timeout queues their rare writes behind the daemon's.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from syncd import commands

# Names imported `as` themselves (here and below) are re-exported: code and tests import
# them from syncd.ledger.
from syncd.clock import iso as iso
from syncd.clock import now_utc as now_utc
from syncd.clock import parse_iso as parse_iso
from syncd.config import Person
from syncd.errors import LedgerBusy, LedgerError, NotFound
from syncd.filemodes import create_private, ledger_files, restrict_existing
from syncd.ledger_identity import IdentityOps
from syncd.matching import (
    Candidate,
    Decision,
    LinkOn,
    Place,
    decide,
    linking_keys,
    relations,
)
from syncd.models import Cursor, Observation, Page, Quarantined
from syncd.people import Directory, pick_owner
from syncd.reconcile import (
    FIELDS,
    LinkState,
    Plan,
    RequestState,
    owed_writes,
    plan_observation,
)
from syncd.request_keys import parse_request_key as parse_request_key
from syncd.request_keys import request_key as request_key
from syncd.routing_ledger import record_item_facts
from syncd.schema import MIGRATIONS


def _create_empty(path: Path) -> None:
    """Create a new ledger file as an empty file (which SQLite takes as an empty database).

    SQLite itself creates database files with mode 0644 minus the umask, so group write is
    never possible and others may read. Creating the file here with at most 0660 minus the
    umask, others never, lets the admin decide the group: under the unit's UMask=0007 the
    ledger is 0660, so the operators' group can run `syncd assign`; under 022 it is 0640.
    SQLite gives the -wal and -shm files the database file's mode; any left by an older
    syncd with looser modes are tightened.
    """
    create_private(path)
    for extra in ledger_files(path)[1:]:
        restrict_existing(extra)


# What a user outside the operators' group is told (README, "Operators").
OPERATORS_HINT = (
    "operators need to be in the ledger's group, syncd-operators in the service guide, "
    "and to log in again after being added"
)


def _readable(path: Path) -> bool:
    """False only when permissions stop this user: a directory on the way that cannot be
    searched, or a ledger file that cannot be read. (A missing ledger is said otherwise.)"""
    for parent in path.parents:
        if parent.exists() and not os.access(parent, os.X_OK):
            return False
    return not path.exists() or os.access(path, os.R_OK)


def _joined_via(decision: Decision, obs: Observation, link_on: LinkOn) -> str:
    """How a new item came to its request, for links.via."""
    if decision.action in ("new", "ambiguous"):
        return "created"
    if link_on == "declared" or any(c.key in obs.declared for c in decision.evidence):
        return "declared"
    return "mention"


@dataclass
class ApplyStats:
    observations: int = 0
    created: int = 0
    changed: int = 0
    conflicts: int = 0
    quarantined: int = 0


class Ledger(IdentityOps):
    def __init__(
        self,
        path: str | Path,
        *,
        readonly: bool = False,
        daemon: bool = False,
        create: bool = True,
    ) -> None:
        """Open (and for writing, migrate) the ledger; create it only with `create` (`run`
        and `sync`: a command that needs an existing ledger must not leave an empty one
        behind a typo). `daemon` takes the daemon lock first, so a second daemon refuses
        before it touches the schema."""
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._lockfile: int | None = None
        if readonly and not _readable(self.path):
            raise LedgerError(f"cannot read {self.path}: permission denied ({OPERATORS_HINT})")
        if (readonly or not create) and not self.path.is_file():
            raise LedgerError(
                f"no ledger at {self.path} (has `syncd run` or `syncd sync` run yet?)"
            )
        if not readonly:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LedgerError(f"cannot create {self.path.parent}: {exc.strerror}") from None
            try:
                _create_empty(self.path)
            except OSError as exc:
                raise LedgerError(f"cannot open or create {self.path}: {exc.strerror}") from None
        if daemon:
            self.acquire_daemon_lock()
        try:
            # A URI names the file exactly: '#', '?' and '%41' in a path are quoted, not
            # taken for a fragment, parameters or an escape.
            uri = self.path.absolute().as_uri() + ("?mode=ro" if readonly else "?mode=rw")
            conn = sqlite3.connect(
                uri, uri=True, check_same_thread=False, isolation_level=None, timeout=30
            )
            conn.execute("PRAGMA busy_timeout = 30000")
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            else:
                # Belt and braces with mode=ro: this connection refuses any write statement.
                conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            self._release_daemon_lock()
            raise LedgerError(f"cannot open ledger {self.path}: {exc}") from None
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        try:
            if not readonly:
                self.migrate()
            elif not (applied := self._applied_migrations()):
                raise LedgerError(f"{self.path} is not a syncd ledger")
            elif missing := [name for name, _ in MIGRATIONS if name not in applied]:
                # Read-only opens never migrate; without this, a read would fail on a
                # missing table or column with an internal error.
                raise LedgerError(
                    f"{self.path} was written by an older syncd (it lacks {', '.join(missing)}); "
                    "start the daemon once, or run `syncd sync --once`, to upgrade it"
                )
        except sqlite3.DatabaseError as exc:
            # SQLite opens any file lazily; a path naming something else fails only here.
            conn.close()
            self._release_daemon_lock()
            raise LedgerError(f"{self.path} is not a syncd ledger: {exc}") from None

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self.conn.close()
            self._release_daemon_lock()

    def _release_daemon_lock(self) -> None:
        if self._lockfile is not None:
            os.close(self._lockfile)
            self._lockfile = None

    def quiesce(self, timeout: float) -> bool:
        """Wait for the write transaction in progress to end, then hold off new ones for
        good: for a process about to exit while a thread is still busy elsewhere (a poll
        stuck in a slow HTTP request), so it never leaves mid-transaction. False if a
        transaction did not end within `timeout` (SQLite still rolls it back whole)."""
        return self._lock.acquire(timeout=timeout)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def acquire_daemon_lock(self) -> None:
        """Make this process the ledger's only daemon. A second `syncd run` fails here."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LedgerBusy(
                f"another syncd daemon (pid {holder}) is already running on {self.path}; "
                "stop it first, or give this one a different ledger"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lockfile = fd

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. BEGIN IMMEDIATE takes the write lock up front, so a
        concurrent CLI write waits instead of failing half-way."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")

    def _applied_migrations(self) -> set[str]:
        if not self.db["migrations"].exists():
            return set()
        return {r["name"] for r in self.db["migrations"].rows}

    def migrate(self) -> None:
        with self.transaction() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            done = {r[0] for r in c.execute("SELECT name FROM migrations")}
            for name, sql in MIGRATIONS:
                if name in done:
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute("INSERT INTO migrations VALUES (?, ?)", (name, iso(now_utc())))

    # -- people ------------------------------------------------------------------------

    def sync_people(self, people: Iterable[Person]) -> None:
        """Make the people table match config, and map identities seen before."""
        with self.transaction() as c:
            c.execute("UPDATE identities SET person_id = NULL")
            c.execute("DELETE FROM people")
            for p in people:
                c.execute("INSERT INTO people (id, name) VALUES (?, ?)", (p.id, p.name))
                for kind in p.handles:
                    for h in p.handles_for(kind):
                        c.execute(
                            "INSERT INTO identities (kind, handle, person_id) VALUES (?, ?, ?) "
                            "ON CONFLICT (kind, handle) DO UPDATE SET person_id = excluded.person_id",
                            (kind, h, p.id),
                        )

    # -- applying observations ---------------------------------------------------------

    def apply_page(
        self,
        source: str,
        kind: str,
        page: Page,
        directory: Directory,
        now: datetime | None = None,
        *,
        commands: bool = False,
        link_on: LinkOn = "declared",
    ) -> ApplyStats:
        """Apply one page and store its cursor, in one transaction. With `commands`, the
        /assign commands in the items' comments are applied too (syncd.commands).
        `link_on` is the config's [matching] rule (see syncd.matching)."""
        now = now or now_utc()
        stats = ApplyStats()
        # Handles already recorded in this transaction: recording one again (same time,
        # same mapping) would change nothing, and most pages repeat a few owners.
        handles: set[tuple[str, str]] = set()
        with self.transaction() as c:
            # Items of this source in quarantine now: one that reads cleanly leaves it.
            held = {
                ref
                for (ref,) in c.execute(
                    "SELECT ref FROM quarantine WHERE source = ? AND released_at IS NULL "
                    "AND ref IS NOT NULL",
                    (source,),
                )
            }
            for obs in page.observations:
                plan = self._apply_observation(
                    c, obs, kind, directory, now, handles, commands, link_on
                )
                if obs.ref in held:
                    self._release(c, source, obs.ref, now)
                stats.observations += 1
                stats.created += plan.request_id is None
                stats.changed += bool(plan.canonical) and plan.request_id is not None
                stats.conflicts += sum(e.kind == "conflict" for e in plan.events)
            for q in page.quarantined:
                self._quarantine(c, q, now)
                stats.quarantined += 1
            if page.state:
                self._store_state(c, source, page.state)
            if page.cursor is not None:
                c.execute(
                    "INSERT INTO cursors (source, value, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (source) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    (source, json.dumps(page.cursor), iso(now)),
                )
            c.execute(
                "INSERT INTO source_status (source, kind, items_seen) VALUES (?, ?, ?) "
                "ON CONFLICT (source) DO UPDATE SET items_seen = items_seen + excluded.items_seen",
                (source, kind, stats.observations),
            )
        return stats

    def _store_state(
        self, c: sqlite3.Connection, source: str, changes: dict[str, str | None]
    ) -> None:
        gone = [(source, k) for k, v in changes.items() if v is None]
        kept = [(source, k, v) for k, v in changes.items() if v is not None]
        c.executemany("DELETE FROM adapter_state WHERE source = ? AND key = ?", gone)
        c.executemany(
            "INSERT INTO adapter_state (source, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (source, key) DO UPDATE SET value = excluded.value",
            kept,
        )

    def state_store(self, source: str) -> SourceState:
        """The adapter_state rows of one source, as the StateStore an adapter reads."""
        return SourceState(self, source)

    def _quarantine(self, c: sqlite3.Connection, q: Quarantined, now: datetime) -> None:
        ts = iso(now)
        if q.ref is not None:
            updated = c.execute(
                "UPDATE quarantine SET reason = ?, payload = ?, last_seen_at = ?, "
                "times = times + 1 WHERE source = ? AND ref = ? AND released_at IS NULL",
                (q.reason, q.payload[:4000], ts, q.source, q.ref),
            ).rowcount
            if updated:
                return
        c.execute(
            "INSERT INTO quarantine (source, ref, reason, payload, at, last_seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (q.source, q.ref, q.reason, q.payload[:4000], ts, ts),
        )
        # An item syncd already tracks: its request's timeline says why it stopped moving.
        c.execute(
            "INSERT INTO events (request_id, at, kind, source, detail) "
            "SELECT request_id, ?, 'quarantined', source, ? FROM links "
            "WHERE source = ? AND ref = ?",
            (ts, f"{q.ref}: {q.reason}", q.source, q.ref),
        )

    def _release(self, c: sqlite3.Connection, source: str, ref: str, now: datetime) -> None:
        ts = iso(now)
        reasons = [
            r
            for (r,) in c.execute(
                "SELECT reason FROM quarantine WHERE source = ? AND ref = ? "
                "AND released_at IS NULL",
                (source, ref),
            )
        ]
        c.execute(
            "UPDATE quarantine SET released_at = ? WHERE source = ? AND ref = ? "
            "AND released_at IS NULL",
            (ts, source, ref),
        )
        c.execute(
            "INSERT INTO events (request_id, at, kind, source, detail) "
            "SELECT request_id, ?, 'released', source, ? FROM links WHERE source = ? AND ref = ?",
            (ts, f"{ref} reads cleanly again (was: {'; '.join(reasons)})", source, ref),
        )

    def _link_state(self, row: sqlite3.Row | tuple[Any, ...]) -> LinkState:
        lid, rid, source, kind, ref, so, ss, st = row
        return LinkState(lid, rid, source, kind, ref, {"owner": so, "state": ss, "title": st})

    _LINK_COLS = "id, request_id, source, kind, ref, snap_owner, snap_state, snap_title"

    def _request_state(self, c: sqlite3.Connection, request_id: int) -> RequestState:
        row = c.execute(
            "SELECT id, key, owner, state, title, owner_at, state_at, title_at FROM requests WHERE id = ?",
            (request_id,),
        ).fetchone()
        rid, key, owner, state, title, oa, sa, ta = row
        return RequestState(
            rid,
            key,
            {"owner": owner, "state": state, "title": title},
            {"owner": parse_iso(oa), "state": parse_iso(sa), "title": parse_iso(ta)},
        )

    # -- identity: which request an item belongs to (decisions in syncd.matching) ----------

    def _self_keys(self, c: sqlite3.Connection, link_id: int) -> frozenset[str]:
        return frozenset(
            r[0]
            for r in c.execute(
                "SELECT key FROM link_keys WHERE link_id = ? AND role = 'self'", (link_id,)
            )
        )

    def _pin(self, c: sqlite3.Connection, link_id: int | None) -> tuple[bool, frozenset[str]]:
        """An operator's say on an item: held where `syncd link` put it, and the keys a
        `syncd unlink` or `split` set it apart from."""
        if link_id is None:
            return False, frozenset()
        row = c.execute(
            "SELECT held, ignored FROM link_pins WHERE link_id = ?", (link_id,)
        ).fetchone()
        if row is None:
            return False, frozenset()
        return bool(row[0]), frozenset(json.loads(row[1]))

    def _candidates(
        self,
        c: sqlite3.Connection,
        link_id: int | None,
        own_keys: Iterable[str],
        linking: Iterable[str],
        link_on: LinkOn,
    ) -> list[Candidate]:
        """The requests an item's declarations meet: its declared keys that name a linked
        item (or a request, "req:N"), and, given own_keys, linked items declaring it."""
        out: list[Candidate] = []
        found: list[tuple[str, str, int, int, str, str]] = []
        for key in linking:
            if key.startswith("req:"):
                rid = int(key[4:]) if key[4:].isdigit() else -1
                if c.execute("SELECT 1 FROM requests WHERE id = ?", (rid,)).fetchone():
                    out.append(Candidate(rid, key, "request", request_key(rid)))
                continue
            found += [
                (key, "declares", *r)
                for r in c.execute(
                    "SELECT l.id, l.request_id, l.source, l.ref FROM link_keys k "
                    "JOIN links l ON l.id = k.link_id WHERE k.key = ? AND k.role = 'self'",
                    (key,),
                )
            ]
        # Under any-mention a trusted item's mentions declare too, as they used to.
        mentions = "k.role = 'mention' AND l.trusted = 1" if link_on == "any-mention" else "0"
        for key in own_keys:
            found += [
                (key, "declared_by", *r)
                for r in c.execute(
                    "SELECT l.id, l.request_id, l.source, l.ref FROM link_keys k "
                    "JOIN links l ON l.id = k.link_id "
                    f"WHERE k.key = ? AND (k.role = 'declared' OR ({mentions}))",
                    (key,),
                )
            ]
        for key, direction, lid, rid, source, ref in found:
            if lid == link_id:
                continue
            out.append(
                Candidate(
                    rid,
                    key,
                    direction,  # type: ignore[arg-type]
                    f"{source}:{ref}",
                    self._self_keys(c, lid),
                    self._pin(c, lid)[1],
                )
            )
        return out

    def _place(
        self,
        c: sqlite3.Connection,
        obs: Observation,
        link: LinkState | None,
        previous: Iterable[str],
        link_on: LinkOn,
        now: datetime,
    ) -> tuple[int | None, Decision]:
        """Decide the request of one observation, fold any requests the decision merges, and
        return the request it belongs to (None: a new one)."""
        linking = linking_keys(obs, link_on)
        if link is not None:
            added = [k for k in linking if k not in set(previous)]
            if not added:  # the common case: nothing new declared, no queries at all
                return link.request_id, Decision("keep", link.request_id)
            held, ignored = self._pin(c, link.id)
            alone = (
                c.execute(
                    "SELECT count(*) FROM links WHERE request_id = ?", (link.request_id,)
                ).fetchone()[0]
                == 1
            )
            place: Place | None = Place(link.request_id, alone, held)
            cands = self._candidates(c, link.id, (), added, link_on)
        else:
            place, ignored = None, frozenset()
            cands = self._candidates(c, None, obs.keys, linking, link_on)
        decision = decide(place, cands, link_on=link_on, own_keys=obs.keys, ignored=ignored)
        target: int | None = decision.request_id if decision.action != "ambiguous" else None
        if place is not None and decision.action in ("keep", "ambiguous"):
            target = place.request_id
        if decision.action == "merge":
            name = f"{obs.source}:{obs.ref}"
            for gone in decision.merge:
                self._merge(
                    c, decision.request_id or 0, gone, name, now, why=decision, source=obs.source
                )
            if link is not None and place is not None and place.request_id in decision.merge:
                # A lone item that joined by its new declaration: say so in `show`.
                how = "declared" if link_on == "declared" else "mention"
                c.execute("UPDATE links SET via = ? WHERE id = ?", (how, link.id))
        return target, decision

    def _record_ambiguity(
        self, c: sqlite3.Connection, obs: Observation, rid: int, decision: Decision, now: datetime
    ) -> None:
        """Evidence an operator needs to decide: on the item's request and on every request
        its declarations name, one conflict event each, once (only new declarations count)."""
        name = f"{obs.source}:{obs.ref}"
        named = sorted({cand.request_id for cand in decision.evidence})
        # Short enough for history's WHY column: the decision first, then the evidence.
        detail = (
            f"not merged ({decision.reason}); decide with `syncd link REQ {obs.ref}`: "
            + "; ".join(
                f"{cand.describe(name)} ({request_key(cand.request_id)})"
                for cand in decision.evidence
            )
        )
        for target in sorted({rid, *named}):
            c.execute(
                "INSERT INTO events (request_id, at, source_at, kind, field, source, from_value, "
                "to_value, detail) VALUES (?, ?, ?, 'conflict', 'link', ?, ?, ?, ?)",
                (
                    target,
                    iso(now),
                    iso(obs.updated_at),
                    obs.source,
                    ", ".join(request_key(n) for n in named),
                    request_key(rid),
                    detail,
                ),
            )

    def _next_request_id(self, c: sqlite3.Connection) -> int:
        """A new request's id. Ids of requests merged away stay taken: REQ-3 keeps meaning
        the request that was merged (and `syncd split` can bring it back)."""
        row = c.execute(
            "SELECT max(coalesce((SELECT max(id) FROM requests), 0), "
            "coalesce((SELECT max(gone_id) FROM merges), 0))"
        ).fetchone()
        return int(row[0]) + 1

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
    ) -> None:
        """Fold request `gone` into `keep`. Links, events and owed writes move; the owner set
        later wins (with keep_owner, `keep`'s owner stands unless it has none), and a
        different owner on the other side is recorded as a conflict. The merge is recorded in
        `merges`, so `syncd split` can undo it."""
        ts = iso(now)
        # Where it happened: the operator, or the source of the item that declared it.
        src = "operator" if actor else (source or via)
        k, g = self._request_state(c, keep), self._request_state(c, gone)
        gone_row = self.rows_in(c, "SELECT * FROM requests WHERE id = ?", (gone,))[0]
        link_ids = [r[0] for r in c.execute("SELECT id FROM links WHERE request_id = ?", (gone,))]
        event_ids = [r[0] for r in c.execute("SELECT id FROM events WHERE request_id = ?", (gone,))]
        k_at, g_at = k.times.get("owner"), g.times.get("owner")
        if g.values["owner"] != k.values["owner"] and g.values["owner"] is not None:
            take = k.values["owner"] is None or (
                not keep_owner and g_at is not None and (k_at is None or g_at > k_at)
            )
            winner, loser = (g, k) if take else (k, g)
            if take:
                c.execute(
                    "UPDATE requests SET owner = ?, owner_at = ?, updated_at = ? WHERE id = ?",
                    (g.values["owner"], iso(g_at), ts, keep),
                )
            if loser.values["owner"] is not None:
                rule = "linked by an operator" if keep_owner else "the later one wins"
                c.execute(
                    "INSERT INTO events (request_id, at, kind, field, source, from_value, to_value, detail) "
                    "VALUES (?, ?, 'conflict', 'owner', ?, ?, ?, ?)",
                    (
                        keep,
                        ts,
                        src,
                        loser.values["owner"],
                        winner.values["owner"],
                        f"{g.key} merged into {k.key} with a different owner; {rule}",
                    ),
                )
        c.execute("UPDATE links SET request_id = ? WHERE request_id = ?", (keep, gone))
        c.execute("UPDATE events SET request_id = ? WHERE request_id = ?", (keep, gone))
        c.execute(
            "UPDATE outbox SET status = 'superseded', updated_at = ? WHERE request_id = ? AND status = 'pending'",
            (ts, gone),
        )
        c.execute("UPDATE outbox SET request_id = ? WHERE request_id = ?", (keep, gone))
        self._repoint(c, gone, keep)
        if why is not None and why.evidence:
            detail = "; ".join(cand.describe(via) for cand in why.evidence)
        elif actor is not None:
            detail = f"an operator linked {g.key if via == 'operator' else via} into {k.key}"
        else:
            detail = f"{via} links both {k.key} and {g.key}: one request"
        detail += f" (undo: syncd split {g.key})"
        c.execute(
            "INSERT INTO events (request_id, at, kind, source, actor, from_value, to_value, note, detail) "
            "VALUES (?, ?, 'merged', ?, ?, ?, ?, ?, ?)",
            (keep, ts, src, actor, g.key, k.key, note, detail),
        )
        c.execute(
            "INSERT INTO merges (kept_id, gone_id, gone_key, gone_row, link_ids, event_ids, via, "
            "actor, note, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                keep,
                gone,
                g.key,
                json.dumps(gone_row),
                json.dumps(link_ids),
                json.dumps(event_ids),
                via,
                actor,
                note,
                ts,
            ),
        )
        c.execute("DELETE FROM requests WHERE id = ?", (gone,))

    def _repoint(self, c: sqlite3.Connection, gone: int, keep: int) -> None:
        """Every other row that names request `gone` (follow-through's handoffs, who touched
        it, comment commands, and whatever later migrations add) now names `keep`. Where
        `keep` has its own row already (one per request, or per request and person), that
        one stays: it is the request's own, newer state."""
        refs = [
            (table, fk[3])
            for (table,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            for fk in c.execute(f"PRAGMA foreign_key_list({table})")
            if fk[2] == "requests" and table not in ("links", "events", "outbox")
        ]
        for table, column in refs:
            c.execute(f"UPDATE OR IGNORE {table} SET {column} = ? WHERE {column} = ?", (keep, gone))
            c.execute(f"DELETE FROM {table} WHERE {column} = ?", (gone,))

    @staticmethod
    def rows_in(c: sqlite3.Connection, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cur = c.execute(sql, tuple(args))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def _unrecorded_write(
        self,
        c: sqlite3.Connection,
        link: LinkState,
        obs: Observation,
        kind: str,
        d: Directory,
        now: datetime,
    ) -> LinkState:
        """A write syncd sent just before a crash, never recorded, read back by the next
        poll: the tool shows the value of the latest write syncd attempted on this link and
        never heard back from (no outcome, not even an error), though the owner has moved on
        elsewhere since. That is syncd's own echo, not a person's newer change, which would
        otherwise undo the change made elsewhere: the link takes it as its snapshot."""
        snap = link.snapshot.get("owner")
        seen = pick_owner(obs.owners, snap, kind, d)
        if seen == snap:
            return link
        row = c.execute(
            "SELECT id, value, status FROM outbox WHERE link_id = ? AND field = 'owner' "
            "AND attempted_at IS NOT NULL ORDER BY id DESC LIMIT 1",
            (link.id,),
        ).fetchone()
        if row is None or row[1] != seen or row[2] not in ("pending", "superseded"):
            return link
        if c.execute("SELECT last_error FROM outbox WHERE id = ?", (row[0],)).fetchone()[0]:
            return link  # that attempt failed: the value there is someone else's doing
        if row[2] == "pending":
            c.execute(
                "UPDATE outbox SET status = 'done', updated_at = ? WHERE id = ?", (iso(now), row[0])
            )
        return replace(link, snapshot={**link.snapshot, "owner": seen})

    def _apply_observation(
        self,
        c: sqlite3.Connection,
        obs: Observation,
        kind: str,
        d: Directory,
        now: datetime,
        handles: set[tuple[str, str]] | None = None,
        run_commands: bool = False,
        link_on: LinkOn = "declared",
    ) -> Plan:
        row = c.execute(
            f"SELECT {self._LINK_COLS} FROM links WHERE source = ? AND ref = ?",
            (obs.source, obs.ref),
        ).fetchone()
        link = self._link_state(row) if row else None
        stored: set[tuple[Any, ...]] = set()
        if link is not None:
            stored = set(
                c.execute(
                    "SELECT link_id, key, role, relation FROM link_keys WHERE link_id = ?",
                    (link.id,),
                )
            )
        roles = ("declared", "mention") if link_on == "any-mention" else ("declared",)
        request_id, decision = self._place(
            c, obs, link, [r[1] for r in stored if r[2] in roles], link_on, now
        )
        if link is not None and link.request_id != request_id:
            link = self._link_state(
                c.execute(
                    f"SELECT {self._LINK_COLS} FROM links WHERE id = ?", (link.id,)
                ).fetchone()
            )
        request = self._request_state(c, request_id) if request_id is not None else None
        echoed = False
        if link is not None:
            recorded = link
            link = self._unrecorded_write(c, link, obs, kind, d, now)
            echoed = link is not recorded  # the snapshot moved: what is owed is recomputed
        plan = plan_observation(obs, kind, link, request, d)
        if plan.new_link and request is not None:
            how = "; ".join(e.describe(f"{obs.source}:{obs.ref}") for e in decision.evidence)
            plan.events[0] = replace(plan.events[0], detail=how or None)
        ts = iso(now)
        if link is not None and "owner" in plan.confirmed_times:
            # The tool shows the canonical owner that a pending write was sent to set: that
            # is syncd's own write, sent before a crash and never recorded, not a person
            # confirming the owner. It must not move the owner's time, and it is done.
            echo = c.execute(
                "SELECT id FROM outbox WHERE link_id = ? AND field = 'owner' AND status = 'pending' "
                "AND attempted_at IS NOT NULL AND value IS ?",
                (link.id, plan.snapshot["owner"]),
            ).fetchone()
            if echo:
                del plan.confirmed_times["owner"]
                c.execute(
                    "UPDATE outbox SET status = 'done', updated_at = ? WHERE id = ?", (ts, echo[0])
                )
        if plan.request_id is None:
            cur = c.execute(
                "INSERT INTO requests (id, key, title, state, owner, owner_at, state_at, title_at, created_at, updated_at) "
                "VALUES (?, '', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self._next_request_id(c),
                    plan.canonical["title"] or "",
                    plan.canonical["state"],
                    plan.canonical["owner"],
                    iso(plan.canonical_times["owner"]),
                    iso(plan.canonical_times["state"]),
                    iso(plan.canonical_times["title"]),
                    ts,
                    ts,
                ),
            )
            rid = int(cur.lastrowid or 0)
            c.execute("UPDATE requests SET key = ? WHERE id = ?", (request_key(rid), rid))
        else:
            rid = plan.request_id
            if plan.canonical:
                sets = ", ".join(f"{f} = ?, {f}_at = ?" for f in plan.canonical)
                args: list[Any] = []
                for f, v in plan.canonical.items():
                    args += [v if f != "title" else (v or ""), iso(plan.canonical_times[f])]
                c.execute(
                    f"UPDATE requests SET {sets}, updated_at = ? WHERE id = ?", (*args, ts, rid)
                )
        for f, at in plan.confirmed_times.items():
            c.execute(f"UPDATE requests SET {f}_at = ? WHERE id = ?", (iso(at), rid))
        snap = plan.snapshot
        if link is None:
            cur = c.execute(
                "INSERT INTO links (request_id, source, kind, ref, url, snap_owner, snap_state, snap_title, "
                "source_updated_at, first_seen_at, last_seen_at, via, trusted) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rid,
                    obs.source,
                    kind,
                    obs.ref,
                    obs.url,
                    snap["owner"],
                    snap["state"],
                    snap["title"],
                    iso(obs.updated_at),
                    ts,
                    ts,
                    _joined_via(decision, obs, link_on),
                    int(obs.author_trusted),
                ),
            )
            link_id = int(cur.lastrowid or 0)
        else:
            link_id = link.id
            c.execute(
                "UPDATE links SET url = ?, snap_owner = ?, snap_state = ?, snap_title = ?, "
                "source_updated_at = ?, last_seen_at = ?, trusted = ? WHERE id = ?",
                (
                    obs.url,
                    snap["owner"],
                    snap["state"],
                    snap["title"],
                    iso(obs.updated_at),
                    ts,
                    int(obs.author_trusted),
                    link_id,
                ),
            )
        # Its own keys, what it declares (links), what it mentions (relations, shown only).
        key_rows: list[tuple[Any, ...]] = [
            *((link_id, k, "self", None) for k in obs.keys),
            *((link_id, k, "declared", None) for k in obs.declared if k not in obs.keys),
            *((link_id, k, "mention", kind_) for k, kind_ in relations(obs)),
        ]
        # A new link has no keys yet; an existing one keeps its rows when they are the same,
        # which they almost always are (rewriting them was most of re-reading an item).
        if link is None or stored != set(key_rows):
            if link is not None:
                c.execute("DELETE FROM link_keys WHERE link_id = ?", (link_id,))
            c.executemany(
                "INSERT OR IGNORE INTO link_keys (link_id, key, role, relation) VALUES (?, ?, ?, ?)",
                key_rows,
            )
        record_item_facts(c, rid, link_id, obs, kind, d)
        for handle in obs.owners:
            if handles is not None:
                if (kind, handle) in handles:
                    continue
                handles.add((kind, handle))
            c.execute(
                "INSERT INTO identities (kind, handle, person_id, first_seen_at, last_seen_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, handle) DO UPDATE SET last_seen_at = excluded.last_seen_at, "
                "first_seen_at = coalesce(identities.first_seen_at, excluded.first_seen_at)",
                (
                    kind,
                    handle,
                    d.owner_for(kind, handle) if d.is_mapped(kind, handle) else None,
                    ts,
                    ts,
                ),
            )
        handoffs: list[int] = []
        for e in plan.events:
            cur = c.execute(
                "INSERT INTO events (request_id, at, source_at, kind, field, source, actor, from_value, "
                "to_value, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rid,
                    ts,
                    iso(e.source_at),
                    e.kind,
                    e.field,
                    obs.source,
                    e.actor,
                    e.from_value,
                    e.to_value,
                    e.detail,
                ),
            )
            if e.kind == "owner_changed":
                handoffs.append(int(cur.lastrowid or 0))
        if decision.action == "ambiguous":
            self._record_ambiguity(c, obs, rid, decision, now)
        # A new request has one link, whose snapshot is the canonical value: nothing owed.
        if plan.request_id is not None and (
            plan.new_link
            or decision.action == "merge"
            or "owner" in plan.canonical
            or link is None
            or echoed
            or snap["owner"] != link.snapshot.get("owner")
        ):
            self._queue_owner_writes(c, rid, origin=obs.source, actor=None, note=None, now=now)
        if plan.request_id is not None:
            for event_id in handoffs:
                self._queue_comments(c, rid, event_id, origin=obs.source, now=now)
        if run_commands and obs.activity:
            self._apply_commands(c, obs, kind, d, rid, now)
        return plan

    def _queue_comments(
        self, c: sqlite3.Connection, request_id: int, event_id: int, *, origin: str, now: datetime
    ) -> None:
        """Owe a handoff comment to every linked item outside the source where the handoff
        was made. Whether one is posted is the source's policy, decided when the outbox is
        drained (syncd.notes.comment_due); the row is what makes posting it exactly once."""
        ts = iso(now)
        c.execute(
            "INSERT OR IGNORE INTO outbox (link_id, request_id, field, value, origin, status, attempts, "
            "next_attempt_at, created_at, updated_at, event_id) "
            "SELECT l.id, l.request_id, 'comment', e.to_value, ?, 'pending', 0, ?, ?, ?, e.id "
            "FROM links l JOIN events e ON e.id = ? WHERE l.request_id = ? AND l.source != ?",
            (origin, ts, ts, ts, event_id, request_id, origin),
        )

    def _apply_commands(
        self,
        c: sqlite3.Connection,
        obs: Observation,
        kind: str,
        d: Directory,
        request_id: int,
        now: datetime,
    ) -> None:
        """Hand the request off as the item's comments command (`/assign @bob note`), each
        comment once; a refused command is kept with its reason, for `history --all`."""
        ts = iso(now)
        for act in obs.activity:
            if act.kind != "comment" or act.by_syncd or act.id is None:
                continue
            command = commands.parse(act.text)
            ignored = commands.ignored_reason(act.text) if command is None else None
            if command is None and ignored is None:
                continue
            if c.execute(
                "SELECT 1 FROM comment_commands WHERE source = ? AND comment_id = ?",
                (obs.source, act.id),
            ).fetchone():
                continue  # read again (an overlap, an edit): a command runs once
            if command is None:
                command = commands.Command("assign", None, None, "/assign (quoted or in code)")
                decision = commands.Decision(
                    False, actor=d.owner_for(kind, act.actor), reason=ignored
                )
            else:
                decision = commands.decide(
                    command, act.actor, act.trusted, kind, d, edited=act.edited
                )
            request = self._request_state(c, request_id)
            owner_at = request.times.get("owner")
            if decision.ok and owner_at is not None and owner_at > act.at:
                decision = commands.Decision(
                    False,
                    actor=decision.actor,
                    reason="the request changed hands after this comment was written; "
                    "the later handoff stands",
                )
            if decision.ok and decision.owner == request.values.get("owner"):
                outcome = "nothing"
            else:
                outcome = "handed_off" if decision.ok else "refused"
            c.execute(
                "INSERT INTO comment_commands (source, comment_id, request_id, ref, at, source_at, "
                "actor, command, outcome, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    obs.source,
                    act.id,
                    request_id,
                    obs.ref,
                    ts,
                    iso(act.at),
                    decision.actor,
                    command.line,
                    outcome,
                    decision.reason,
                ),
            )
            if outcome == "refused":
                c.execute(
                    "INSERT INTO events (request_id, at, source_at, kind, source, actor, detail) "
                    "VALUES (?, ?, ?, 'command_refused', ?, ?, ?)",
                    (
                        request_id,
                        ts,
                        iso(act.at),
                        obs.source,
                        decision.actor,
                        f"{command.line}: {decision.reason}",
                    ),
                )
            elif outcome == "handed_off":
                self._hand_off(
                    c,
                    request_id,
                    decision.owner,
                    source=obs.source,
                    actor=decision.actor,
                    note=decision.note,
                    source_at=act.at,
                    now=now,
                )

    def _hand_off(
        self,
        c: sqlite3.Connection,
        request_id: int,
        owner: str | None,
        *,
        source: str,
        actor: str | None,
        note: str | None,
        source_at: datetime,
        now: datetime,
    ) -> None:
        """A handoff decided by a person (an operator, a command in a comment): the owner
        changes, every item is owed the write, and the other tools their comment."""
        previous = c.execute("SELECT owner FROM requests WHERE id = ?", (request_id,)).fetchone()
        c.execute(
            "UPDATE requests SET owner = ?, owner_at = ?, updated_at = ? WHERE id = ?",
            (owner, iso(source_at), iso(now), request_id),
        )
        cur = c.execute(
            "INSERT INTO events (request_id, at, source_at, kind, field, source, actor, from_value, "
            "to_value, note) VALUES (?, ?, ?, 'owner_changed', 'owner', ?, ?, ?, ?, ?)",
            (request_id, iso(now), iso(source_at), source, actor, previous[0], owner, note),
        )
        self._queue_owner_writes(c, request_id, origin=source, actor=actor, note=note, now=now)
        self._queue_comments(c, request_id, int(cur.lastrowid or 0), origin=source, now=now)

    # -- outbox ------------------------------------------------------------------------

    def _queue_owner_writes(
        self,
        c: sqlite3.Connection,
        request_id: int,
        *,
        origin: str,
        actor: str | None,
        note: str | None,
        now: datetime,
    ) -> None:
        """Make the outbox owe exactly the writes that bring every link to the canonical
        owner: one pending row per link that differs, none for links that agree."""
        owner = c.execute("SELECT owner FROM requests WHERE id = ?", (request_id,)).fetchone()[0]
        links = [
            self._link_state(r)
            for r in c.execute(
                f"SELECT {self._LINK_COLS} FROM links WHERE request_id = ?", (request_id,)
            )
        ]
        owed, settled = owed_writes(owner, links)
        ts = iso(now)
        for link_id in settled:
            c.execute(
                "UPDATE outbox SET status = 'superseded', updated_at = ?, last_error = NULL "
                "WHERE link_id = ? AND field = 'owner' AND status = 'pending'",
                (ts, link_id),
            )
        for w in owed:
            existing = c.execute(
                "SELECT id, value FROM outbox WHERE link_id = ? AND field = 'owner' AND status = 'pending'",
                (w.link_id,),
            ).fetchone()
            if existing and existing[1] == w.value:
                continue
            if existing:
                c.execute(
                    "UPDATE outbox SET status = 'superseded', updated_at = ? WHERE id = ?",
                    (ts, existing[0]),
                )
            c.execute(
                "INSERT INTO outbox (link_id, request_id, field, value, origin, actor, note, status, attempts, "
                "next_attempt_at, created_at, updated_at) VALUES (?, ?, 'owner', ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
                (w.link_id, request_id, w.value, origin, actor, note, ts, ts, ts),
            )

    def assign(
        self,
        key: str,
        owner: str | None,
        *,
        actor: str | None,
        note: str | None,
        now: datetime | None = None,
    ) -> None:
        """An operator handoff: the canonical owner changes now, and every link is owed it."""
        now = now or now_utc()
        rid = parse_request_key(key)
        with self.transaction() as c:
            row = c.execute("SELECT owner FROM requests WHERE id = ?", (rid,)).fetchone()
            if row is None:
                raise NotFound(f"no request {request_key(rid)}")
            if (
                owner is not None
                and ":" not in owner
                and not c.execute("SELECT 1 FROM people WHERE id = ?", (owner,)).fetchone()
            ):
                raise NotFound(f"no person {owner!r} (see `syncd people`)")
            self._hand_off(
                c, rid, owner, source="operator", actor=actor, note=note, source_at=now, now=now
            )

    def due_writes(
        self, source: str, now: datetime | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        now = now or now_utc()
        rows = self.conn.execute(
            # The origin is where the owner last changed, not whichever poll queued the row
            # (linking one more item queues a write too, but nobody handed anything over there).
            "SELECT o.id, o.link_id, o.request_id, o.value, "
            "coalesce((SELECT e.source FROM events e WHERE e.request_id = o.request_id "
            " AND e.kind = 'owner_changed' ORDER BY e.id DESC LIMIT 1), o.origin), "
            "o.actor, o.note, o.attempts, o.attempted_at, "
            "l.ref, l.kind, l.snap_owner, r.key, r.title, "
            "(SELECT from_value FROM events e WHERE e.request_id = o.request_id AND e.kind = 'owner_changed' "
            " ORDER BY e.id DESC LIMIT 1) "
            "FROM outbox o JOIN links l ON l.id = o.link_id JOIN requests r ON r.id = o.request_id "
            "WHERE l.source = ? AND o.field = 'owner' AND o.status = 'pending' "
            "AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= ?) ORDER BY o.id LIMIT ?",
            (source, iso(now), limit),
        ).fetchall()
        cols = [
            "id",
            "link_id",
            "request_id",
            "value",
            "origin",
            "actor",
            "note",
            "attempts",
            "attempted_at",
            "ref",
            "kind",
            "snap_owner",
            "key",
            "title",
            "previous_owner",
        ]
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def finish_write(
        self,
        outbox_id: int,
        status: str,
        *,
        wrote: bool = False,
        echo: bool = True,
        error: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Close one outbox row. On 'done' the link's snapshot takes the written value, which
        is what keeps the next poll from reading syncd's own write as a new change. With
        echo=False (the tool already had the value, and not from syncd) the snapshot is left
        alone, so the next poll sees that person's change, with its time, like any other."""
        ts = iso(now or now_utc())
        with self.transaction() as c:
            row = c.execute(
                "SELECT link_id, value, request_id FROM outbox WHERE id = ?", (outbox_id,)
            ).fetchone()
            if row is None:
                return
            link_id, value, rid = row
            c.execute(
                "UPDATE outbox SET status = ?, last_error = ?, updated_at = ? WHERE id = ? AND status = 'pending'",
                (status, error, ts, outbox_id),
            )
            if status == "done" and echo:
                c.execute("UPDATE links SET snap_owner = ? WHERE id = ?", (value, link_id))
            if status == "done" and wrote:
                c.execute(
                    "INSERT INTO events (request_id, at, kind, field, source, to_value, detail) "
                    "SELECT ?, ?, 'writeback', 'owner', l.source, ?, 'written to ' || l.ref "
                    "FROM links l WHERE l.id = ?",
                    (rid, ts, value, link_id),
                )
            if status in ("dead", "skipped"):
                c.execute(
                    "INSERT INTO events (request_id, at, kind, field, source, to_value, detail) "
                    "SELECT ?, ?, 'writeback', 'owner', l.source, ?, ? FROM links l WHERE l.id = ?",
                    (rid, ts, value, f"{status}: {error}", link_id),
                )

    def record_race(self, outbox_id: int, detail: str, now: datetime | None = None) -> None:
        """A write-back that met a person's concurrent change: kept as an event, so the
        request's timeline says why the next poll changes its owner."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO events (request_id, at, kind, field, source, to_value, detail) "
                "SELECT o.request_id, ?, 'race', 'owner', l.source, o.value, ? "
                "FROM outbox o JOIN links l ON l.id = o.link_id WHERE o.id = ?",
                (iso(now or now_utc()), detail, outbox_id),
            )

    def due_comments(
        self, source: str, now: datetime | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Handoff comments owed to one source's items, with the handoff they tell of: the
        event, the item it was made on (where), and the request's other items (links). The
        title is the item's own: the request's may be another tool's, which this item's
        audience (a public repository, say) must not read."""
        rows = self.rows(
            "SELECT o.id, o.attempts, o.attempted_at, o.origin, l.ref, r.key, "
            "coalesce(nullif(l.snap_title, ''), r.title) AS title, l.trusted, e.kind AS event_kind, "
            "e.id AS event_id, e.source AS event_source, e.actor, e.from_value, e.to_value, "
            "e.note, coalesce(e.source_at, e.at) AS event_at, o.request_id "
            "FROM outbox o JOIN links l ON l.id = o.link_id JOIN requests r ON r.id = o.request_id "
            "JOIN events e ON e.id = o.event_id "
            "WHERE l.source = ? AND o.field = 'comment' AND o.status = 'pending' "
            "AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= ?) ORDER BY o.id LIMIT ?",
            (source, iso(now or now_utc()), limit),
        )
        for row in rows:
            row["links"] = self.rows(
                "SELECT source, kind, ref, url FROM links WHERE request_id = ? ORDER BY id",
                (row["request_id"],),
            )
        return rows

    def finish_comment(
        self,
        outbox_id: int,
        status: str,
        *,
        posted_id: str | None = None,
        error: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Close a comment row: 'done' with the tool's comment id (recorded as a
        comment_posted event), 'unneeded' when the source's policy wants none, or 'dead'."""
        ts = iso(now or now_utc())
        with self.transaction() as c:
            row = c.execute(
                "SELECT o.request_id, l.source, l.ref, o.event_id FROM outbox o "
                "JOIN links l ON l.id = o.link_id WHERE o.id = ? AND o.status = 'pending'",
                (outbox_id,),
            ).fetchone()
            if row is None:
                return
            rid, source, ref, event_id = row
            c.execute(
                "UPDATE outbox SET status = ?, posted_id = ?, last_error = ?, updated_at = ? "
                "WHERE id = ?",
                (status, posted_id, error, ts, outbox_id),
            )
            if status == "done":
                c.execute(
                    "INSERT INTO events (request_id, at, kind, source, to_value, detail) "
                    "VALUES (?, ?, 'comment_posted', ?, ?, ?)",
                    (rid, ts, source, ref, f"handoff note (event {event_id}), comment {posted_id}"),
                )
            elif status == "dead":
                c.execute(
                    "INSERT INTO events (request_id, at, kind, source, to_value, detail) "
                    "VALUES (?, ?, 'comment_posted', ?, ?, ?)",
                    (rid, ts, source, ref, f"not posted: {error}"),
                )

    def mark_attempt(self, outbox_id: int, now: datetime | None = None) -> None:
        """Record, durably, that a write is about to be sent."""
        with self.transaction() as c:
            c.execute(
                "UPDATE outbox SET attempted_at = ? WHERE id = ?",
                (iso(now or now_utc()), outbox_id),
            )

    def retry_write(
        self, outbox_id: int, error: str, next_at: datetime, *, count_attempt: bool = True
    ) -> None:
        # The attempt answered with an error, so the write is taken as not made: a tool that
        # later shows this value shows a person's change, not an echo of ours.
        with self.transaction() as c:
            c.execute(
                "UPDATE outbox SET attempts = attempts + ?, last_error = ?, next_attempt_at = ?, "
                "updated_at = ?, attempted_at = NULL WHERE id = ? AND status = 'pending'",
                (1 if count_attempt else 0, error, iso(next_at), iso(now_utc()), outbox_id),
            )

    # -- cursors and source status -----------------------------------------------------

    def cursor(self, source: str) -> Cursor | None:
        row = self.conn.execute("SELECT value FROM cursors WHERE source = ?", (source,)).fetchone()
        value: Cursor | None = json.loads(row[0]) if row else None
        return value

    def record_poll(
        self,
        source: str,
        kind: str,
        *,
        ok: bool,
        error: str | None = None,
        requests: int | None = None,
        retry_at: datetime | None = None,
        rate: tuple[int | None, int | None, datetime | None] | None = None,
        now: datetime | None = None,
    ) -> None:
        ts = iso(now or now_utc())
        with self.transaction() as c:
            c.execute(
                "INSERT OR IGNORE INTO source_status (source, kind) VALUES (?, ?)", (source, kind)
            )
            c.execute(
                "UPDATE source_status SET kind = ?, last_poll_at = ?, last_requests = ?, retry_at = ? "
                "WHERE source = ?",
                (kind, ts, requests, iso(retry_at), source),
            )
            if ok:
                c.execute(
                    "UPDATE source_status SET last_success_at = ?, last_error = NULL WHERE source = ?",
                    (ts, source),
                )
            else:
                c.execute(
                    "UPDATE source_status SET last_error = ?, last_error_at = ? WHERE source = ?",
                    (error, ts, source),
                )
            if rate is not None:
                remaining, limit, reset = rate
                c.execute(
                    "UPDATE source_status SET rate_remaining = ?, rate_limit = ?, rate_reset_at = ? "
                    "WHERE source = ?",
                    (remaining, limit, iso(reset), source),
                )

    def sources_owed(self, now: datetime | None = None) -> list[str]:
        """Sources with a write-back due now: after a poll that changed something, the
        daemon runs their jobs at once rather than at their next interval."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT DISTINCT l.source FROM outbox o JOIN links l ON l.id = o.link_id "
                "WHERE o.status = 'pending' AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= ?) "
                "ORDER BY l.source",
                (iso(now or now_utc()),),
            ).fetchall()
        return [r[0] for r in rows]

    # -- reads for the CLI ------------------------------------------------------------

    def rows(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, tuple(args))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def counts(self) -> dict[str, int]:
        return {
            t: self.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("requests", "links", "events", "outbox", "quarantine")
        }


class SourceState:
    """One source's keyed adapter state (adapters.base.StateStore), read on demand. Writes
    come only with a page (Ledger.apply_page), in the transaction of its cursor."""

    _CHUNK = 500  # keys per query, well below SQLite's limit on parameters

    def __init__(self, ledger: Ledger, source: str) -> None:
        self.ledger = ledger
        self.source = source

    def get(self, keys: Iterable[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(keys))
        out: dict[str, str] = {}
        with self.ledger._lock:
            for i in range(0, len(wanted), self._CHUNK):
                chunk = wanted[i : i + self._CHUNK]
                marks = ", ".join("?" * len(chunk))
                out.update(
                    self.ledger.conn.execute(
                        f"SELECT key, value FROM adapter_state WHERE source = ? AND key IN ({marks})",
                        (self.source, *chunk),
                    ).fetchall()
                )
        return out

    def scan(self, prefix: str) -> Iterator[tuple[str, str]]:
        # Keys in [prefix, prefix + U+10FFFF): every key that starts with prefix, on the index.
        with self.ledger._lock:
            rows = self.ledger.conn.execute(
                "SELECT key, value FROM adapter_state WHERE source = ? AND key >= ? AND key < ? "
                "ORDER BY key",
                (self.source, prefix, prefix + "\U0010ffff"),
            ).fetchall()
        yield from rows


def stale_cutoff(duration: timedelta, now: datetime | None = None) -> str:
    return iso((now or now_utc()) - duration) or ""


__all__ = ["FIELDS", "ApplyStats", "Ledger", "iso", "now_utc", "parse_iso", "request_key"]
