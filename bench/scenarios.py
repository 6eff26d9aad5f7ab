"""The scenarios, each a function of a Bench (one size, seeded emulators, one ledger).

They run in the order of SCENARIOS, because each leaves the ledger and emulators as the
next expects: the initial sync fills the ledger, and every later scenario starts by letting
syncd settle (see Bench.settle) so that it measures from steady state. The reconciler
scenario needs no emulator and uses a ledger of its own.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import sqlite3
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import tools
from bench.dataset import CHANGE_POOL, Layout, anchor_handoffs, pick_changes
from bench.host import Host
from bench.measure import Meter, Sample
from bench.tools.base import Kind
from syncd.config import Config, Person, load_config
from syncd.cycle import Engine, PollResult
from syncd.daemon import Daemon
from syncd.ledger import ApplyStats, Ledger
from syncd.models import Page
from syncd.notify import Notifier
from syncd.people import Directory
from syncd.webhooks import hub_signature, signature_header, trello_signature

PAGE = 100  # observations per page in the reconciler scenario, as GitHub's largest page
HOOK_SECRET_ENV = "BENCH_HOOK_SECRET"  # noqa: S105 - the variable's name, not a secret
HOOK_INTERVAL = 600.0  # the poll interval in the hook latency scenario: 10 minutes


class BenchError(RuntimeError):
    pass


@dataclass
class Settings:
    ks: tuple[int, ...] = (10, 1000)  # changed items per incremental cycle
    write_back_k: int = 100  # owner changes fanned out in the write-back scenario
    latency_samples: int = 25
    interval: float = 1.0  # the daemon's poll interval in the latency scenario
    reps: int = 3  # repetitions of the short scenarios; the median is reported
    seed: int = 6
    quiet: bool = True  # wait out client-side rate windows before timed work (Kind.quiet_s)


@dataclass
class Result:
    scenario: str
    size: int
    sources: int
    items: int  # items the scenario covers: all of them, or the k changed
    changes: int
    sample: Sample
    detail: dict[str, Any] = field(default_factory=dict)
    rate_of: float | None = None  # items per second, when not items / wall time

    @property
    def items_per_s(self) -> float:
        if self.rate_of is not None:
            return self.rate_of
        return self.items / self.sample.wall_s if self.sample.wall_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        s = self.sample
        return {
            "scenario": self.scenario,
            "size": self.size,
            "sources": self.sources,
            "items": self.items,
            "changes": self.changes,
            "wall_s": round(s.wall_s, 6),
            "cpu_s": round(s.cpu_s, 6),
            "emulator_cpu_s": None if s.emulator_cpu_s is None else round(s.emulator_cpu_s, 6),
            "start_rss_mb": round(s.start_rss_mb, 1),
            "peak_rss_mb": round(s.peak_rss_mb, 1),
            "requests": dict(sorted(s.requests.items())),
            "requests_total": s.requests_total,
            "items_per_s": round(self.items_per_s, 1),
            "detail": self.detail,
        }


def _median_sample(samples: list[Sample]) -> Sample:
    """The sample with the median wall time (the upper one of an even count), kept whole so
    its requests, CPU and RSS belong to the same run."""
    ordered = sorted(samples, key=lambda s: s.wall_s)
    return ordered[len(ordered) // 2]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: with fewer than 100 values, p99 is the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")


class ProgressLedger(Ledger):
    """A Ledger that reports how many observations it has applied, for progress lines."""

    on_applied: Callable[[int], None] | None = None

    def apply_page(self, *args: Any, **kwargs: Any) -> ApplyStats:
        stats = super().apply_page(*args, **kwargs)
        if self.on_applied is not None:
            self.on_applied(stats.observations)
        return stats


class Bench:
    """One size: the layout, the emulators seeded with it, a config and a ledger."""

    def __init__(
        self,
        layout: Layout,
        host: Host,
        workdir: Path,
        settings: Settings,
        progress: Callable[[str], None],
    ) -> None:
        self.layout = layout
        self.host = host
        self.settings = settings
        self.progress = progress
        self.rng = random.Random(settings.seed)
        self.round = 0
        self.kinds: dict[str, Kind] = {k: tools.kind(k) for k in sorted(set(layout.kinds))}
        for kind in self.kinds.values():
            os.environ.update(kind.env)
        self.names = [f"{layout.kinds[s]}-{s}" for s in layout.sources]
        workdir.mkdir(parents=True, exist_ok=True)
        self.ledger_path = workdir / "ledger.db"
        self.config_path = workdir / "syncd.toml"
        self.config_path.write_text(self._config_text())
        self.config: Config = load_config(self.config_path)
        self.ledger: ProgressLedger | None = None
        self.engine: Engine | None = None
        self.open()

    def _config_text(self, interval: float | None = None, hooks_port: int | None = None) -> str:
        """The config; with `hooks_port`, the daemon listens there for webhooks, signed with
        $BENCH_HOOK_SECRET, and polls every `interval` seconds."""
        lines = [f"ledger = {_toml(str(self.ledger_path))}", "", "[daemon]", 'jitter = "0s"']
        if hooks_port is not None:
            lines += ["", "[http]", f'listen = "127.0.0.1:{hooks_port}"']
        for s in self.layout.sources:
            kind = self.layout.kinds[s]
            table = {
                "name": self.names[s],
                "type": kind,
                "interval": f"{interval or self.settings.interval:g}s",
                **self.kinds[kind].source_table(self.layout, s, self.host.info[kind]),
            }
            if hooks_port is not None:
                table["webhook_secret"] = {"env": HOOK_SECRET_ENV}
                if kind == "trello":
                    table["webhook_url"] = hook_url(hooks_port, self.names[s])
            lines += ["", "[[sources]]"] + [f"{k} = {_toml(v)}" for k, v in table.items()]
        for p in range(self.layout.people):
            handles = {k: kind.handle(p) for k, kind in self.kinds.items()}
            lines += ["", "[[people]]", f'id = "p{p:02d}"', f"handles = {_toml(handles)}"]
        return "\n".join(lines) + "\n"

    def open(self) -> None:
        self.ledger = ProgressLedger(self.ledger_path)
        self.engine = Engine(self.config, self.ledger)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        if self.ledger is not None:
            self.ledger.close()
        self.engine = self.ledger = None
        for kind in self.kinds.values():
            kind.close()

    @property
    def e(self) -> Engine:
        if self.engine is None:
            raise BenchError("the engine is closed")
        return self.engine

    @property
    def db(self) -> ProgressLedger:
        if self.ledger is None:
            raise BenchError("the ledger is closed")
        return self.ledger

    def per_source(self) -> dict[str, Counter[str]]:
        return {n: Counter(c) for n, c in self.e.request_counts().items()}

    def cycle(self) -> list[PollResult]:
        results = self.e.sync_once()
        failed = [f"{r.source}: {r.error}" for r in results if not r.ok]
        if failed:
            raise BenchError("poll failed: " + "; ".join(failed))
        return results

    def settle(self, max_cycles: int = 6) -> dict[str, int]:
        """Cycle until one reads nothing and writes nothing; the next is then steady state.

        After edits, GitHub needs a few quiet cycles: one reads the edits, the next reads
        syncd's own write-backs (echoes, which change nothing), one more reads only the
        boundary item and stores an ETag, and from then on a cycle is a single 304."""
        w0, _ = self.host.write_stats()
        for n in range(1, max_cycles + 1):
            w1, _ = self.host.write_stats()
            results = self.cycle()
            w2, _ = self.host.write_stats()
            if sum(r.applied.observations for r in results) == 0 and w2 == w1:
                return {"cycles": n, "writes": w2 - w0}
        raise BenchError(f"syncd did not settle within {max_cycles} cycles")

    def quiet(self) -> None:
        """Let syncd's client-side rate windows empty before timed work."""
        wait = max(k.quiet_s for k in self.kinds.values())
        if self.settings.quiet and wait > 0:
            time.sleep(wait)

    def ledger_counts(self) -> dict[str, int]:
        return self.db.counts()


