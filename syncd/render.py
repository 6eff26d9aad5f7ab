"""Plain-text views of what syncd.queries returns, for people at a terminal.

Scripts should use `--json` instead: these layouts may change. All times are shown in UTC,
to the second, with a trailing "Z".

Every value that came from outside (titles, notes, handles, errors) passes through
`syncd.safetext.safe_text` on its way into a view, field by field, so no escape sequence
reaches the terminal and no line break inside a value can forge a row; each view as a whole
passes through it once more (line breaks kept) as a net for fields added later.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from syncd.ledger import parse_iso
from syncd.safetext import safe_text

NONE = "-"
# Wide enough to recognise a request, narrow enough to keep one row per line.
TITLE_WIDTH = 48
ERROR_WIDTH = 160


def clip(text: str | None, width: int) -> str:
    if text is None:
        return NONE
    text = " ".join(safe_text(text).split())  # titles and errors may hold newlines
    return text if len(text) <= width else text[: width - 1] + "…"


def shown(text: str) -> str:
    """A whole view, safe for a terminal: line breaks are the view's own, kept."""
    return safe_text(text, keep_newlines=True)


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def when(ts: str | None) -> str:
    dt = parse_iso(ts)
    return dt.strftime("%Y-%m-%d %H:%M:%SZ") if dt else NONE


