"""Draining the outbox: the write-backs owed to one source.

Each pending row says "this link should have this canonical owner". Before writing, the
current owners are read back (the write is idempotent: a value already there is not written
again), and if someone changed the owner in the tool since syncd last looked, the row is
superseded rather than overwriting a human's newer change; the next poll reconciles it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from syncd.adapters.base import Adapter
from syncd.config import UNIX, CommentSettings
from syncd.errors import FatalError, RateLimited, RetriableError, SourceError
from syncd.ledger import Ledger, now_utc, parse_iso
from syncd.models import Comment, Handoff
from syncd.notes import TOOL_NAMES, HandoffFacts, comment_due, compose, marker_for, where_text
from syncd.people import Directory, pick_owner

log = structlog.get_logger("syncd.outbox")


@dataclass(frozen=True)
class WriteAction:
    kind: str  # "already" | "write" | "superseded" | "skip"
    add: str | None = None
    remove: tuple[str, ...] = ()
    reason: str = ""


def plan_write(
    current: tuple[str, ...],
    snapshot_owner: str | None,
    target: str | None,
    kind: str,
    d: Directory,
) -> WriteAction:
    """Decide the write that brings a tool's owners from `current` to `target`. Pure."""
    current_owner = pick_owner(current, snapshot_owner, kind, d)
    if current_owner == target:
        return WriteAction("already")
    if current_owner != snapshot_owner:
        return WriteAction(
            "superseded",
            reason=f"the owner was changed in the tool to {current_owner!r} since the last poll",
        )
    add = None
    if target is not None:
        add = d.handle_for(target, kind)
        if add is None:
            return WriteAction(
                "skip",
                reason=f"{target} has no {kind} handle; add one under [[people]] to write it back",
            )
        if add.casefold() in {h.casefold() for h in current}:
            # Already a co-owner there (an earlier try added it and stopped before the
            # removal): only the removal is still owed.
            add = None
    remove = tuple(
        h for h in current if current_owner is not None and d.owner_for(kind, h) == current_owner
    )
    return WriteAction("write", add=add, remove=remove)


def explained(current: tuple[str, ...], action: WriteAction) -> set[str]:
    """The owners a tool should report after `action`, if nobody else touched the item:
    those read just before it, plus the one added, minus the ones removed. Pure."""
    removed = {h.casefold() for h in action.remove}
    out = {h.casefold() for h in current if h.casefold() not in removed}
    if action.add is not None:
        out.add(action.add.casefold())
    return out


def ours_beside_others(
    current: tuple[str, ...], after: tuple[str, ...], action: WriteAction
) -> str | None:
    """The handle syncd added, when the tool shows it beside other owners that syncd did
    not leave there (a person's concurrent choice); None otherwise. Pure."""
    if action.add is None:
        return None
    added = action.add.casefold()
    before = {h.casefold() for h in current}
    shown = [h for h in after if h.casefold() == added]
    others = [h for h in after if h.casefold() != added]
    return shown[0] if shown and others and added not in before else None


def race_text(
    ref: str,
    current: tuple[str, ...],
    after: tuple[str, ...],
    expected: set[str],
    gone: tuple[str, ...] = (),
) -> str:
    seen = f"the tool shows {list(after)}"
    if gone:
        seen += f" and {list(gone)} were already off it when syncd came to remove them"
    return (
        f"a person changed the owners of {ref} while syncd wrote: it read {list(current)}, "
        f"its change explains {sorted(expected)}, {seen}; "
        "the next poll takes the person's change"
    )


def backoff(attempts: int) -> timedelta:
    """Delay before retrying a failed write: 30 s, 1 min, 2 min ... capped at one hour."""
    return timedelta(seconds=min(3600, 30 * 2 ** max(0, attempts - 1)))


@dataclass
class DrainStats:
    written: int = 0
    already: int = 0
    superseded: int = 0
    skipped: int = 0
    failed: int = 0
    dead: int = 0
    raced: int = 0  # written, but a person changed the item meanwhile