def _delta(after: dict[str, Counter[str]], before: dict[str, Counter[str]]) -> dict[str, Any]:
    return {n: dict(after[n] - before.get(n, Counter())) for n in after}


def _cycle_stats(results: list[PollResult]) -> dict[str, int]:
    return {
        "observations": sum(r.applied.observations for r in results),
        "changed": sum(r.applied.changed for r in results),
        "created": sum(r.applied.created for r in results),
        "conflicts": sum(r.applied.conflicts for r in results),
        "pages": sum(r.pages for r in results),
    }


# -- 1. initial sync ---------------------------------------------------------------------


def initial_sync(b: Bench) -> Result:
    total, step = b.layout.total, max(1, b.layout.total // 10)
    done = [0, step]

    def applied(n: int) -> None:
        done[0] += n
        if done[0] >= done[1]:
            b.progress(f"  initial sync: {done[0]:,} / {total:,} items")
            done[1] += step

    b.db.on_applied = applied
    w0, _ = b.host.write_stats()
    try:
        with Meter(b.host) as m:
            results = b.cycle()
    finally:
        b.db.on_applied = None
    writes, _ = b.host.write_stats()
    counts = b.ledger_counts()
    return Result(
        "initial_sync",
        total,
        len(b.names),
        total,
        0,
        m.sample,
        {
            **_cycle_stats(results),
            "ledger": counts,
            "expected_requests": b.layout.expected_requests(),
            "expected_links": total,
            "writes": writes - w0,
        },
    )


# -- 2. no-change cycle ------------------------------------------------------------------


def no_change(b: Bench) -> Result:
    settled = b.settle()
    b.quiet()
    samples, per_source, ledger_delta = [], [], []
    for _ in range(b.settings.reps):
        before, c0 = b.per_source(), b.ledger_counts()
        with Meter(b.host) as m:
            results = b.cycle()
        samples.append(m.sample)
        per_source.append(_delta(b.per_source(), before))
        c1 = b.ledger_counts()
        ledger_delta.append({t: c1[t] - c0[t] for t in c1 if c1[t] != c0[t]})
        if _cycle_stats(results)["observations"]:
            raise BenchError("a no-change cycle read items")
    most = max(sum(sum(c.values()) for c in cycle.values()) for cycle in per_source)
    return Result(
        "no_change",
        b.layout.total,
        len(b.names),
        b.layout.total,
        0,
        _median_sample(samples),
        {
            "settle": settled,
            "repetitions": len(samples),
            "wall_s_each": [round(s.wall_s, 6) for s in samples],
            "requests_per_source": per_source,
            "max_requests_per_cycle": most,
            "ledger_rows_added": ledger_delta,
        },
    )


# -- 3. incremental cycle ----------------------------------------------------------------


def incremental(b: Bench, k: int) -> Result:
    samples, each = [], []
    settle_writes = 0
    for rep in range(b.settings.reps):
        settle_writes += b.settle()["writes"]
        b.round += 1
        # Seeded by (k, repetition) alone: the same edits at every N.
        rng = random.Random(f"{b.settings.seed}-{k}-{rep}")
        changes = pick_changes(b.layout, k, rng, b.round)
        b.host.apply(changes)
        b.quiet()
        w0, r0 = b.host.write_stats()
        with Meter(b.host) as m:
            results = b.cycle()
        w1, r1 = b.host.write_stats()
        samples.append(m.sample)
        each.append(
            {
                "wall_s": round(m.sample.wall_s, 6),
                "requests": m.sample.requests_total,
                "writes": w1 - w0,
                "redundant_writes": r1 - r0,
                "fields": dict(Counter(c.field for c in changes)),
                **_cycle_stats(results),
            }
        )
    after = b.settle()
    settle_writes += after["writes"]
    return Result(
        f"incremental_k{k}",
        b.layout.total,
        len(b.names),
        len(changes),
        len(changes),
        _median_sample(samples),
        {
            "k": k,
            "change_pool": sum(min(CHANGE_POOL, n) for n in b.layout.counts),
            "repetitions": each,
            "writes_while_settling": settle_writes,
        },
    )


# -- 4. write-back -----------------------------------------------------------------------


def write_back(b: Bench) -> Result:
    b.settle()
    changes = anchor_handoffs(b.layout, b.settings.write_back_k, b.rng)
    b.host.apply(changes)
    b.quiet()
    w0, r0 = b.host.write_stats()
    with Meter(b.host) as polled:
        results = [b.e.poll(n) for n in b.names]
    # Owner writes only: the outbox also holds one handoff-comment row per handoff and linked
    # item (field 'comment'), which drain_comments posts or marks unneeded, not drain.
    owed = b.db.rows(
        "SELECT count(*) AS n FROM outbox WHERE status = 'pending' AND field = 'owner'"
    )[0]["n"]
    comments_owed = b.db.rows(
        "SELECT count(*) AS n FROM outbox WHERE status = 'pending' AND field = 'comment'"
    )[0]["n"]
    with Meter(b.host) as m:
        stats = [b.e.drain(n) for n in b.names]
    w1, _ = b.host.write_stats()
    settled = b.settle()
    w2, r2 = b.host.write_stats()
    written = sum(s.written for s in stats)
    failed = sum(s.failed + s.dead for s in stats)
    if failed:
        raise BenchError(f"{failed} write-backs failed")
    k = len(changes)
    return Result(
        "write_back",
        b.layout.total,
        len(b.names),
        k,
        k,
        m.sample,
        {
            "fan_out": len(b.names) - 1,
            "owed": owed,
            "comments_owed": comments_owed,
            "written": written,
            "already": sum(s.already for s in stats),
            "superseded": sum(s.superseded for s in stats),
            "writes_per_s": round(written / m.sample.wall_s, 1) if m.sample.wall_s else 0,
            "requests_per_write": round(m.sample.requests_total / written, 2) if written else 0,
            "write_requests": w1 - w0,
            # Writes the emulator received that changed nothing, through the settle cycles.
            "redundant_writes": r2 - r0,
            # Writes made after the drain: reading syncd's own writes back must cause none.
            "writes_while_settling": w2 - w1,
            "settle_cycles": settled["cycles"],
            "poll": {
                "wall_s": round(polled.sample.wall_s, 6),
                "requests": polled.sample.requests_total,
                **_cycle_stats(results),
            },
        },
        rate_of=written / m.sample.wall_s if m.sample.wall_s else 0.0,
    )


# -- 5. propagation latency --------------------------------------------------------------


def _latency_summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50_s": round(percentile(values, 50), 3),
        "p99_s": round(percentile(values, 99), 3),
        "max_s": round(max(values), 3),
        "mean_s": round(statistics.fmean(values), 3),
    }


