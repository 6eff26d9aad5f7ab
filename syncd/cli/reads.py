"""Read commands: the operator's view of the ledger (ls, show, history, status, people)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from syncd import queries, render
from syncd import routing_ledger as handoffs
from syncd.cli import complete, routing
from syncd.cli.options import (
    DURATION_HELP,
    Env,
    duration_option_value,
    emit_json,
    json_option,
    operator_name,
    pass_env,
    paths_option,
    request_argument,
)
from syncd.config import Config
from syncd.daemonstate import daemon_status
from syncd.errors import NotFound
from syncd.health import stale_after
from syncd.ledger import Ledger, now_utc
from syncd.lookup import find_owner, find_request
from syncd.models import STATES
from syncd.terminal import Style, Terminal

SORT_FIELDS = {
    "id": "id",
    "state": "state",
    "owner": "owner",
    "source": "sources",
    "activity": "last_activity_at",
    "created": "created_at",
    "updated": "updated_at",
    "title": "title",
}
# Rows a terminal gets when no --limit is given; pipes and files get every row.
TERMINAL_LIMIT = 50
FORMATS = ("table", "json", "csv", "tsv")


def _sort_value(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value.lower().removeprefix("-") not in SORT_FIELDS:
        raise click.BadParameter(
            f"{value!r}: sort by one of {', '.join(SORT_FIELDS)} (prefix - to reverse)",
            ctx,
            param,
        )
    return value.lower()


@click.command("ls", short_help="List open requests by owner, state, source or staleness.")
@click.option(
    "--owner",
    metavar="PERSON",
    shell_complete=complete.owners,
    help="Only requests owned by PERSON: a person id (any case), one of their handles, "
    "`me` (your unix handle), or kind:handle for an unmapped identity.",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES, case_sensitive=False),
    metavar="STATE",
    help=f"Only requests in STATE ({', '.join(STATES)}); repeat for several.",
)
@click.option(
    "--all",
    "all_states",
    is_flag=True,
    help="Every state, done and cancelled too. Without it (or --state) ls shows open work: "
    f"{', '.join(queries.OPEN_STATES)}.",
)
@click.option(
    "--source",
    metavar="NAME",
    shell_complete=complete.sources,
    help="Only requests with a linked item in the source named NAME in the config.",
)
@click.option("--unowned", is_flag=True, help="Only requests that nobody owns.")
@click.option(
    "--stale",
    callback=duration_option_value,
    metavar="DURATION",
    help="Only requests with no activity for longer than DURATION. " + DURATION_HELP,
)
@click.option(
    "--sort",
    "sort",
    default="id",
    show_default=True,
    callback=_sort_value,
    metavar="FIELD",
    shell_complete=complete.choices([*SORT_FIELDS, *(f"-{f}" for f in SORT_FIELDS)]),
    help=f"Order by FIELD ({', '.join(SORT_FIELDS)}); prefix - to reverse (-activity).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    metavar="N",
    help=f"At most N rows, then a line saying how many more (0: all). On a terminal the "
    f"table stops at {TERMINAL_LIMIT} unless given; pipes and files get every row.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS, case_sensitive=False),
    default="table",
    show_default=True,
    help=(
        "table to read (on a terminal: up to 50 rows, cut to its width, coloured); json, "
        "csv or tsv for scripts and spreadsheets, every row."
    ),
)
@click.option("--no-headers", is_flag=True, help="Leave out the header line (table, csv, tsv).")
@routing.team_option
@routing.unaccepted_option
@json_option
@paths_option
@pass_env
def ls_command(
    env: Env,
    owner: str | None,
    states: tuple[str, ...],
    all_states: bool,
    source: str | None,
    unowned: bool,
    stale: timedelta | None,
    sort: str,
    limit: int | None,
    fmt: str,
    no_headers: bool,
    team: str | None,
    unaccepted: str | None,
    as_json: bool,
) -> None:
    """List requests, filtered: open work by default (open, in_progress, blocked), every
    state with --all. Filters combine: a request must match all of them. Owner and source
    names are matched in any case; a person or source nobody knows is an error.

    Activity is the latest change seen at any linked item, or in the ledger itself (an
    operator handoff, say). On a terminal, rows are coloured: red where a write-back is
    dead-lettered, yellow where a handoff is overdue (not accepted within accept_within).
    NO_COLOR turns colour off.

    \b
    Examples:
      syncd ls --unowned
      syncd ls --owner me
      syncd ls --owner alice --state in_progress --state blocked
      syncd ls --source api --stale 3d --sort activity
      syncd ls --all --sort -updated --limit 20
      syncd ls --all --format csv > requests.csv
      syncd ls --owner github:zed --json
      syncd ls --team support --unowned
      syncd ls --unaccepted
      syncd ls --unaccepted 2h --json
    """
    if owner and unowned:
        raise click.UsageError("--owner and --unowned exclude each other")
    if all_states and states:
        raise click.UsageError("--all and --state exclude each other")
    fmt = "json" if as_json else fmt.lower()
    wanted = [s.lower() for s in states] or ([] if all_states else list(queries.OPEN_STATES))
    now = now_utc()
    config = env.read_config()
    with env.read_ledger(config) as ledger:
        owner_id = _known_owner(ledger, owner) if owner is not None else None
        source_name = known_source(ledger, config, source) if source is not None else None
        rows = queries.list_requests(
            ledger,
            now=now,
            owner=owner_id,
            states=wanted,
            source=source_name,
            unowned=unowned,
            stale=stale,
        )
        rows = routing.narrow_requests(
            ledger, rows, config, team=team, unaccepted=unaccepted, now=now
        )
        dead = queries.requests_with_dead_writes(ledger) if fmt == "table" else set()
        overdue = set(handoffs.unaccepted(ledger.conn)) if fmt == "table" else set()
    field = SORT_FIELDS[sort.removeprefix("-")]
    rows.sort(key=lambda r: _sort_key(r[field]), reverse=sort.startswith("-"))
    term = Terminal.detect()
    if limit is None and fmt == "table" and term.tty:
        limit = TERMINAL_LIMIT
    more = max(0, len(rows) - limit) if limit else 0
    shown_rows = rows[:limit] if limit else rows
    if fmt == "json":
        emit_json(shown_rows)
    elif fmt in ("csv", "tsv"):
        click.echo(render.requests_delimited(shown_rows, fmt, headers=not no_headers), nl=False)
    elif not shown_rows:
        click.echo(
            "no matching requests"
            + ("" if all_states or states else " (open work; --all for every state)")
        )
    else:
        text = render.requests_view(shown_rows, now)
        if no_headers:
            text = text.split("\n", 1)[1]
        styles: dict[int, Style] = {}
        for i, r in enumerate(shown_rows, start=0 if no_headers else 1):
            if r["key"] in dead:
                styles[i] = "bad"
            elif r["key"] in overdue:
                styles[i] = "warn"
        click.echo(term.lines(text, styles))
        if more:
            click.echo(
                term.fit(
                    f"… {more:,} more ({len(rows):,} in all); --limit 0 shows every row, "
                    "or narrow the filters"
                )
            )


def _sort_key(value: Any) -> tuple[int, Any]:
    # None sorts last whichever the direction of the rest; lists (sources) by their text.
    if value is None:
        return (1, "")
    if isinstance(value, list):
        return (0, ",".join(value))
    return (0, value.lower() if isinstance(value, str) else value)


def _known_owner(ledger: Ledger, text: str) -> str:
    owner = find_owner(ledger, text, login=operator_name(), unmapped=True)
    if not queries.owner_known(ledger, owner):
        raise NotFound(f"no person or identity {text!r} in the ledger (see `syncd people`)")
    return owner


def known_source(ledger: Ledger, config: Config | None, text: str) -> str:
    """The source named `text` (any case): one in the config, else one the ledger has seen."""
    name = text.strip().lower()
    known = {s.name for s in config.sources} if config is not None else queries.source_names(ledger)
    if name not in known:
        raise NotFound(f"no source {text!r} (known: {', '.join(sorted(known)) or 'none'})")
    return name


@click.command("show", short_help="One request: linked items, owed write-backs, timeline.")
@click.argument(
    "request", callback=request_argument, metavar="REQ", shell_complete=complete.requests
)
@json_option
@paths_option
@pass_env
def show_command(env: Env, request: str, as_json: bool) -> None:
    """Show one request: its fields, every linked item with any write-back still owed to it
    (pending, dead or skipped, with the reason), and its full timeline of events.

    REQ is a request id such as REQ-42 (or just 42), a linked item's tool ref (OPS-7,
    acme/api#1) or its URL.

    \b
    Examples:
      syncd show REQ-42
      syncd show OPS-7
      syncd show https://github.com/acme/api/issues/1
      syncd show 42 --json
    """
    with env.read_ledger() as ledger:
        detail = queries.request_detail(ledger, find_request(ledger, request))
    if as_json:
        emit_json(detail)
    else:
        click.echo(render.request_view(detail))


@click.command("history", short_help="Who handed what to whom, where, when and why.")
@click.argument(
    "request",
    callback=request_argument,
    metavar="[REQ]",
    required=False,
    shell_complete=complete.requests,
)
@click.option(
    "--since",
    callback=duration_option_value,
    metavar="DURATION",
    help="Only what happened within the last DURATION. " + DURATION_HELP,
)
@click.option(
    "--all",
    "all_kinds",
    is_flag=True,
    help="Every event, not only handoffs: write-backs, conflicts, links, merges, quarantines, "
    "handoff comments posted, commands refused.",
)
@json_option
@paths_option
@pass_env
def history_command(
    env: Env, request: str | None, since: timedelta | None, all_kinds: bool, as_json: bool
) -> None:
    """The handoff log, oldest first: each change of owner, from whom to whom (HANDOFF),
    who made it (WHO: a person, or tool:handle for an identity nobody claims), where (the
    tool and item, "operator" for `syncd assign`, "routing" for a rule), when it happened
    at the source, and why (the note). Give REQ for one request only.

    \b
    Examples:
      syncd history --since 7d
      syncd history REQ-42 --all
      syncd history --since 24h --json
    """
    now = now_utc()
    with env.read_ledger() as ledger:
        key = find_request(ledger, request) if request is not None else None
        rows = queries.history(ledger, now=now, key=key, since=since, all_kinds=all_kinds)
    if as_json:
        emit_json(rows)
    else:
        click.echo(render.history_view(rows, all_kinds=all_kinds))


@click.command("status", short_help="The daemon, then per source: health, errors, write-backs.")
@json_option
@paths_option
@pass_env
def status_command(env: Env, as_json: bool) -> None:
    """First whether a daemon holds the ledger (its pid, and whether that process is alive)
    and when it last made progress (a poll finished or a page applied). Then per source:
    health, last successful poll, items, write-backs pending / dead / skipped, quarantined
    items and rate limit, with the last error and any retry time below; then totals. On a
    terminal it fits the width; failing sources and a stopped daemon are red, stale ones
    yellow (NO_COLOR turns colour off).

    Health is "failing" when the last poll failed, "never" before a first success, and
    "stale" when the last success is older than two poll intervals plus jitter and
    hang_after (this needs the config, so not with --ledger), else "ok".

    \b
    Examples:
      syncd status
      syncd status --json | jq '.sources[] | select(.health != "ok")'
      syncd status --json | jq .daemon
    """
    config = env.read_config()
    with env.read_ledger(config) as ledger:
        st = queries.source_status(ledger, now=now_utc(), stale_after=stale_after(config))
        st["daemon"] = daemon_status(ledger.path)
        st["follow_through"] = routing.status_extras(ledger)
    if as_json:
        emit_json(st)
        return
    term = Terminal.detect()
    styles: dict[int, Style] = {}
    if not st["daemon"]["running"]:
        styles[0] = "bad"
    for i, s in enumerate(st["sources"], start=2):  # after the daemon line and the header
        if s["health"] == "failing" or s["outbox_dead"]:
            styles[i] = "bad"
        elif s["health"] in ("stale", "never"):
            styles[i] = "warn"
    # The source table (its header after the daemon line, then a row per source) is cut to
    # the width; the daemon line, each source's last error and the totals wrap.
    table_rows = range(1, 2 + len(st["sources"])) if st["sources"] else range(0)
    click.echo(term.lines(render.status_view(st), styles, cut=table_rows))
    extra = routing.status_extras_view(st["follow_through"], now_utc())
    if extra:
        click.echo(extra)


@click.command("people", short_help="People, their handles per tool, unmapped identities.")
@routing.team_option
@json_option
@paths_option
@pass_env
def people_command(env: Env, team: str | None, as_json: bool) -> None:
    """People with their handles in each tool, and the identities seen in a tool that no
    [[people]] entry claims (add them to the config to map them to a person).

    \b
    Examples:
      syncd people
      syncd people --json | jq '.unmapped[].owner'
      syncd people --team support
    """
    config = env.read_config()
    with env.read_ledger(config) as ledger:
        data = routing.narrow_people(ledger, queries.people(ledger), config, team)
    if as_json:
        emit_json(data)
    else:
        click.echo(render.people_view(data))
        away = [p["away"] for p in data["people"] if p["away"]]
        if away:
            click.echo(routing.absences_view(away, now_utc()))