def span(seconds: float | None) -> str:
    """A coarse duration: "45s", "12m", "3h 5m", "2d 4h"."""
    if seconds is None:
        return NONE
    s = int(max(0, seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def ago(ts: str | None, now: datetime) -> str:
    dt = parse_iso(ts)
    return f"{span((now - dt).total_seconds())} ago" if dt else NONE


def table(headers: Sequence[str], rows: Iterable[Sequence[str | int | None]]) -> str:
    """Columns padded to their widest cell; None shows as "-". The last column is not padded,
    so a long title or error does not push trailing spaces onto every line."""
    cells = [[NONE if c is None else safe_text(str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = []
    for row in [list(headers), *cells]:
        padded = [c.ljust(widths[i]) for i, c in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def owner_text(owner: str | None, name: str | None = None) -> str:
    if owner is None:
        return "(unowned)"
    return safe_text(f"{owner} ({name})" if name and name != owner else owner)


def requests_view(rows: list[dict[str, Any]], now: datetime) -> str:
    if not rows:
        return "no matching requests"
    return table(
        ["REQUEST", "STATE", "OWNER", "SOURCES", "LAST ACTIVITY", "TITLE"],
        [
            [
                r["key"],
                r["state"],
                r["owner"] or "(unowned)",
                ",".join(r["sources"]) or NONE,
                ago(r["last_activity_at"], now),
                clip(r["title"], TITLE_WIDTH),
            ]
            for r in rows
        ],
    )


# Columns of `ls --format csv|tsv`: the JSON fields, flattened.
DELIMITED_COLUMNS = (
    "key",
    "state",
    "owner",
    "owner_name",
    "sources",
    "last_activity_at",
    "created_at",
    "updated_at",
    "title",
)


def requests_delimited(rows: list[dict[str, Any]], fmt: str, *, headers: bool = True) -> str:
    """`ls` as CSV or TSV: one row per request, sources joined by ";", text made safe (no
    control characters or line breaks, which would break a row apart)."""
    out = io.StringIO()
    writer = csv.writer(out, dialect="excel-tab" if fmt == "tsv" else "excel", lineterminator="\n")
    if headers:
        writer.writerow(DELIMITED_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                ";".join(r[c]) if c == "sources" else "" if r[c] is None else safe_text(str(r[c]))
                for c in DELIMITED_COLUMNS
            ]
        )
    return out.getvalue()


def _writeback(wb: Mapping[str, Any] | None) -> str:
    if wb is None:
        return "in step"
    target = wb["value"] if wb["value"] is not None else "(unassign)"
    if wb["status"] == "pending":
        text = f"pending: {target}"
        if wb["attempts"]:
            text += f", {wb['attempts']} failed attempts, next {when(wb['next_attempt_at'])}"
    else:
        text = f"{wb['status']}: {target}"
    if wb["reason"]:
        text += f" ({clip(wb['reason'], ERROR_WIDTH)})"
    return text


# Events that change which items make up a request (syncd link, unlink, split, merges).
IDENTITY_KINDS = ("merged", "split", "unlinked", "relinked")


def identity_change(e: Mapping[str, Any]) -> str:
    frm, to = e["from_value"] or "(none)", e["to_value"] or "(none)"
    return {
        "merged": f"{frm} merged into {to}",
        "split": f"{to} split off {frm}",
        "unlinked": f"an item left {frm} and became {to}",
        "relinked": f"an item moved here from {frm}",
    }[e["kind"]]


def describe_event(e: Mapping[str, Any]) -> str:
    """One event as a sentence fragment: what changed, where, by whom, and why."""
    kind = e["kind"]
    frm, to = e["from_value"] or "(none)", e["to_value"] or "(none)"
    if kind == "created":
        text = f"created as {safe_text(e['to_value'] or '')!r}"
    elif kind == "linked":
        text = f"linked {e['to_value']}"
    elif kind in ("owner_changed", "state_changed"):
        text = f"{e['field']}: {frm} -> {to}"
    elif kind == "conflict" and e["field"] == "link":
        text = f"not merged: {frm}"
    elif kind == "conflict":
        text = f"conflict on {e['field']}: kept {to}, lost {frm}"
    elif kind == "accepted":
        text = f"handoff to {to} accepted"
    elif kind == "escalated":
        text = f"handoff to {to} escalated, not accepted in time"
    elif kind == "delegated":
        text = f"meant for {frm}, delegated to {to}"
    elif kind in IDENTITY_KINDS:
        text = identity_change(e)
    elif kind == "writeback":
        # The detail says where it was written ("written to acme/web#1") or why not: it is
        # the whole sentence, so the source and the detail are not repeated after it.
        detail = e["detail"] or "written"
        return safe_text(f"{to} {detail}" if detail.startswith("written") else f"{to}: {detail}")
    else:
        text = kind.replace("_", " ")
    if e["source"]:
        text += f" via {e['source']}"
    if e["actor"]:
        text += f" by {e['actor']}"
    if e["note"]:
        text += f': "{e["note"]}"'
    if e["detail"]:
        text += f" [{clip(e['detail'], ERROR_WIDTH)}]"
    return safe_text(text)


def _linked_by(link: Mapping[str, Any]) -> str:
    """How an item came to its request: "declared (jira:OPS-7)", "operator", "created"."""
    via = link.get("via") or NONE
    if link.get("held"):
        via = "operator"
    if via == "declared" and link.get("declares"):
        via += f" ({', '.join(link['declares'][:2])})"
    return via


def request_view(r: Mapping[str, Any]) -> str:
    out = [
        f"{r['key']}  {safe_text(r['title'] or '')}",
        f"  state    {r['state']}, since {when(r['state_at'])}",
        f"  owner    {owner_text(r['owner'], r['owner_name'])}"
        + (f", since {when(r['owner_at'])}" if r["owner_at"] else ""),
        f"  created  {when(r['created_at'])}",
        f"  updated  {when(r['updated_at'])}",
        "",
        "Linked items:",
    ]
    if r["links"]:
        body = table(
            ["SOURCE", "REF", "LINKED BY", "OWNER THERE", "STATE THERE", "WRITE-BACK", "URL"],
            [
                [
                    f"{link['source']} ({link['kind']})",
                    link["ref"],
                    _linked_by(link),
                    link["snapshot_owner"] or "(unowned)",
                    link["snapshot_state"],
                    _writeback(link["writeback"]),
                    link["url"] or NONE,
                ]
                for link in r["links"]
            ],
        )
        out += ["  " + line for line in body.splitlines()]
    else:
        out.append("  (none)")
    if r.get("relations"):
        out += ["", "Related items (relations: shown, never linked or written to):"]
        body = table(
            ["ITEM", "", "RELATION", "OTHER", "ITS REQUEST"],
            [
                [
                    x["item"],
                    "->" if x["direction"] == "mentions" else "<-",
                    x["relation"],
                    x["other_item"] or x["other_key"],
                    x["other_request"],
                ]
                for x in r["relations"]
            ],
        )
        out += ["  " + line for line in body.splitlines()]
    out += ["", "Timeline:"]
    out += [
        f"  {when(e['source_at'] or e['at'])}  {e['kind']:<13}  {describe_event(e)}"
        for e in r["events"]
    ]
    return shown("\n".join(out))


def _person(owner: str | None, name: str | None) -> str:
    return "(nobody)" if owner is None else (name or owner)


def _where(r: Mapping[str, Any]) -> str | None:
    w: Mapping[str, str | None] = r["where"]
    if w["item"] is not None:
        return f"{w['tool']} {w['item']}"
    return w["source"]  # "operator", "routing", or a source with no item on this request


def history_view(rows: list[dict[str, Any]], *, all_kinds: bool = False) -> str:
    """One row per event: FROM -> TO, WHO, WHERE (tool and item), WHEN (at the source), WHY.
    Write-backs and other events (with --all) say only what they add."""
    if not rows:
        return "no handoffs" if not all_kinds else "no events"
    headers = ["WHEN", "REQUEST", *(["KIND"] if all_kinds else []), "HANDOFF", "WHO", "WHERE"]
    out = []
    for r in rows:
        if r["kind"] == "owner_changed":
            change = f"{_person(r['from'], r['from_name'])} -> {_person(r['to'], r['to_name'])}"
        elif r["kind"] in ("writeback", "conflict") and r["field"] in (None, "owner"):
            kept = "kept" if r["kind"] == "conflict" else "->"
            change = f"{kept} {_person(r['to'], r['to_name'])}"
        elif r["kind"] in IDENTITY_KINDS:
            change = identity_change(r)
        elif r["kind"] == "conflict" and r["field"] == "link":
            change = f"not merged: {r['from_value']}"
        elif r["kind"] in ("away", "back", "accepted", "escalated"):
            change = _person(r["to"], r["to_name"])  # who is away, back, accepting, late
        elif r["kind"] == "delegated":
            change = f"{_person(r['from'], r['from_name'])} -> {_person(r['to'], r['to_name'])}"
        else:
            change = None
        row: list[str | None] = [when(r["when"]), r["request"]]
        if all_kinds:
            row.append(r["kind"].replace("_", " "))
        row += [change, r["who_name"] or r["who"], _where(r), clip(r["why"], ERROR_WIDTH)]
        out.append(row)
    return table([*headers, "WHY"], out)


def daemon_line(d: Mapping[str, Any] | None, now: datetime) -> str:
    """Whether a daemon holds the ledger, its pid, and when it last made progress."""
    if not d:
        return "daemon: unknown"
    progress = (
        f"last progress {ago(d['last_progress_at'], now)}"
        if d["last_progress_at"]
        else "no progress recorded yet"
    )
    pid = d["pid"]
    if d["running"]:
        return f"daemon: running, pid {pid}; {progress}"
    if d["running"] is None:
        alive = "alive" if d["pid_alive"] else "not running"
        return f"daemon: cannot tell (lock not readable); pid {pid} {alive}; {progress}"
    if pid is None:
        return "daemon: not running (no daemon has held this ledger)"
    alive = "still alive but not holding the ledger" if d["pid_alive"] else "gone"
    stopped = f", stopped {ago(d['stopped_at'], now)}" if d["stopped_at"] else ""
    return f"daemon: NOT RUNNING (last pid {pid} {alive}{stopped}); {progress}"


def status_view(st: Mapping[str, Any]) -> str:
    """Narrow enough for an 80-column terminal: details go on lines of their own."""
    now = parse_iso(st["now"]) or datetime.now().astimezone()
    sources = st["sources"]
    out = []
    if "daemon" in st:
        out.append(daemon_line(st["daemon"], now))
    if sources:
        out.append(
            table(
                ["SOURCE", "HEALTH", "LAST SUCCESS", "ITEMS", "OUTBOX", "QUARANTINED", "RATE"],
                [
                    [
                        f"{s['source']} ({s['kind'] or '?'})",
                        s["health"],
                        ago(s["last_success_at"], now),
                        s["items_seen"],
                        f"{s['outbox_pending']}/{s['outbox_dead']}/{s['outbox_skipped']}",
                        s["quarantined"],
                        _rate_short(s),
                    ]
                    for s in sources
                ],
            )
        )
        out.append("(OUTBOX: write-backs pending/dead/skipped)")
        for s in sources:
            if s["last_error"]:
                out.append(
                    f"{s['source']}: last poll failed {when(s['last_error_at'])}: "
                    f"{clip(s['last_error'], ERROR_WIDTH)}"
                )
            if s["retry_at"]:
                out.append(f"{s['source']}: the source asked to wait until {when(s['retry_at'])}")
            if s["quarantined"]:
                out.append(
                    f"{s['source']}: {plural(s['quarantined'], 'item')} in quarantine "
                    f"(see `syncd quarantine --source {s['source']}`)"
                )
    else:
        out.append("no sources have been polled yet")
    t = st["totals"]
    out.append(
        f"totals: {plural(t['requests'], 'request')} ({t['open']} open, {t['unowned_open']} "
        f"of them unowned); write-backs {t['outbox_pending']} pending, {t['outbox_dead']} dead, "
        f"{t['outbox_skipped']} skipped; {plural(t['quarantined'], 'item')} quarantined"
    )
    return shown("\n".join(out))


def _rate_short(s: Mapping[str, Any]) -> str | None:
    if s["rate_remaining"] is None:
        return None
    return f"{s['rate_remaining']}/{s['rate_limit'] if s['rate_limit'] is not None else '?'}"


def people_view(data: Mapping[str, Any]) -> str:
    out = []
    if data["people"]:
        out.append(
            table(
                ["PERSON", "NAME", "OPEN", "HANDLES"],
                [
                    [
                        p["id"],
                        p["name"],
                        p["owned_open"],
                        "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(p["handles"].items()))
                        or None,
                    ]
                    for p in data["people"]
                ],
            )
        )
    else:
        out.append("no people in the ledger (add [[people]] to the config; the daemon loads them)")
    out.append("")
    if data["unmapped"]:
        out.append("Unmapped identities (seen in a tool, claimed by no [[people]] entry):")
        body = table(
            ["OWNER", "FIRST SEEN", "LAST SEEN", "OPEN"],
            [
                [u["owner"], when(u["first_seen_at"]), when(u["last_seen_at"]), u["owned_open"]]
                for u in data["unmapped"]
            ],
        )
        out += ["  " + line for line in body.splitlines()]
    else:
        out.append("no unmapped identities")
    return shown("\n".join(out))


def assign_view(before: str | None, after: Mapping[str, Any], actor: str) -> str:
    """What an operator handoff changed and what it will write back where."""
    out = [
        f"{after['key']}: {owner_text(before)} -> {owner_text(after['owner'], after['owner_name'])} "
        f"(by {actor})"
    ]
    if not after["links"]:
        out.append("no linked items: nothing to write back")
        return shown("\n".join(out))
    rows = []
    for link in after["links"]:
        wb = link["writeback"]
        if wb is None or wb["status"] != "pending":
            plan = "nothing to write: already shows this owner"
        elif wb["value"] is None:
            plan = "remove the owner"
        elif link["owner_handles"] and link["kind"] == "email" and ":" not in wb["value"]:
            # A mailbox names a person by id in its owner keyword (owner-bob), not by address.
            plan = f"tag the thread with {wb['value']}'s owner keyword"
        elif link["owner_handles"]:
            plan = f"set owner to {', '.join(link['owner_handles'])}"
        else:
            plan = (
                f"will be skipped: {wb['value']} has no {link['kind']} handle "
                "(add one under [[people]])"
            )
        rows.append([f"{link['source']} ({link['kind']})", link["ref"], plan])
    out.append("Write-backs:")
    out += ["  " + line for line in table(["SOURCE", "REF", "PLAN"], rows).splitlines()]
    out.append("The daemon writes these on its next cycle (or run `syncd sync --once`).")
    return shown("\n".join(out))


def quarantine_view(rows: list[dict[str, Any]], now: datetime) -> str:
    """`syncd quarantine`: what could not be read, where, why, and since when."""
    if not rows:
        return "no items in quarantine"
    return shown(
        table(
            ["SOURCE", "REF", "FIRST SEEN", "LAST SEEN", "TIMES", "URL", "REASON"],
            [
                [
                    r["source"],
                    r["ref"] or "(unknown)",
                    when(r["first_seen_at"]),
                    ago(r["last_seen_at"], now)
                    if r["released_at"] is None
                    else f"released {when(r['released_at'])}",
                    r["times"],
                    r["url"] or NONE,
                    clip(r["reason"], ERROR_WIDTH),
                ]
                for r in rows
            ],
        )
    )


def _key_text(key: str) -> str:
    """A matching key as operators write it: the ledger's own "req:42" is REQ-42."""
    number = key.removeprefix("req:")
    return f"REQ-{number}" if number != key and number.isdigit() else key


def identity_view(o: Mapping[str, Any], actor: str) -> str:
    """What `syncd link`, `unlink` or `split` did (or, with --dry-run, would do)."""
    would = o["dry_run"]
    owned = f"owned by {owner_text(o['owner'])}" if o.get("owner") else "unowned"
    if o["action"] == "already":
        return (
            f"{o['item']} is in {o['request']} already; it stays there now whatever its text says"
        )
    if o["action"] == "unlinked":
        lines = [
            f"{o['item']} {'would leave' if would else 'left'} {o['from']} and "
            f"{'would become' if would else 'is now'} {o['request']}, {owned} (by {actor})",
            "Nothing is written to any tool. Declarations of "
            + ", ".join(_key_text(k) for k in o["set_apart"])
            + " no longer link it.",
        ]
    elif o["action"] == "split":
        lines = [
            f"{o['request']} {'would split' if would else 'split'} off {o['from']} again, with "
            f"{', '.join(o['items'])}, {owned} (by {actor})",
            "Nothing is written to any tool.",
        ]
    else:
        verb = "merge into" if o["action"] == "merged" else "join"
        past = "merged into" if o["action"] == "merged" else "joined"
        # A whole request merged in is its own "from"; an item names the request it left.
        came = f" (from {o['from']})" if o["from"] and o["from"] != o["item"] else ""
        lines = [
            f"{o['item']} {('would ' + verb) if would else past} {o['request']}{came}, "
            f"{owned} (by {actor})"
        ]
        if o["writes"]:
            lines.append("Write-backs owed:")
            lines += [
                f"  {w['source']} {w['ref']}: owner {owner_text(w['value'])}" for w in o["writes"]
            ]
        else:
            lines.append("No write-backs owed: every item already shows this owner.")
    if would:
        lines.append("Dry run: nothing was changed.")
    return "\n".join(safe_text(line) for line in lines)


def relink_view(rows: list[dict[str, Any]], link_on: str) -> str:
    """`syncd relink --dry-run`: what the current rule would change."""
    if not rows:
        return f"the ledger agrees with the current rule (link_on = {link_on!r}): nothing to change"
    body = table(
        ["WOULD", "ITEM", "REQUEST", "LINKED BY", "WHY"],
        [[r["action"], r["item"], r["request"], r["via"], r["reason"]] for r in rows],
    )
    drops = sum(r["action"] == "drop" for r in rows)
    return shown(
        f"Under link_on = {link_on!r}: {plural(drops, 'link')} the rule would not have made, "
        f"{plural(len(rows) - drops, 'declaration')} meeting another request.\n"
        + body
        + "\nNothing was changed. Review, then `syncd unlink ITEM` or `syncd link REQ ITEM`."
    )