def latency(b: Bench) -> Result:
    """Owner changes made in source 0 while the real daemon runs, timed until the linked
    items in the other sources show them."""
    s = b.settings
    b.settle()
    b.quiet()
    b.close()  # the daemon opens the ledger itself, as `syncd run` does
    groups = b.layout.full_groups()
    targets = [t for t in b.layout.sources if t != 0]
    to_one: list[float] = []
    to_all: list[float] = []
    missed = 0
    crashed: list[BaseException] = []
    daemon = Daemon(b.config_path, notifier=Notifier(""))

    def drive() -> None:
        nonlocal missed
        try:
            time.sleep(2 * s.interval)  # the first polls, with the ETags they store
            for n in range(s.latency_samples):
                # A random pause puts each change at a random point of the poll cycle.
                time.sleep(b.rng.uniform(0, s.interval))
                seen = b.host.handoff(
                    0,
                    groups[n % len(groups)],
                    b.rng.randrange(b.layout.people),
                    targets,
                    timeout=10 * s.interval + 10,
                )
                if any(v is None for v in seen.values()):
                    missed += 1
                    continue
                times = [v for v in seen.values() if v is not None]
                to_one.append(times[0])
                to_all.append(max(times))
        except BaseException as exc:
            crashed.append(exc)
        finally:
            daemon.stop.set()

    driver = threading.Thread(target=drive, name="latency-driver")
    with Meter(b.host) as m:
        driver.start()
        code = daemon.run()  # in the main thread: it installs signal handlers
        driver.join()
    b.open()
    if crashed:
        raise BenchError(f"latency driver failed: {crashed[0]!r}") from crashed[0]
    if code != 0:
        raise BenchError(f"the daemon exited {code}")
    _, redundant = b.host.write_stats()

    return Result(
        "latency",
        b.layout.total,
        len(b.names),
        len(to_one),
        len(to_one),
        m.sample,
        {
            "interval_s": s.interval,
            "samples": len(to_one),
            "missed": missed,
            "to_one": _latency_summary(to_one),  # source 0 -> source 1
            "to_all": _latency_summary(to_all),  # until every other linked source shows it
            "to_one_each_s": [round(v, 3) for v in to_one],
            "redundant_writes_so_far": redundant,
        },
        rate_of=0.0,
    )