def _retry_or_give_up(
    ledger: Ledger,
    row: dict[str, Any],
    exc: RetriableError,
    max_attempts: int,
    now: datetime | None,
    stats: DrainStats,
    finish: Callable[..., None],
) -> int:
    """After a retriable failure: try the row again after a backoff, or, past
    `max_attempts`, dead-letter it with `finish` (finish_write or finish_comment).
    Returns the attempts made."""
    attempts = int(row["attempts"]) + 1
    if attempts >= max_attempts:
        finish(row["id"], "dead", error=f"gave up after {attempts} attempts: {exc}")
        stats.dead += 1
    else:
        ledger.retry_write(row["id"], str(exc), (now or now_utc()) + backoff(attempts))
        stats.failed += 1
    return attempts


def drain(
    ledger: Ledger,
    adapter: Adapter[Any],
    directory: Directory,
    *,
    max_attempts: int = 8,
    now: datetime | None = None,
    progress: Callable[[], None] | None = None,
) -> DrainStats:
    stats = DrainStats()
    for row in ledger.due_writes(adapter.name, now):
        if progress is not None:
            progress()
        target: str | None = row["value"]
        try:
            current = adapter.read_owners(row["ref"])
            action = plan_write(current, row["snap_owner"], target, adapter.kind, directory)
            if action.kind == "write":
                handoff = Handoff(
                    request_key=row["key"],
                    title=row["title"],
                    to_owner=target,
                    to_name=directory.display(target),
                    from_owner=row["previous_owner"],
                    from_name=directory.display(row["previous_owner"]),
                    origin=row["origin"] or "syncd",
                    actor=row["actor"],
                    note=row["note"],
                )
                ledger.mark_attempt(row["id"])
                after = adapter.write_owner(row["ref"], action.add, action.remove, handoff)
                expected = explained(current, action)
                gone = adapter.gone_at_write
                if {h.casefold() for h in after} != expected or gone:
                    # Someone else changed the item between the read and the answer. An
                    # owner to remove found already gone counts too: the answer alone
                    # cannot show it (GitHub then writes nothing at all). The snapshot
                    # keeps what syncd last saw, so the next poll reads the tool as changed
                    # and reconciles it (an owner change at the source, with the tool's
                    # time, or a conflict decided by time): nothing a person did is taken
                    # for syncd's own write.
                    detail = race_text(row["ref"], current, after, expected, gone)
                    withdraw = ours_beside_others(current, after, action)
                    if withdraw is not None:
                        # syncd's add now sits beside the person's newer choice, and the
                        # co-assignee rule would keep it: take it back, so the tool shows
                        # exactly what the person did. Never leaves the item unowned.
                        try:
                            adapter.write_owner(row["ref"], None, (withdraw,), handoff)
                            detail += f"; syncd took its own {withdraw} back off"
                        except SourceError as exc:
                            detail += f"; taking {withdraw} back off failed: {exc}"
                    ledger.finish_write(
                        row["id"], "done", wrote=not adapter.wrote_nothing, echo=False
                    )
                    ledger.record_race(row["id"], detail)
                    stats.raced += 1
                    log.warning(
                        "write-back raced a person",
                        source=adapter.name,
                        request=row["key"],
                        ref=row["ref"],
                        detail=detail,
                    )
                    continue
                if pick_owner(after, target, adapter.kind, directory) != target:
                    raise FatalError(
                        adapter.name,
                        f"{row['ref']} still shows owners {list(after)} after the write",
                    )
                ledger.finish_write(row["id"], "done", wrote=True)
                stats.written += 1
                log.info(
                    "owner written",
                    source=adapter.name,
                    ref=row["ref"],
                    request=row["key"],
                    owner=target,
                )
            elif action.kind == "already":
                # Either syncd wrote it and died before recording so (attempted_at is set:
                # take it as our own write), or a person made the same change: then leave
                # the snapshot, so the next poll records that change with its own time.
                ledger.finish_write(row["id"], "done", echo=row["attempted_at"] is not None)
                stats.already += 1
            elif action.kind == "superseded":
                ledger.finish_write(row["id"], "superseded", error=action.reason)
                stats.superseded += 1
            else:
                ledger.finish_write(row["id"], "skipped", error=action.reason)
                stats.skipped += 1
                log.warning(
                    "write-back skipped",
                    source=adapter.name,
                    request=row["key"],
                    reason=action.reason,
                )
        except RateLimited as exc:
            # Not the write's fault: wait as asked, don't count an attempt, and stop here,
            # since every other write to this source would be refused too.
            ledger.retry_write(row["id"], str(exc), exc.retry_at, count_attempt=False)
            stats.failed += 1
            break
        except RetriableError as exc:
            attempts = _retry_or_give_up(
                ledger,
                row,
                exc,
                max_attempts,
                now,
                stats,
                ledger.finish_write,
            )
            log.warning(
                "write-back failed",
                source=adapter.name,
                request=row["key"],
                error=str(exc),
                attempt=attempts,
            )
        except (FatalError, SourceError) as exc:
            ledger.finish_write(row["id"], "dead", error=str(exc))
            stats.dead += 1
            log.error(
                "write-back dead-lettered", source=adapter.name, request=row["key"], error=str(exc)
            )
    return stats


