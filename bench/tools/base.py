"""What the benchmark needs from one tool type. A new type is one module with two classes.

A `Tool` lives in the emulator host process: it owns that type's loopback emulator, seeds it
from the Layout, makes people's edits and reports what the emulator saw. A `Kind` lives in
the benchmark process: it writes the type's [[sources]] tables, builds synthetic
observations for the reconciler benchmark, and runs the one-way "peer" poll that syncd is
compared with. Both sides share the module's naming functions (repository names, handles),
which is all they need to agree on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from bench.dataset import Change, Layout
from syncd.http import ApiClient
from syncd.models import Observation


class VirtualClock:
    """The emulators' one clock: each reading is `step` after the last.

    Every emulator in the host reads the same clock, as real tools share real time: syncd
    compares the times of changes made in different tools. One step per edit keeps the data
    realistic whatever the pace of the benchmark: two edits never share a second (GitHub
    stamps whole seconds) and never fall in the same minute (Jira's searches overlap by
    one), and 100,000 seeded items spread over months, not over one second."""

    STEP = timedelta(seconds=61)

    def __init__(self, start: datetime | None = None, step: timedelta = STEP) -> None:
        # Far enough back that a 100,000-item run, a few readings per item, stays in the past.
        self.now = start or datetime.now(UTC).replace(microsecond=0) - timedelta(days=1000)
        self.step = step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


class ToolEmulator(Protocol):
    """What a Tool uses of its loopback emulator: the sandbox Emulator's surface, and the
    owner writes it counted (`writes`, and `redundant`: those that changed nothing)."""

    writes: int
    redundant: int

    @property
    def lock(self) -> AbstractContextManager[Any]: ...

    @property
    def base_url(self) -> str: ...

    @property
    def counts(self) -> Counter[tuple[str, str, int]]: ...

    def start(self) -> object: ...

    def stop(self) -> None: ...

    def reset_counts(self) -> None: ...


E = TypeVar("E", bound=ToolEmulator)


class Tool(ABC, Generic[E]):
    """Emulator-side half, in the host process. Constructed with the shared clock."""

    kind: str
    emulator: E

    @abstractmethod
    def __init__(self, clock: VirtualClock) -> None: ...

    def start(self) -> dict[str, Any]:
        """Start the emulator; return what the other side needs to connect (JSON-able)."""
        self.emulator.start()
        return {"base_url": self.emulator.base_url}

    def stop(self) -> None:
        self.emulator.stop()

    @abstractmethod
    def seed(self, layout: Layout) -> None:
        """Create this type's sources of `layout` with all their items."""

    @abstractmethod
    def apply(self, change: Change) -> None:
        """Make one edit as a person in the tool would."""

    @abstractmethod
    def owner(self, source: int, number: int) -> int | None:
        """The item's current owner, as a person index (None: unowned or not a person)."""

    def counts(self) -> Counter[str]:
        """Requests the emulator answered since the last reset, by "METHOD route status"."""
        return Counter({f"{m} {p} {s}": n for (m, p, s), n in self.emulator.counts.items()})

    def reset_counts(self) -> None:
        self.emulator.reset_counts()

    def write_stats(self) -> tuple[int, int]:
        """(owner writes received, writes that changed nothing) since start."""
        with self.emulator.lock:
            return self.emulator.writes, self.emulator.redundant


class Kind(ABC):
    """Benchmark-side half, in the benchmark process."""

    kind: str
    # Environment variables the generated config reads secrets from -> their values.
    env: dict[str, str] = {}
    # Seconds for syncd's client-side rate window to empty (Trello's throttle). Timed work
    # starts after it, so one measurement does not pay for the requests of the one before.
    quiet_s: float = 0.0

    def __init__(self) -> None:
        self._clients: dict[int, ApiClient] = {}  # the peer poll's, one per source

    @abstractmethod
    def handle(self, person: int) -> str:
        """Person `person`'s handle in this tool, as the [[people]] table gives it."""

    @abstractmethod
    def source_table(self, layout: Layout, source: int, info: dict[str, Any]) -> dict[str, Any]:
        """The [[sources]] table for `source` (name, type and interval are added by the caller)."""

    @abstractmethod
    def observation(self, layout: Layout, source: int, number: int, name: str) -> Observation:
        """The observation the adapter would produce for the item, built without HTTP."""

    @abstractmethod
    def peer_poll(
        self,
        layout: Layout,
        source: int,
        info: dict[str, Any],
        snapshot: dict[str, tuple[Any, ...]],
    ) -> tuple[int, int, Counter[str]]:
        """One poll the way one-way pull tools do it: every open item, no cursor, no
        conditional request; compare with `snapshot` and update it.
        Returns (items fetched, items that differ, requests by "METHOD status")."""

    def close(self) -> None:
        """Release connections the peer poll opened."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
