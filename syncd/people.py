"""Who is who across tools: maps tool handles to people and back. Pure, built from config.

A canonical owner is a person id ("alice"). A handle nobody claims is kept as an unmapped
identity, written "kind:handle" ("github:zed"), so it is never dropped: it can still be
written back to other sources of the same kind, and `syncd people` lists it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from syncd.config import Person


def unmapped(kind: str, handle: str) -> str:
    return f"{kind}:{handle}"


def split_unmapped(owner: str) -> tuple[str, str] | None:
    kind, sep, handle = owner.partition(":")
    return (kind, handle) if sep else None


@dataclass(frozen=True)
class Directory:
    people: dict[str, Person] = field(default_factory=dict)
    # (kind, handle lower-cased) -> person id
    _by_handle: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def build(cls, people: Iterable[Person]) -> Directory:
        by_id = {p.id: p for p in people}
        by_handle = {
            (kind, h.lower()): p.id
            for p in by_id.values()
            for kind in p.handles
            for h in p.handles_for(kind)
        }
        return cls(by_id, by_handle)

    def owner_for(self, kind: str, handle: str) -> str:
        """The canonical owner a tool handle stands for."""
        return self._by_handle.get((kind, handle.lower())) or unmapped(kind, handle)

    def is_mapped(self, kind: str, handle: str) -> bool:
        return (kind, handle.lower()) in self._by_handle

    def handles_for(self, owner: str, kind: str) -> list[str]:
        """Handles of a canonical owner in one tool, in config order; [] when it has none."""
        person = self.people.get(owner)
        if person is not None:
            return person.handles_for(kind)
        pair = split_unmapped(owner)
        if pair and pair[0] == kind:
            return [pair[1]]
        return []

    def handle_for(self, owner: str, kind: str) -> str | None:
        handles = self.handles_for(owner, kind)
        return handles[0] if handles else None

    def display(self, owner: str | None) -> str | None:
        if owner is None:
            return None
        person = self.people.get(owner)
        return person.name or person.id if person else owner


def pick_owner(
    handles: tuple[str, ...], previous: str | None, kind: str, d: Directory
) -> str | None:
    """The one owner a list of assignees stands for.

    Tools allow several assignees; the ledger keeps one owner. The previous owner stays owner
    while still among the handles (adding a co-assignee is not a handoff); otherwise the first
    handle in the tool's order is the owner; no handles means unowned.
    """
    if not handles:
        return None
    owners = [d.owner_for(kind, h) for h in handles]
    if previous is not None and previous in owners:
        return previous
    return owners[0]
