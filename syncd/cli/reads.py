"""Read commands: the operator's view of the ledger (ls, show, history, status, people)."""

from __future__ import annotations

from datetime import timedelta

import click

from syncd import queries, render
from syncd.cli.options import (
    Env,
    duration_option_value,
    emit_json,
    json_option,
    pass_env,
    paths_option,
    request_argument,
)
from syncd.config import Config
from syncd.ledger import now_utc
from syncd.models import STATES


@click.command("ls", short_help="List requests by owner, state, source or staleness.")
@click.option(
    "--owner",
    metavar="PERSON",
    help="Only requests owned by PERSON: a person id, or kind:handle for an unmapped identity.",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES),
    metavar="STATE",
    help=f"Only requests in STATE ({', '.join(STATES)}); repeat for several.",
)
@click.option(
    "--source",
    metavar="NAME",
    help="Only requests with a linked item in the source named NAME in the config.",
)
@click.option("--unowned", is_flag=True, help="Only requests that nobody owns.")
@click.option(
    "--stale",
    callback=duration_option_value,
    metavar="DURATION",
    help="Only requests with no activity for longer than DURATION (e.g. 3d, 12h, 90m).",
)
@json_option
@paths_option
@pass_env
def ls_command(
    env: Env,
    owner: str | None,
    states: tuple[str, ...],
    source: str | None,
    unowned: bool,
    stale: timedelta | None,
    as_json: bool,
) -> None:
    """List requests, filtered. Filters combine: a request must match all of them.

    Activity is the latest change seen at any linked item, or in the ledger itself (an
    operator handoff, say).

    \b
    Examples:
      syncd ls --unowned --state open
      syncd ls --owner alice --state in_progress --state blocked
      syncd ls --source api --stale 3d
      syncd ls --owner github:zed --json
    """
    if owner and unowned:
        raise click.UsageError("--owner and --unowned exclude each other")
    now = now_utc()
    with env.read_ledger() as ledger:
        rows = queries.list_requests(
            ledger,
            now=now,
            owner=owner,
            states=states,
            source=source,
            unowned=unowned,
            stale=stale,
        )
    if as_json:
        emit_json(rows)
    else:
        click.echo(render.requests_view(rows, now))


@click.command("show", short_help="One request: linked items, owed write-backs, timeline.")
@click.argument("request", callback=request_argument, metavar="REQ")
@json_option
@paths_option
@pass_env
def show_command(env: Env, request: str, as_json: bool) -> None:
    """Show one request: its fields, every linked item with any write-back still owed to it
    (pending, dead or skipped, with the reason), and its full timeline of events.

    REQ is a request id such as REQ-42 (or just 42).

    \b
    Examples:
      syncd show REQ-42
      syncd show 42 --json
    """
    with env.read_ledger() as ledger:
        detail = queries.request_detail(ledger, request)
    if as_json:
        emit_json(detail)
    else:
        click.echo(render.request_view(detail))


@click.command("history", short_help="The handoff log: owner changes and conflicts.")
@click.argument("request", callback=request_argument, metavar="[REQ]", required=False)
@click.option(
    "--since",
    callback=duration_option_value,
    metavar="DURATION",
    help="Only handoffs within the last DURATION (e.g. 24h, 7d).",
)
@json_option
@paths_option
@pass_env
def history_command(env: Env, request: str | None, since: timedelta | None, as_json: bool) -> None:
    """The handoff log: every owner change, and every conflict, oldest first.

    For each: when it happened (at the source when known), the request, the owner before and
    after, where it was made (a source name, or "operator" for `syncd assign`), who made it,
    and the note or the conflict's detail. Give REQ for one request only.

    \b
    Examples:
      syncd history --since 7d
      syncd history REQ-42
      syncd history --since 24h --json
    """
    now = now_utc()
    with env.read_ledger() as ledger:
        rows = queries.history(ledger, now=now, key=request, since=since)
    if as_json:
        emit_json(rows)
    else:
        click.echo(render.history_view(rows))


def _stale_after(config: Config | None) -> dict[str, timedelta]:
    """When a source counts as stale: the same allowance the daemon's watchdog gives a job
    (two intervals, plus jitter and the time a poll may take)."""
    if config is None:
        return {}
    d = config.daemon
    return {s.name: s.interval * 2 + d.jitter + d.hang_after for s in config.sources if s.enabled}


@click.command("status", short_help="Per-source health, lag, errors, write-backs, rate limits.")
@json_option
@paths_option
@pass_env
def status_command(env: Env, as_json: bool) -> None:
    """Per source: health, last successful poll and lag, last error, items seen, write-backs
    pending / dead / skipped, quarantined items, rate limit and retry time; then totals.

    Health is "failing" when the last poll failed, "never" before a first success, and
    "stale" when the last success is older than two poll intervals plus jitter and
    hang_after (this needs the config, so not with --ledger), else "ok".

    \b
    Examples:
      syncd status
      syncd status --json | jq '.sources[] | select(.health != "ok")'
    """
    config = env.read_config()
    with env.read_ledger(config) as ledger:
        st = queries.source_status(ledger, now=now_utc(), stale_after=_stale_after(config))
    if as_json:
        emit_json(st)
    else:
        click.echo(render.status_view(st))


@click.command("people", short_help="People, their handles per tool, unmapped identities.")
@json_option
@paths_option
@pass_env
def people_command(env: Env, as_json: bool) -> None:
    """People with their handles in each tool, and the identities seen in a tool that no
    [[people]] entry claims (add them to the config to map them to a person).

    \b
    Examples:
      syncd people
      syncd people --json | jq '.unmapped[].owner'
    """
    with env.read_ledger() as ledger:
        data = queries.people(ledger)
    if as_json:
        emit_json(data)
    else:
        click.echo(render.people_view(data))