def _person_name(actor: str | None, d: Directory) -> str | None:
    """Who made a handoff, named only as a person of the config (an operator through their
    `unix` handle): a login or an unmapped tool account (a Jira accountId) means nothing to
    an item's audience, and a public repository must not learn it."""
    if actor is not None and actor not in d.people and d.is_mapped(UNIX, actor):
        actor = d.owner_for(UNIX, actor)
    return d.display(actor) if actor in d.people else None


def handoff_comment(row: dict[str, Any], settings: CommentSettings, d: Directory) -> Comment:
    """The comment telling one item's people of a handoff (a due_comments row). Pure.
    Items of other sources are named and linked only when `comment_links` lets this
    source's audience see them. An item an outsider opened (on GitHub, an author who is no
    owner, member or collaborator) hears who owns the request now, never a person's note
    (syncd's own escalation reminder is no one's note, and is posted)."""
    insider = bool(row.get("trusted", 1)) or row.get("event_kind") == "escalated"
    shown = set(settings.comment_links) if insider else set()
    origin = next((lk for lk in row["links"] if lk["source"] == row["event_source"]), None)
    links = tuple(
        (f"{TOOL_NAMES.get(lk['kind'], lk['kind'])} {lk['ref']}", lk["url"])
        for lk in row["links"]
        if lk["source"] in shown and lk["url"] and lk["ref"] != row["ref"]
    )
    facts = HandoffFacts(
        request_key=row["key"],
        title=row["title"],
        to_name=d.display(row["to_value"]),
        from_name=d.display(row["from_value"]),
        actor_name=_person_name(row["actor"], d),
        where=where_text(
            row["event_source"],
            origin["kind"] if origin else None,
            origin["ref"] if origin else None,
            row["event_source"] in shown,
        ),
        at=parse_iso(row["event_at"]),
        note=row["note"] if insider else None,
        links=links,
    )
    return compose(facts, marker_for(row["key"], row["event_id"]))


def drain_comments(
    ledger: Ledger,
    adapter: Adapter[Any],
    directory: Directory,
    *,
    max_attempts: int = 8,
    now: datetime | None = None,
) -> DrainStats:
    """Post the handoff comments owed to one source, each exactly once: a row that was tried
    before (its answer may have been lost) first looks for its marker on the item."""
    stats = DrainStats()
    settings = adapter.config
    for row in ledger.due_comments(adapter.name, now):
        if (
            not adapter.comments
            or not isinstance(settings, CommentSettings)
            or not comment_due(settings.handoff_comment, row["note"], row["origin"], adapter.name)
        ):
            # Not an error, so not "skipped": the source's policy wants no comment for this one.
            ledger.finish_comment(row["id"], "unneeded")
            continue
        comment = handoff_comment(row, settings, directory)
        try:
            posted = None
            if row["attempts"] or row["attempted_at"]:
                posted = adapter.find_comment(row["ref"], comment.marker)
            if posted is None:
                ledger.mark_attempt(row["id"])
                posted = adapter.post_comment(row["ref"], comment)
                stats.written += 1
            else:
                stats.already += 1
            ledger.finish_comment(row["id"], "done", posted_id=posted)
        except RateLimited as exc:
            ledger.retry_write(row["id"], str(exc), exc.retry_at, count_attempt=False)
            stats.failed += 1
            break
        except RetriableError as exc:
            _retry_or_give_up(
                ledger,
                row,
                exc,
                max_attempts,
                now,
                stats,
                ledger.finish_comment,
            )
            log.warning("handoff comment failed", source=adapter.name, error=str(exc))
        except (FatalError, SourceError) as exc:
            ledger.finish_comment(row["id"], "dead", error=str(exc))
            stats.dead += 1
            log.error("handoff comment dead-lettered", source=adapter.name, error=str(exc))
    return stats
