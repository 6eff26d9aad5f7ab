"""Run the benchmark: `python -m bench [--quick] [--sizes ...] [--scenarios ...] [--out FILE]`.

For each size N, one emulator process is started and seeded with N items spread over the
sources, and the scenarios run in order against one ledger. The table goes to stdout,
progress to stderr, and every figure to the JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report, tools
from bench.dataset import Layout
from bench.host import Host
from bench.measure import RSS_METHOD
from bench.scenarios import (
    SCENARIOS,
    Bench,
    BenchError,
    Result,
    Settings,
    hook_latency,
    incremental,
    initial_sync,
    latency,
    no_change,
    peer_baseline,
    reconciler,
    write_back,
)
from syncd import logs

DEFAULT_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (200,)
EMULATORS = "one child process (multiprocessing, spawn) holding every emulator"


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_mb = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            mem_mb = int(f.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_mb": mem_mb,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def run_size(
    size: int,
    kinds: Sequence[str],
    scenarios: Sequence[str],
    settings: Settings,
    workdir: Path,
    emit: Callable[[Result], None],
    progress: Callable[[str], None] = _progress,
) -> None:
    """Run the wanted scenarios at one size, handing each result to `emit` as it comes."""
    layout = Layout.spread(size, kinds)
    needs_emulators = [s for s in scenarios if s != "reconciler"]
    if needs_emulators:
        start = time.perf_counter()
        with Host(set(kinds)) as host:
            progress(f"[N={size:,}] seeding {len(kinds)} sources")
            host.seed(layout)
            progress(f"[N={size:,}] seeded in {time.perf_counter() - start:.1f}s")
            bench = Bench(layout, host, workdir / f"n{size}", settings, progress)
            try:
                steps: list[tuple[str, Callable[[], Result]]] = [
                    ("initial_sync", lambda: initial_sync(bench)),
                    ("no_change", lambda: no_change(bench)),
                ]
                steps += [
                    ("incremental", lambda k=k: incremental(bench, k))  # type: ignore[misc]
                    for k in settings.ks
                ]
                steps += [
                    ("write_back", lambda: write_back(bench)),
                    ("latency", lambda: latency(bench)),
                    ("hook_latency", lambda: hook_latency(bench)),
                    ("peer_baseline", lambda: peer_baseline(bench)),
                ]
                for name, step in steps:
                    # Every later scenario needs a synced ledger, wanted or not.
                    if name not in scenarios and name != "initial_sync":
                        continue
                    progress(f"[N={size:,}] {name}")
                    result = step()
                    if name in scenarios:
                        emit(result)
                        progress(f"[N={size:,}] {name}: {result.sample.wall_s:.3f}s")
            finally:
                bench.close()
    if "reconciler" in scenarios:
        progress(f"[N={size:,}] reconciler")
        emit(reconciler(layout, workdir / f"n{size}", progress))


# -- command line ------------------------------------------------------------------------


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x.replace("_", "")) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes are integers, e.g. 1000,10000") from None
    if not sizes or min(sizes) < 8:
        raise argparse.ArgumentTypeError("each size must be at least 8 items")
    return sizes


def _scenarios(text: str) -> tuple[str, ...]:
    wanted = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [x for x in wanted if x not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    return wanted


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark syncd against the loopback emulators (see bench/README.md).",
    )
    p.add_argument("--sizes", type=_sizes, help="total items per run, e.g. 1000,10000,100000")
    p.add_argument("--quick", action="store_true",
                   help="a small smoke run (200 items, small k, few samples), for CI")  # fmt: skip
    p.add_argument("--scenarios", type=_scenarios, default=SCENARIOS,
                   help=f"comma-separated subset of: {', '.join(SCENARIOS)}")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("bench-results.json"),
                   help="where to write the JSON results (default: bench-results.json)")  # fmt: skip
    p.add_argument("--sources", type=int, default=4, metavar="N",
                   help="sources of each tool type (default: 4)")  # fmt: skip
    # GitHub alone by default: with Trello in the mix, its rate limit (which syncd keeps to)
    # makes the k = 1,000 scenarios take most of an hour.
    p.add_argument("--types", default="github",
                   help=f"comma-separated tool types to spread the items over, of "
                        f"{', '.join(tools.MODULES)} (default: github)")  # fmt: skip
    p.add_argument("--ks", help="changed items per incremental cycle (default: 10,1000)")
    p.add_argument("--write-back-k", type=int, metavar="K",
                   help="owner changes fanned out in the write-back scenario (default: 100)")  # fmt: skip
    p.add_argument("--latency-samples", type=int, help="handoffs timed (default: 25)")
    p.add_argument("--reps", type=int, help="repetitions of short scenarios (default: 3)")
    p.add_argument("--workdir", type=Path, help="keep ledgers and configs here")
    p.add_argument("--log", type=Path, help="write syncd's log lines here (default: discard)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings()
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    if args.quick:
        # Figures from a quick run are not for reading, so it does not wait for rate
        # windows to empty between measurements.
        settings = Settings(ks=(5, 20), write_back_k=3, latency_samples=3, reps=2, quiet=False)
    if args.ks:
        settings.ks = _sizes(args.ks)
    if args.write_back_k:
        settings.write_back_k = args.write_back_k
    if args.latency_samples:
        settings.latency_samples = args.latency_samples
    if args.reps:
        settings.reps = args.reps
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = [t for t in types if t not in tools.MODULES]
    if unknown or not types or args.sources < 2:
        print("need known --types and --sources >= 2 (links need two sources)", file=sys.stderr)
        return 2
    kinds = [t for t in types for _ in range(args.sources)]

    log_stream = (args.log or Path(os.devnull)).open("a", encoding="utf-8")
    # syncd logs every poll and write, as in production; the lines go to the file, the
    # formatting cost stays in the measurement.
    logs.configure(json=True, stream=log_stream)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    started = datetime.now(UTC)
    results: list[Result] = []
    error: str | None = None
    try:
        for size in sizes:
            run_size(size, kinds, args.scenarios, settings, workdir, results.append)
    except BenchError as exc:
        # Keep what was measured before the failure: it is written out below.
        error = str(exc)
        print(f"benchmark failed: {exc}", file=sys.stderr)
    finally:
        log_stream.close()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    rows = [r.to_json() for r in results]
    checks = report.targets(rows)
    document = {
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "emulators": EMULATORS,
        "rss_method": RSS_METHOD,
        "layout": {"types": types, "sources_per_type": args.sources, "sizes": list(sizes)},
        "settings": {
            "ks": list(settings.ks),
            "write_back_k": settings.write_back_k,
            "latency_samples": settings.latency_samples,
            "interval_s": settings.interval,
            "repetitions": settings.reps,
            "seed": settings.seed,
        },
        "results": rows,
        "targets": checks,
        "error": error,
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(report.table(rows))
    print()
    print("targets:")
    print(report.targets_text(checks))
    print(f"\nresults written to {args.out}")
    return 1 if error else 0


if __name__ == "__main__":
    raise SystemExit(main())
