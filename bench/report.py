"""Reading results: the table, the target checks, and Markdown for the README.

Everything here works on the JSON form of a result (Result.to_json()), so a results file
written earlier renders the same way: `python -m bench.report bench-results.json`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Targets from the issue; checked for the report, never asserted.
INITIAL_SYNC_SECONDS = 60.0
INITIAL_SYNC_RSS_MB = 200.0
RECONCILER_FRACTION = 0.20
INCREMENTAL_GROWTH = 1.5

Row = dict[str, Any]

HEAD = ("scenario", "N", "k", "requests", "wall s", "CPU s", "emu CPU s", "peak MB", "items/s")


def note(r: Row) -> str:
    """What the row's figures mean, in a few words."""
    d, scenario = r["detail"], r["scenario"]
    if scenario == "initial_sync":
        led = d["ledger"]
        return f"{d['pages']} pages; {led['requests']:,} requests, {led['links']:,} links"
    if scenario == "no_change":
        kinds = ", ".join(f"{n}x {k.split(' ', 1)[1]}" for k, n in sorted(r["requests"].items()))
        return f"{d['max_requests_per_cycle']} req/cycle ({kinds})"
    if scenario.startswith("incremental"):
        reps = d["repetitions"]
        obs = max(x["observations"] for x in reps)
        writes = max(x["writes"] for x in reps)
        return f"<={obs} items read, <={writes} writes; median of {len(reps)}"
    if scenario == "write_back":
        return (
            f"{d['written']} writes, {d['writes_per_s']:.0f}/s, "
            f"{d['requests_per_write']} req/write, redundant {d['redundant_writes']}"
        )
    if scenario in ("latency", "hook_latency"):
        one, every = d["to_one"], d["to_all"]
        if not one:
            return "no samples"
        return (
            f"p50 {one['p50_s']:.2f}s p99 {one['p99_s']:.2f}s "
            f"(all: {every['p50_s']:.2f}/{every['p99_s']:.2f}s) @{d['interval_s']:g}s"
        )
    if scenario == "peer_baseline":
        s = d["syncd"]
        return (
            f"vs syncd {s['requests']} req/{s['wall_s'] * 1000:.0f} ms: "
            f"{d['requests_ratio']}x requests, {d['wall_ratio']}x time"
        )
    if scenario == "reconciler":
        return (
            f"{d['fraction_of_raw']:.0%} of raw insert ({d['raw_insert_per_s']:,.0f}/s), "
            f"{d['fraction_of_floor']:.0%} of schema floor ({d['schema_floor_per_s']:,.0f}/s); "
            f"re-apply {d['reapply_unchanged_per_s']:,.0f}/s"
        )
    return ""


def _cells(r: Row) -> tuple[str, ...]:
    emu = r["emulator_cpu_s"]
    return (
        r["scenario"],
        f"{r['size']:,}",
        f"{r['changes']:,}" if r["changes"] else "-",
        f"{r['requests_total']:,}" if r["scenario"] != "reconciler" else "-",
        f"{r['wall_s']:.3f}",
        f"{r['cpu_s']:.3f}",
        f"{emu:.3f}" if emu is not None else "-",
        f"{r['peak_rss_mb']:.0f}",
        f"{r['items_per_s']:,.0f}" if r["items_per_s"] else "-",
    )


def table(results: Sequence[Row]) -> str:
    """A plain-text table, one row per result, with its note at the end."""
    rows = [HEAD, *(_cells(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEAD))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        line = "  ".join(cells)
        if n:
            line += "  " + note(results[n - 1])
        lines.append(line)
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(results: Sequence[Row]) -> str:
    head = (*HEAD, "notes")
    lines = [
        "| " + " | ".join(head) + " |",
        "|"
        + "|".join("---" if i == 0 or i == len(head) - 1 else "--:" for i in range(len(head)))
        + "|",
    ]
    for r in results:
        lines.append("| " + " | ".join((*_cells(r), note(r).replace("|", "/"))) + " |")
    return "\n".join(lines)


def targets(results: Sequence[Row]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def check(name: str, size: int, value: Any, goal: str, met: bool) -> None:
        out.append({"target": name, "size": size, "value": value, "goal": goal, "met": met})

    by = {(r["scenario"], r["size"]): r for r in results}
    sizes = sorted({r["size"] for r in results})
    for r in results:
        scenario, size, d = r["scenario"], r["size"], r["detail"]
        if scenario == "initial_sync" and size >= 100_000:
            check("initial sync wall time", size, round(r["wall_s"], 1),
                  f"< {INITIAL_SYNC_SECONDS:g} s", r["wall_s"] < INITIAL_SYNC_SECONDS)  # fmt: skip
            check("initial sync peak RSS", size, round(r["peak_rss_mb"], 1),
                  f"< {INITIAL_SYNC_RSS_MB:g} MB", r["peak_rss_mb"] < INITIAL_SYNC_RSS_MB)  # fmt: skip
        if scenario == "initial_sync":
            led = d["ledger"]
            ok = led["requests"] == d["expected_requests"] and led["links"] == size
            check("ledger rows after initial sync", size,
                  {"requests": led["requests"], "links": led["links"]},
                  f"{d['expected_requests']} requests, {size} links", ok)  # fmt: skip
        if scenario == "no_change":
            most = d["max_requests_per_cycle"]
            check("no-change requests per cycle", size, most,
                  f"<= {r['sources']} (one per source)", most <= r["sources"])  # fmt: skip
        if scenario == "reconciler":
            f = d["fraction_of_raw"]
            check("reconciler vs raw insert", size, f, f">= {RECONCILER_FRACTION:.0%}",
                  f >= RECONCILER_FRACTION)  # fmt: skip
        if scenario == "write_back":
            extra = d["redundant_writes"] + d["writes_while_settling"]
            check("redundant writes", size, extra, "0", extra == 0)
        if scenario.startswith("incremental"):
            extra = sum(x["redundant_writes"] for x in d["repetitions"])
            extra += d["writes_while_settling"]
            check(f"redundant writes ({scenario})", size, extra, "0", extra == 0)
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        for scenario in sorted(
            {r["scenario"] for r in results if r["scenario"].startswith("incr")}
        ):
            a, b = by.get((scenario, small)), by.get((scenario, big))
            if a and b and a["wall_s"] > 0:
                ratio = b["wall_s"] / a["wall_s"]
                check(f"{scenario} time, N={big:,} vs N={small:,}", big, round(ratio, 2),
                      f"<= {INCREMENTAL_GROWTH}x", ratio <= INCREMENTAL_GROWTH)  # fmt: skip
    return out


def targets_text(checks: Sequence[dict[str, Any]]) -> str:
    return "\n".join(
        f"  [{'met' if c['met'] else 'MISSED'}] {c['target']} at N={c['size']:,}: "
        f"{c['value']} (goal {c['goal']})"
        for c in checks
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.report", description="Render a results file as Markdown."
    )
    p.add_argument("results", type=Path, help="a JSON file written by python -m bench")
    args = p.parse_args(argv)
    document = json.loads(args.results.read_text(encoding="utf-8"))
    m = document["machine"]
    print(
        f"{m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, SQLite {m['sqlite']}; "
        f"types: {', '.join(document['layout']['types'])}, "
        f"{document['layout']['sources_per_type']} sources each\n"
    )
    print(markdown(document["results"]))
    print()
    for c in document["targets"]:
        print(f"- {'met' if c['met'] else '**missed**'}: {c['target']} at N={c['size']:,}: "
              f"{c['value']} (goal {c['goal']})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