# -- 5b. hook-to-write-back latency ------------------------------------------------------


def hook_url(port: int, source: str) -> str:
    return f"http://127.0.0.1:{port}/hooks/{source}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def signed_hook(kind: str, secret: str, url: str, n: int) -> tuple[bytes, dict[str, str]]:
    """A hook body and its signature headers, as the tool would send after a change. The
    body is only a hint (syncd reads nothing in it); each one differs, as deliveries do."""
    body = json.dumps({"bench": "hook", "delivery": n}).encode()
    if kind == "trello":
        signature = trello_signature(secret, body, url)
    else:
        signature = hub_signature(secret, body)
    return body, {signature_header(kind): signature, "content-type": "application/json"}


def hook_latency(b: Bench) -> Result:
    """The real daemon polling every 10 minutes, with webhooks on: an owner change made in
    source 0 and announced by its (signed) hook, timed until the linked items in the other
    sources show it. Without the hook the change would wait up to two intervals."""
    s = b.settings
    b.settle()
    b.quiet()
    b.close()
    port = _free_port()
    secret = "bench-hook-secret-" + os.urandom(8).hex()
    os.environ[HOOK_SECRET_ENV] = secret
    config = b.config_path.with_name("syncd-hooks.toml")
    config.write_text(b._config_text(interval=HOOK_INTERVAL, hooks_port=port))
    groups = b.layout.full_groups()
    targets = [t for t in b.layout.sources if t != 0]
    kind0, url0 = b.layout.kinds[0], hook_url(port, b.names[0])
    to_one: list[float] = []
    to_all: list[float] = []
    slow: list[tuple[str, float]] = []
    missed = 0
    crashed: list[BaseException] = []
    daemon = Daemon(config, notifier=Notifier(""))

    def first_polls_done() -> bool:
        with daemon._state_lock:
            jobs = list(daemon.progress.jobs.values())
        return bool(jobs) and all(j.last_end is not None for j in jobs)

    def drive() -> None:
        nonlocal missed
        try:
            deadline = time.monotonic() + 60
            while not first_polls_done() and time.monotonic() < deadline:
                time.sleep(0.05)
            for n in range(s.latency_samples):
                # Apart by more than the hook coalescing window, so each hook is a lone one.
                time.sleep(b.rng.uniform(1.5, 3.0))
                body, headers = signed_hook(kind0, secret, url0, n)
                seen = b.host.handoff(
                    0,
                    groups[n % len(groups)],
                    b.rng.randrange(b.layout.people),
                    targets,
                    timeout=30,
                    hook=(url0, body, headers),
                )
                if any(v is None for v in seen.values()):
                    missed += 1
                    continue
                times = [v for v in seen.values() if v is not None]
                to_one.append(times[0])
                to_all.append(max(times))
                slowest = max(seen, key=lambda t: seen[t] or 0.0)
                slow.append((b.names[slowest], round(max(times), 3)))
        except BaseException as exc:
            crashed.append(exc)
        finally:
            daemon.stop.set()

    driver = threading.Thread(target=drive, name="hook-latency-driver")
    with Meter(b.host) as m:
        driver.start()
        code = daemon.run()
        driver.join()
    b.open()
    if crashed:
        raise BenchError(f"hook latency driver failed: {crashed[0]!r}") from crashed[0]
    if code != 0:
        raise BenchError(f"the daemon exited {code}")
    return Result(
        "hook_latency",
        b.layout.total,
        len(b.names),
        len(to_one),
        len(to_one),
        m.sample,
        {
            "interval_s": HOOK_INTERVAL,
            "samples": len(to_one),
            "missed": missed,
            "to_one": _latency_summary(to_one),
            "to_all": _latency_summary(to_all),
            "to_all_each_s": [round(v, 3) for v in to_all],
            # The last source to show each handoff, and when: where the tail comes from.
            "slowest_target": slow,
        },
        rate_of=0.0,
    )


