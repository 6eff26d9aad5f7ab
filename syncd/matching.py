"""Which request an item belongs to: the identity rules, as pure functions.

Two items are one request only when one of them *declares* it: a "[OPS-7] ..." title, a
"Jira: OPS-7" line, a tool's own link field, mail threading, or an operator's `syncd link`.
Adapters put those keys in Observation.declared; every other key an item's text names is a
*relation* (Observation.mentions), kept and shown but never a reason to merge. In real
issue text about a quarter of mentions name the same piece of work and more than half name a
different, related one ("blocked by", "duplicate of"), so linking on mentions reassigns
unrelated work in every tool (README "How items are linked").

A declaration links either way: the item declares a key of a linked item, or a linked item
declares one of this item's keys (it was filed first and named this one ahead of time).
`link_on = "any-mention"` makes every mention by a trusted author count as a declaration,
which was syncd's rule before; teams opt in knowingly.

An operator's decision outranks text. `syncd unlink` keeps the item apart from what it was
linked through (sticky): those declarations no longer link it, only one naming a different
item does. `syncd link` holds an item in its request: text never moves it out again.

The ledger gathers the inputs (the item's place, the candidates its keys meet, the
operator's pins) and applies the Decision; nothing here reads or writes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from syncd.models import Observation

LinkOn = Literal["declared", "any-mention"]
Direction = Literal["declares", "declared_by", "request"]
Action = Literal["keep", "join", "new", "merge", "ambiguous"]

# A mention whose phrase does not tell its kind.
PLAIN_MENTION = "mention"


def linking_keys(obs: Observation, link_on: LinkOn) -> tuple[str, ...]:
    """The keys through which this observation may link. Adapters leave `declared` empty for
    authors who may not declare; under any-mention, mentions count only from trusted authors
    (an outsider's mail naming REQ-1 must not join REQ-1 under either rule)."""
    keys = dict.fromkeys(obs.declared)
    if link_on == "any-mention" and obs.author_trusted:
        keys.update(dict.fromkeys(obs.mentions))
    return tuple(k for k in keys if k not in obs.keys)


def relations(obs: Observation) -> tuple[tuple[str, str], ...]:
    """Every mention that is not also a declaration, with its phrase kind when known."""
    kinds = dict(obs.relation_kinds)
    declared = set(obs.declared) | set(obs.keys)
    return tuple((k, kinds.get(k, PLAIN_MENTION)) for k in obs.mentions if k not in declared)


@dataclass(frozen=True)
class Candidate:
    """A request that this item's declarations meet, and through what."""

    request_id: int
    key: str  # the key declared: one of the other item's keys, or one of this item's own
    direction: Direction  # this item declares key; the other item declares it; "req:N" named
    other: str | None = None  # "source:ref" of the item at the other end, for evidence
    other_keys: frozenset[str] = frozenset()  # the other item's own keys
    other_ignored: frozenset[str] = frozenset()  # keys the other item was unlinked from

    def describe(self, me: str) -> str:
        if self.direction == "request":
            return f"{me} declares {self.key}"
        if self.direction == "declares":
            return f"{me} declares {self.other or self.key}"
        return f"{self.other or '?'} declares {me}"


def kept_apart(own_keys: Iterable[str], own_ignored: Iterable[str], c: Candidate) -> bool:
    """Whether an operator's unlink (or split) keeps this item and the candidate apart: either
    side was unlinked from a declaration that names the other."""
    ignored = set(own_ignored)
    if c.key in ignored or (ignored & c.other_keys):
        return True
    return bool(set(own_keys) & c.other_ignored)


@dataclass(frozen=True)
class Place:
    """Where an already linked item is now."""

    request_id: int
    alone: bool  # the only item of its request
    held: bool = False  # an operator linked it here; text does not move it


@dataclass(frozen=True)
class Decision:
    action: Action
    # join: the request to join; merge: the request that stays (the others fold into it)
    request_id: int | None = None
    merge: tuple[int, ...] = ()  # merge: requests folded into request_id
    evidence: tuple[Candidate, ...] = field(default_factory=tuple)
    reason: str = ""


def decide(
    place: Place | None,
    candidates: Sequence[Candidate],
    *,
    link_on: LinkOn,
    own_keys: Iterable[str] = (),
    ignored: Iterable[str] = (),
) -> Decision:
    """Decide an item's request from the candidates its declarations meet.

    `place` is None for an item seen for the first time; for a linked one, pass only the
    candidates its *newly added* declarations meet (the others were decided before).

    - No candidate: a new item becomes a request of its own; a linked one stays.
    - One request: a new item joins it. A linked item that is alone in its request joins
      too (its request folds into the other: a merge event, undone by `syncd split`).
    - Two or more requests, or a linked item that shares its request with others, or one an
      operator put where it is: nothing merges. Each declaration may be right on its own,
      but merging would reassign work in every tool on the word of one text; the evidence is
      recorded on every request involved for an operator to decide with `syncd link`.
    - Under any-mention every such case merges into the oldest request, as syncd used to.
    """
    own = tuple(own_keys)
    usable = tuple(c for c in candidates if not kept_apart(own, ignored, c))
    current = place.request_id if place else None
    others = sorted({c.request_id for c in usable if c.request_id != current})
    if not others:
        if place is None:
            return Decision("new")
        return Decision("keep", place.request_id)
    evidence = tuple(c for c in usable if c.request_id != current)
    if place is None:
        if len(others) == 1:
            return Decision("join", others[0], evidence=evidence)
        if link_on == "any-mention":
            return Decision("merge", others[0], merge=tuple(others[1:]), evidence=evidence)
        return Decision(
            "ambiguous",
            None,
            evidence=evidence,
            reason="its declarations name items in different requests",
        )
    if place.held:
        return Decision(
            "ambiguous",
            place.request_id,
            evidence=evidence,
            reason="an operator linked it to its request; text does not move it",
        )
    if link_on == "any-mention":
        ids = sorted({place.request_id, *others})
        return Decision("merge", ids[0], merge=tuple(ids[1:]), evidence=evidence)
    if len(others) == 1 and place.alone:
        return Decision("merge", others[0], merge=(place.request_id,), evidence=evidence)
    return Decision(
        "ambiguous",
        place.request_id,
        evidence=evidence,
        reason=(
            "its declarations name items in different requests"
            if len(others) > 1
            else "it shares its request with other items; merging both requests is left "
            "to an operator"
        ),
    )


# -- re-matching a whole ledger (`syncd relink --dry-run`) -------------------------------


@dataclass(frozen=True)
class Item:
    """One linked item, as the ledger stores it, for re-matching."""

    link_id: int
    request_id: int
    name: str  # "source:ref"
    keys: frozenset[str]
    linking: tuple[str, ...]  # keys it may link through under the current rule
    ignored: frozenset[str] = frozenset()
    held: bool = False  # an operator linked it where it is
    via: str | None = None  # how it joined its request: created|declared|mention|operator...


@dataclass(frozen=True)
class Finding:
    action: Literal["drop", "link"]
    link_id: int
    item: str
    request_id: int  # drop: the request it is in; link: the request it would join
    reason: str
    via: str | None = None


def rematch(items: Sequence[Item]) -> list[Finding]:
    """Compare the ledger's requests with what the current rule makes of the stored
    declarations: links it would not have made ("drop") and declarations that meet an item
    in another request ("link").

    A request's first item (lowest link id) anchors it. An item stays justified when a chain
    of declarations, or an operator's link, connects it to the anchor of its request.
    """
    by_key: dict[str, list[Item]] = {}
    for item in items:
        for k in item.keys:
            by_key.setdefault(k, []).append(item)
    anchors: dict[int, Item] = {}
    for item in sorted(items, key=lambda i: i.link_id):
        anchors.setdefault(item.request_id, item)

    edges: dict[int, set[int]] = {i.link_id: set() for i in items}
    evidence: dict[tuple[int, int], str] = {}
    crossing: list[Finding] = []
    for item in items:
        for key in item.linking:
            if key.startswith("req:"):
                targets = [anchors[_req_id(key)]] if _req_id(key) in anchors else []
            else:
                targets = by_key.get(key, [])
            for other in targets:
                if other.link_id == item.link_id:
                    continue
                c = Candidate(
                    other.request_id,
                    key,
                    "request" if key.startswith("req:") else "declares",
                    other.name,
                    other.keys,
                    other.ignored,
                )
                if kept_apart(item.keys, item.ignored, c):
                    continue
                edges[item.link_id].add(other.link_id)
                edges[other.link_id].add(item.link_id)
                evidence[(item.link_id, other.link_id)] = c.describe(item.name)
                if other.request_id != item.request_id:
                    # Which side moves: the one an operator did not place, else the later.
                    mover, stay = (
                        (other, item)
                        if item.held or other.link_id > item.link_id
                        else (item, other)
                    )
                    if not mover.held:
                        crossing.append(
                            Finding(
                                "link",
                                mover.link_id,
                                mover.name,
                                stay.request_id,
                                c.describe(item.name),
                                mover.via,
                            )
                        )
    findings: list[Finding] = []
    for rid, anchor in anchors.items():
        members = {i.link_id: i for i in items if i.request_id == rid}
        reached = {anchor.link_id}
        todo = [anchor.link_id]
        while todo:
            at = todo.pop()
            for nxt in edges[at]:
                if nxt in members and nxt not in reached:
                    reached.add(nxt)
                    todo.append(nxt)
        for lid, item in sorted(members.items()):
            if lid in reached or item.held:
                continue
            findings.append(
                Finding(
                    "drop",
                    lid,
                    item.name,
                    rid,
                    "no declaration connects it to " + anchor.name,
                    item.via,
                )
            )
    seen: set[tuple[int, int]] = set()
    for f in crossing:
        if (f.link_id, f.request_id) not in seen:
            seen.add((f.link_id, f.request_id))
            findings.append(f)
    return findings


def _req_id(key: str) -> int:
    digits = key[4:]
    return int(digits) if digits.isdigit() else -1
