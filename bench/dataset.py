"""The benchmark's data: which items exist, who owns them, which are linked. Pure functions.

Both processes use this module: the emulator host seeds the tools from it, and the
benchmark computes the ledger it expects from it, so neither has to ship 100,000 items over
the pipe. Item `i` (1-based) of source `s` is identified by the pair (s, i) everywhere.

Shape of the data, chosen to look like a team's tools rather than a synthetic best case:

* Items are spread evenly over the sources.
* Every odd item of sources 1.. declares item i of source 0 (its "anchor") in its body, so
  about half the items belong to a request linked across every source. Those are the
  requests whose owner changes fan out to every other source.
* 10% of items have no owner; the rest are spread over PEOPLE people. Linked items start
  with their anchor's owner, so the initial sync owes no write-back and measures reading.
* 20% of items are closed (a one-way puller that fetches open items skips them).
* Bodies are a few hundred characters of prose; some quote log lines or links, none holds
  a key other than the anchor's.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

PEOPLE = 20

Field = Literal["owner", "title", "state"]

_FILLER = (
    "Customers on the annual plan report that the export finishes but the file is empty. "
    "It started after the last deploy and only affects workspaces with more than one "
    "region configured. Steps: open the report, choose all columns, export as spreadsheet. "
    "Expected a full file; got headers only. Logs show the query returning no rows."
)


@dataclass(frozen=True)
class Change:
    """One edit someone makes in a tool between two polls."""

    source: int
    number: int
    field: Field
    person: int | None = None  # for owner changes: the new owner's person index
    round: int = 0  # makes each title edit distinct


@dataclass(frozen=True)
class Layout:
    kinds: tuple[str, ...]  # the tool type of each source, e.g. ("github",) * 4
    counts: tuple[int, ...]  # items per source
    people: int = PEOPLE

    @classmethod
    def spread(cls, total: int, kinds: Sequence[str]) -> Layout:
        base, extra = divmod(total, len(kinds))
        return cls(tuple(kinds), tuple(base + (s < extra) for s in range(len(kinds))))

    @property
    def sources(self) -> range:
        return range(len(self.kinds))

    @property
    def total(self) -> int:
        return sum(self.counts)

    def sources_of(self, kind: str) -> list[int]:
        return [s for s in self.sources if self.kinds[s] == kind]

    def linked(self, s: int, i: int) -> bool:
        """Whether item i of source s declares its anchor, item i of source 0."""
        return s > 0 and i % 2 == 1 and i <= self.counts[0]

    def owner(self, s: int, i: int) -> int | None:
        """The initial owner's person index, or None for an unowned item."""
        base = i if s == 0 or self.linked(s, i) else i + 7 * s
        return None if base % 10 == 0 else base % self.people

    def closed(self, s: int, i: int) -> bool:
        return (i + s) % 5 == 4

    def title(self, s: int, i: int) -> str:
        return f"Bench item {s}.{i}: empty export in region {i % 13}"

    def body(self, s: int, i: int, anchor: str | None) -> str:
        """The item's text; `anchor` is how the anchor's tool writes a reference to it.

        A third of the bodies quote a log line with a date and a third carry a link, as
        real ones do: both look like the start of a key to the cross-reference scan, which
        must then read the whole text."""
        text = _FILLER[: 200 + (i * 37) % 100]
        if i % 3 == 1:
            text += f"\n\n    2024-05-{1 + i % 28:02d} 12:00:{i % 60:02d} export rows=0"
        elif i % 3 == 2:
            text += f"\n\nSee https://status.example.com/incidents/{8000 + i} for the timeline."
        # "Tracked in" declares the same work (syncd.crossref): only declarations link.
        return f"{text}\n\nTracked in {anchor}" if anchor is not None else text

    def expected_requests(self) -> int:
        """Ledger requests after a full sync: one per item, less the items folded into their
        anchor's request."""
        return self.total - sum(self.linked_count(s) for s in self.sources)

    def linked_count(self, s: int) -> int:
        if s == 0:
            return 0
        return (min(self.counts[s], self.counts[0]) + 1) // 2

    def full_groups(self) -> list[int]:
        """Anchors with a linked item in every source: an owner change there fans out to all."""
        return list(range(1, min(self.counts) + 1, 2))

    def items(self) -> Iterator[tuple[int, int]]:
        for s in self.sources:
            for i in range(1, self.counts[s] + 1):
                yield s, i


# Incremental changes are drawn from the first items of each source, the same ones at every
# N, so that a cycle at N = 100,000 does exactly the work of one at N = 1,000 (the same
# items, the same linked groups, the same write-backs) and only the data around it grows.
CHANGE_POOL = 250


def pick_changes(layout: Layout, k: int, rng: random.Random, round: int) -> list[Change]:
    """k edits to k distinct items of the change pool: half owner changes, 30% title edits,
    20% state changes (close or reopen). Owner changes may hit linked items, which then fan
    out to every other source."""
    pool = [
        (s, i) for s in layout.sources for i in range(1, min(CHANGE_POOL, layout.counts[s]) + 1)
    ]
    changes = []
    for s, i in rng.sample(pool, min(k, len(pool))):
        roll = rng.random()
        field: Field = "owner" if roll < 0.5 else "title" if roll < 0.8 else "state"
        changes.append(Change(s, i, field, rng.randrange(layout.people), round))
    return changes


def anchor_handoffs(layout: Layout, k: int, rng: random.Random) -> list[Change]:
    """k owner changes made at anchors of fully linked requests: each fans out to every
    other source."""
    groups = layout.full_groups()
    return [
        Change(0, i, "owner", rng.randrange(layout.people))
        for i in rng.sample(groups, min(k, len(groups)))
    ]