# -- 6. peer baseline --------------------------------------------------------------------


def peer_baseline(b: Bench) -> Result:
    """A one-way puller's no-change cycle (every open item, no cursor, no conditional
    request) beside syncd's, measured here in the same run."""
    b.settle()
    b.quiet()
    syncd = []
    for _ in range(b.settings.reps):
        with Meter(b.host) as m:
            b.cycle()
        syncd.append(m.sample)
    syncd_sample = _median_sample(syncd)
    info = b.host.info
    snapshot: dict[str, tuple[Any, ...]] = {}

    def peer_cycle() -> tuple[int, int]:
        fetched = differ = 0
        for src in b.layout.sources:
            kind = b.layout.kinds[src]
            f, d, _ = b.kinds[kind].peer_poll(b.layout, src, info[kind], snapshot)
            fetched, differ = fetched + f, differ + d
        return fetched, differ

    with Meter(b.host) as first:
        fetched, _ = peer_cycle()
    samples = []
    for _ in range(b.settings.reps):
        with Meter(b.host) as m:
            fetched, differ = peer_cycle()
        if differ:
            raise BenchError("the peer saw changes in a no-change cycle")
        samples.append(m.sample)
    peer = _median_sample(samples)
    req_ratio = peer.requests_total / max(1, syncd_sample.requests_total)
    return Result(
        "peer_baseline",
        b.layout.total,
        len(b.names),
        b.layout.total,
        0,
        peer,
        {
            "open_items_fetched": fetched,
            "first_cycle": {
                "wall_s": round(first.sample.wall_s, 6),
                "requests": first.sample.requests_total,
            },
            "syncd": {
                "wall_s": round(syncd_sample.wall_s, 6),
                "cpu_s": round(syncd_sample.cpu_s, 6),
                "requests": syncd_sample.requests_total,
                "requests_by_type": dict(syncd_sample.requests),
            },
            "requests_ratio": round(req_ratio, 1),
            "wall_ratio": round(peer.wall_s / syncd_sample.wall_s, 1)
            if syncd_sample.wall_s
            else None,
            "cpu_ratio": round(peer.cpu_s / syncd_sample.cpu_s, 1) if syncd_sample.cpu_s else None,
            "requests_per_hour_at_60s": {
                "peer": peer.requests_total * 60,
                "syncd": syncd_sample.requests_total * 60,
            },
        },
    )


