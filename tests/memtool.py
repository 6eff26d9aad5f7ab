"""An in-memory tool and its adapter, for driving the core without HTTP.

The emulators in syncd.sandbox test the adapters against real protocols; this stands in for
a whole tool where the subject is the core's logic (reconciler, ledger, outbox), so that a
property-based test can run thousands of steps. It behaves like the real tools in the ways
the core depends on: a change bumps the item's update time, reads are incremental from a
cursor, writes can fail, and assignees are an ordered list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from syncd.adapters.base import Adapter
from syncd.config import SourceConfig
from syncd.errors import FatalError, RetriableError
from syncd.models import Cursor, Handoff, Observation, Page, State

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """Source-side time: strictly increasing, one second per tick."""

    def __init__(self) -> None:
        self.t = EPOCH

    def tick(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


@dataclass
class Item:
    ref: str
    title: str
    owners: list[str]
    state: State = "open"
    body: str = ""
    mentions: tuple[str, ...] = ()
    declared: tuple[str, ...] = ()  # keys it declares to be the same work ("[OPS-7] ...")
    trusted: bool = True  # whether its author may declare
    relation_kinds: tuple[tuple[str, str], ...] = ()  # mention -> "blocked_by", ...
    updated_at: datetime = EPOCH
    seq: int = 0


@dataclass
class Tool:
    """The tool itself: what people change, and what the adapter reads and writes."""

    kind: str
    clock: Clock
    items: dict[str, Item] = field(default_factory=dict)
    seq: int = 0
    fail_pull: Literal["none", "all", "after_first"] = "none"
    fail_writes: int = 0  # the next N writes fail
    writes: int = 0

    def touch(self, item: Item) -> None:
        self.seq += 1
        item.seq = self.seq
        item.updated_at = self.clock.tick()

    def create(
        self,
        ref: str,
        title: str,
        owners: list[str],
        mentions: tuple[str, ...] = (),
        declared: tuple[str, ...] = (),
        trusted: bool = True,
        relation_kinds: tuple[tuple[str, str], ...] = (),
    ) -> Item:
        item = Item(
            ref,
            title,
            list(owners),
            mentions=mentions,
            declared=declared,
            trusted=trusted,
            relation_kinds=relation_kinds,
        )
        self.items[ref] = item
        self.touch(item)
        return item

    def set_owners(self, ref: str, owners: list[str]) -> None:
        item = self.items[ref]
        item.owners = list(owners)
        self.touch(item)

    def edit(
        self,
        ref: str,
        *,
        declared: tuple[str, ...] | None = None,
        mentions: tuple[str, ...] | None = None,
    ) -> None:
        """A person edits the item's text: what it declares and mentions changes."""
        item = self.items[ref]
        if declared is not None:
            item.declared = declared
        if mentions is not None:
            item.mentions = mentions
        self.touch(item)

    def set_state(self, ref: str, state: State) -> None:
        item = self.items[ref]
        item.state = state
        self.touch(item)


class MemConfig(SourceConfig):
    type: Literal["mem"] = "mem"


class MemAdapter(Adapter[MemConfig]):
    kind = "mem"
    Config = MemConfig

    def __init__(self, name: str, tool: Tool, page_size: int = 2) -> None:
        super().__init__(MemConfig(name=name, type="mem"))
        self.tool = tool
        self.kind = tool.kind  # type: ignore[misc]  # each Tool has its own identity namespace
        self.page_size = page_size
        self.counts: Counter[str] = Counter()

    def request_counts(self) -> Counter[str]:
        return self.counts

    def observe(self, item: Item) -> Observation:
        return Observation(
            source=self.name,
            ref=item.ref,
            url=f"mem://{self.name}/{item.ref}",
            title=item.title,
            state=item.state,
            owners=tuple(item.owners),
            updated_at=item.updated_at,
            keys=(f"{self.tool.kind}:{item.ref}",),
            mentions=item.mentions,
            declared=item.declared,
            author_trusted=item.trusted,
            relation_kinds=item.relation_kinds,
        )

    def pull(self, cursor: Cursor | None) -> Iterator[Page]:
        since = int((cursor or {}).get("seq", 0))
        changed = sorted(
            (i for i in self.tool.items.values() if i.seq > since), key=lambda i: i.seq
        )
        self.counts["GET 200"] += 1
        if self.tool.fail_pull == "all":
            raise RetriableError(self.name, "emulated outage")
        for n in range(0, len(changed), self.page_size):
            if n and self.tool.fail_pull == "after_first":
                raise RetriableError(self.name, "emulated outage mid-poll")
            chunk = changed[n : n + self.page_size]
            yield Page([self.observe(i) for i in chunk], cursor={"seq": chunk[-1].seq})

    def read_owners(self, ref: str) -> tuple[str, ...]:
        self.counts["GET 200"] += 1
        if ref not in self.tool.items:
            raise FatalError(self.name, f"{ref} not found")
        return tuple(self.tool.items[ref].owners)

    def write_owner(
        self, ref: str, add: str | None, remove: tuple[str, ...], handoff: Handoff
    ) -> tuple[str, ...]:
        if self.tool.fail_writes > 0:
            self.tool.fail_writes -= 1
            raise RetriableError(self.name, "emulated 503 on write")
        self.tool.writes += 1
        self.counts["POST 201"] += 1
        item = self.tool.items[ref]
        # Like the GitHub adapter's read right before writing: an owner to remove whom
        # someone took off meanwhile is their change, and nothing is written over it.
        self.gone_at_write = tuple(h for h in remove if h not in item.owners)
        self.wrote_nothing = bool(self.gone_at_write)
        if self.wrote_nothing:
            return tuple(item.owners)
        owners = [o for o in item.owners if o not in remove]
        if add is not None and add not in owners:
            owners.insert(0, add)
        item.owners = owners
        self.tool.touch(item)
        return tuple(owners)


def install(engine: Any, adapters: list[MemAdapter]) -> None:
    """Give an Engine in-memory adapters instead of the ones its config names."""
    engine.adapters = {a.name: a for a in adapters}
