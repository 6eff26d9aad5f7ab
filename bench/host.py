"""The emulator host: every tool's loopback emulator in one child process, driven over a pipe.

The emulators run apart from the benchmark so that the benchmark process holds syncd alone:
its CPU time and peak RSS are syncd's, not the emulators' JSON generation or their 100,000
issues. The two processes still share the machine's cores, so wall times include the
emulators' answers, as they would include a real API's; the host's own CPU time is reported
beside syncd's so the two can be told apart.

The protocol is (operation, arguments) -> (ok, value), one message at a time.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from collections import Counter
from collections.abc import Iterable
from multiprocessing.connection import Connection
from typing import Any

import httpx

from bench import tools
from bench.dataset import Change, Layout
from bench.tools.base import Tool, VirtualClock

_ANSWER_TIMEOUT = 600.0  # seeding 100,000 items takes a while; a hung child must not hang us


class HostError(RuntimeError):
    pass


class Host:
    """The benchmark's handle on the emulator process."""

    def __init__(self, kinds: Iterable[str]) -> None:
        # spawn, not fork: the child starts clean instead of inheriting this process's
        # threads, open ledgers and memory, which would also blur the RSS figures.
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_serve, args=(child, sorted(set(kinds))), name="bench-emulators", daemon=True
        )
        self._process.start()
        child.close()
        self.info: dict[str, dict[str, Any]] = self._reply()

    def _call(self, op: str, *args: Any) -> Any:
        self._conn.send((op, args))
        return self._reply()

    def _reply(self) -> Any:
        if not self._conn.poll(_ANSWER_TIMEOUT):
            raise HostError("the emulator process did not answer")
        try:
            ok, value = self._conn.recv()
        except EOFError:
            raise HostError(
                f"the emulator process exited (code {self._process.exitcode})"
            ) from None
        if not ok:
            raise HostError(f"the emulator process failed:\n{value}")
        return value

    def seed(self, layout: Layout) -> None:
        self._call("seed", layout)

    def apply(self, changes: list[Change]) -> None:
        self._call("apply", changes)

    def counts(self) -> Counter[str]:
        return Counter(self._call("counts"))

    def reset_counts(self) -> None:
        self._call("reset_counts")

    def cpu(self) -> float:
        """CPU seconds the emulator process has used so far (all its threads)."""
        return float(self._call("cpu"))

    def write_stats(self) -> tuple[int, int]:
        writes, redundant = self._call("write_stats")
        return int(writes), int(redundant)

    def owner(self, source: int, number: int) -> int | None:
        value = self._call("owner", source, number)
        return int(value) if value is not None else None

    def handoff(
        self,
        source: int,
        number: int,
        person: int,
        targets: list[int],
        timeout: float,
        hook: tuple[str, bytes, dict[str, str]] | None = None,
    ) -> dict[int, float | None]:
        """Change the item's owner at `source` now, then wait until each target source's
        linked item shows the new owner. Seconds from the change to each, None on timeout.
        With `hook` (url, body, headers), the tool then posts that webhook, as it would."""
        result: dict[int, float | None] = self._call(
            "handoff", source, number, person, targets, timeout, hook
        )
        return result

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(("stop", ()))
                self._process.join(10)
            except (BrokenPipeError, OSError):
                pass
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        self._conn.close()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Tools:
    """The operations, as the child runs them."""

    def __init__(self, kinds: list[str]) -> None:
        clock = VirtualClock()
        self.by_kind: dict[str, Tool[Any]] = {k: tools.tool(k, clock) for k in kinds}
        self.layout: Layout | None = None

    def _of(self, source: int) -> Tool[Any]:
        assert self.layout is not None, "seed() first"
        return self.by_kind[self.layout.kinds[source]]

    def start(self) -> dict[str, dict[str, Any]]:
        return {k: t.start() for k, t in self.by_kind.items()}

    def stop(self) -> None:
        for t in self.by_kind.values():
            t.stop()

    def seed(self, layout: Layout) -> None:
        self.layout = layout
        for t in self.by_kind.values():
            t.seed(layout)

    def apply(self, changes: list[Change]) -> None:
        for c in changes:
            self._of(c.source).apply(c)

    def counts(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for k, t in self.by_kind.items():
            out.update({f"{k} {name}": n for name, n in t.counts().items()})
        return dict(out)

    def reset_counts(self) -> None:
        for t in self.by_kind.values():
            t.reset_counts()

    def cpu(self) -> float:
        return time.process_time()

    def write_stats(self) -> tuple[int, int]:
        stats = [t.write_stats() for t in self.by_kind.values()]
        return sum(w for w, _ in stats), sum(r for _, r in stats)

    def owner(self, source: int, number: int) -> int | None:
        return self._of(source).owner(source, number)

    def handoff(
        self,
        source: int,
        number: int,
        person: int,
        targets: list[int],
        timeout: float,
        hook: tuple[str, bytes, dict[str, str]] | None = None,
    ) -> dict[int, float | None]:
        assert self.layout is not None, "seed() first"
        if self.owner(source, number) == person:
            person = (person + 1) % self.layout.people
        self._of(source).apply(Change(source, number, "owner", person))
        start = time.monotonic()
        if hook is not None:
            url, body, headers = hook
            httpx.post(url, content=body, headers=headers, timeout=10).raise_for_status()
        seen: dict[int, float | None] = dict.fromkeys(targets)
        pending = set(targets)
        while pending and time.monotonic() - start < timeout:
            for t in list(pending):
                if self.owner(t, number) == person:
                    seen[t] = time.monotonic() - start
                    pending.discard(t)
            # Fine enough against a one-second poll interval, and light on the server lock.
            time.sleep(0.005)
        return seen


def _serve(conn: Connection, kinds: list[str]) -> None:
    try:
        host = _Tools(kinds)
        info = host.start()
    except Exception:
        conn.send((False, traceback.format_exc()))
        conn.close()
        return
    try:
        conn.send((True, info))
        while True:
            op, args = conn.recv()
            if op == "stop":
                break
            try:
                value = getattr(host, op)(*args)
            except Exception:
                conn.send((False, traceback.format_exc()))
            else:
                conn.send((True, value))
    except EOFError:
        pass  # the benchmark went away; shut down quietly
    finally:
        host.stop()
        conn.close()