# -- 7. reconciler alone -----------------------------------------------------------------


def _pages(layout: Layout, kinds: dict[str, Kind], names: list[str]) -> Iterator[tuple[str, Page]]:
    """Synthetic pages, one source after another, built lazily: never all in memory."""
    for s in layout.sources:
        kind = kinds[layout.kinds[s]]
        for lo in range(1, layout.counts[s] + 1, PAGE):
            hi = min(lo + PAGE, layout.counts[s] + 1)
            page = Page(
                [kind.observation(layout, s, i, names[s]) for i in range(lo, hi)],
                cursor={"page": lo // PAGE},
            )
            yield names[s], page


_RAW_SCHEMA = """
CREATE TABLE items (
    id INTEGER PRIMARY KEY, request_id INTEGER NOT NULL, source TEXT NOT NULL,
    kind TEXT NOT NULL, ref TEXT NOT NULL, url TEXT NOT NULL, owner TEXT, state TEXT,
    title TEXT, updated_at TEXT, seen_at TEXT NOT NULL, UNIQUE (source, ref)
)
"""
_RAW_INSERT = "INSERT INTO items VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def raw_insert_rate(
    layout: Layout, kinds: dict[str, Kind], names: list[str], path: Path
) -> tuple[float, float]:
    """The ceiling: one row per observation, shaped like a `links` row with its unique
    index, by executemany, one transaction per page, with the ledger's pragmas. Returns
    (rows per second, seconds), counting only the database work."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(_RAW_SCHEMA)
    spent, rows = 0.0, 0
    now = datetime.now(UTC).isoformat()
    for name, page in _pages(layout, kinds, names):
        batch = [
            (
                rows + n,
                name,
                "bench",
                o.ref,
                o.url,
                o.owners[0] if o.owners else None,
                o.state,
                o.title,
                o.updated_at.isoformat(),
                now,
            )
            for n, o in enumerate(page.observations)
        ]
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_RAW_INSERT, batch)
        conn.execute("COMMIT")
        spent += time.perf_counter() - t
        rows += len(batch)
    conn.close()
    return rows / spent, spent


def schema_floor_rate(
    layout: Layout, kinds: dict[str, Kind], names: list[str], path: Path
) -> tuple[float, float]:
    """A second, fairer ceiling: the rows syncd must store for a new item (its request,
    link, keys and creation events) in a ledger with syncd's schema, indexes and foreign
    keys, by executemany, one transaction per page, and no logic at all. Every item is taken
    as a request of its own. Returns (items per second, seconds)."""
    ledger = Ledger(path)
    c = ledger.conn
    spent, rid = 0.0, 0
    now = datetime.now(UTC).isoformat()
    for name, page in _pages(layout, kinds, names):
        requests: list[tuple[Any, ...]] = []
        links: list[tuple[Any, ...]] = []
        keys: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        for o in page.observations:
            rid += 1
            at = o.updated_at.isoformat()
            owner = o.owners[0] if o.owners else None
            requests.append((rid, f"REQ-{rid}", o.title, o.state, owner, at, at, at, now, now))
            links.append(
                (rid, rid, name, "bench", o.ref, o.url, owner, o.state, o.title, at, now, now)
            )
            keys += (
                [(rid, k, "self") for k in o.keys]
                + [(rid, k, "declared") for k in o.declared]
                + [(rid, k, "mention") for k in o.mentions]
            )
            events.append((rid, now, at, "created", None, name, None, o.title))
            if owner is not None:
                events.append((rid, now, at, "owner_changed", "owner", name, None, owner))
        t = time.perf_counter()
        c.execute("BEGIN IMMEDIATE")
        c.executemany(
            "INSERT INTO requests (id, key, title, state, owner, owner_at, state_at, title_at, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            requests,
        )
        c.executemany(
            "INSERT INTO links (id, request_id, source, kind, ref, url, snap_owner, snap_state, "
            "snap_title, source_updated_at, first_seen_at, last_seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            links,
        )
        c.executemany("INSERT OR IGNORE INTO link_keys (link_id, key, role) VALUES (?, ?, ?)", keys)
        c.executemany(
            "INSERT INTO events (request_id, at, source_at, kind, field, source, from_value, "
            "to_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            events,
        )
        c.execute("COMMIT")
        spent += time.perf_counter() - t
    ledger.close()
    return layout.total / spent, spent


def reconciler(layout: Layout, workdir: Path, progress: Callable[[str], None]) -> Result:
    """Observations applied to a fresh ledger in process, timing only Ledger.apply_page,
    beside the raw insert rate measured here and now."""
    workdir.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, Kind] = {k: tools.kind(k) for k in sorted(set(layout.kinds))}
    names = [f"{layout.kinds[s]}-{s}" for s in layout.sources]
    people = [
        Person(id=f"p{p:02d}", handles={k: kind.handle(p) for k, kind in kinds.items()})
        for p in range(layout.people)
    ]
    directory = Directory.build(people)
    for leftover in workdir.glob("reconciler.db*"):
        leftover.unlink()
    ledger = Ledger(workdir / "reconciler.db")
    ledger.sync_people(people)

    def apply_all() -> tuple[float, float]:
        wall = cpu = 0.0
        for name, page in _pages(layout, kinds, names):
            t, c = time.perf_counter(), time.process_time()
            ledger.apply_page(name, layout.kinds[names.index(name)], page, directory)
            wall += time.perf_counter() - t
            cpu += time.process_time() - c
        return wall, cpu

    with Meter(None) as m:
        create_wall, create_cpu = apply_all()
        progress(f"  reconciler: {layout.total:,} observations applied")
        again_wall, _ = apply_all()
    counts = ledger.counts()
    ledger.close()
    raw_path = workdir / "raw.db"
    for leftover in workdir.glob("raw.db*"):
        leftover.unlink()
    raw_rate, raw_wall = raw_insert_rate(layout, kinds, names, raw_path)
    for leftover in workdir.glob("floor.db*"):
        leftover.unlink()
    floor_rate, _ = schema_floor_rate(layout, kinds, names, workdir / "floor.db")
    create_rate = layout.total / create_wall
    sample = m.sample
    # Report the apply time only; the page building around it is the benchmark's own work.
    sample.wall_s, sample.cpu_s = create_wall, create_cpu
    return Result(
        "reconciler",
        layout.total,
        len(names),
        layout.total,
        0,
        sample,
        {
            "observations_per_s": round(create_rate, 1),
            "reapply_unchanged_per_s": round(layout.total / again_wall, 1),
            "raw_insert_per_s": round(raw_rate, 1),
            "raw_insert_s": round(raw_wall, 6),
            "fraction_of_raw": round(create_rate / raw_rate, 3),
            "schema_floor_per_s": round(floor_rate, 1),
            "fraction_of_floor": round(create_rate / floor_rate, 3),
            "ledger": counts,
            "expected_requests": layout.expected_requests(),
        },
    )


SCENARIOS = (
    "initial_sync",
    "no_change",
    "incremental",
    "write_back",
    "latency",
    "hook_latency",
    "peer_baseline",
    "reconciler",
)
