"""Routing and follow-through at the command line: `away`, `back`, `accept`, `route`, and the
team and acceptance filters that `ls`, `people` and `status` take (README "Routing and
follow-through")."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from syncd import dispatch, queries, render
from syncd import routing_ledger as store
from syncd.cli import complete
from syncd.cli.options import (
    DURATION_HELP,
    Env,
    emit_json,
    json_option,
    operator_name,
    pass_env,
    paths_option,
    request_argument,
)
from syncd.config import Config
from syncd.durations import parse_duration
from syncd.errors import ConfigError, NotFound, SyncdError
from syncd.ledger import Ledger, iso, now_utc
from syncd.lookup import find_owner, find_request
from syncd.routing import Absence, Assignment

F = TypeVar("F", bound=Callable[..., Any])

# `--unaccepted` given without a DURATION: the handoffs the daemon found overdue.
_OVERDUE = "overdue"


def _when(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """A time as operators type it: a duration from now (3d, 12h), a date (2026-03-10, the
    start of that day, UTC) or a date and time (2026-03-10T09:00, UTC unless it says)."""
    if value is None:
        return None
    try:
        return now_utc() + parse_duration(value)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: give a duration from now (3d, 12h) or a date such as 2026-03-10 "
            "or 2026-03-10T17:00",
            ctx,
            param,
        ) from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _person(ledger: Ledger, text: str) -> str:
    """A person named as everywhere else (id in any case, a handle, `me`); an identity no
    person claims is refused, since only people can be away or cover."""
    return find_owner(ledger, text, login=operator_name())


# -- options the read commands take ----------------------------------------------------------


def team_option(f: F) -> F:
    return click.option(
        "--team",
        metavar="ID",
        shell_complete=complete.teams,
        help="Only the members of the team ID from [[teams]] in the config.",
    )(f)


def unaccepted_option(f: F) -> F:
    return click.option(
        "--unaccepted",
        is_flag=False,
        flag_value=_OVERDUE,
        default=None,
        metavar="[DURATION]",
        help="Only requests whose last handoff nobody has accepted: overdue ones (past "
        "accept_within), or with DURATION those waiting longer than that. " + DURATION_HELP,
    )(f)


def team_members(config: Config | None, team: str) -> list[str]:
    if config is None:
        raise ConfigError("--team", ["teams come from the config; give --config, not --ledger"])
    try:
        return list(config.team(team.strip().lower()).members)
    except KeyError:
        known = ", ".join(t.id for t in config.teams) or "none"
        raise NotFound(f"no team {team!r} in the config (known: {known})") from None


def narrow_requests(
    ledger: Ledger,
    rows: list[dict[str, Any]],
    config: Config | None,
    *,
    team: str | None,
    unaccepted: str | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """`ls` rows narrowed by --team and --unaccepted; the latter adds each row's handoff."""
    if team is not None:
        members = set(team_members(config, team))
        rows = [r for r in rows if r["owner"] in members]
    if unaccepted is not None:
        older = None
        if unaccepted != _OVERDUE:
            try:
                older = iso(now - parse_duration(unaccepted))
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--unaccepted") from None
        waiting = store.unaccepted(ledger.conn, older_than=older)
        rows = [{**r, "handoff": waiting[r["key"]]} for r in rows if r["key"] in waiting]
    return rows


def narrow_people(
    ledger: Ledger, data: dict[str, Any], config: Config | None, team: str | None
) -> dict[str, Any]:
    """`people` data with each person's absence, narrowed by --team."""
    away = {a["person"]: a for a in store.absence_rows(ledger.conn)}
    for p in data["people"]:
        p["away"] = away.get(p["id"])
    if team is not None:
        members = set(team_members(config, team))
        data = {**data, "people": [p for p in data["people"] if p["id"] in members]}
    return data


def absences_view(rows: list[dict[str, Any]], now: datetime) -> str:
    if not rows:
        return ""
    lines = ["Away:"]
    for a in rows:
        started = (a["since"] or "") <= (iso(now) or "")
        text = (
            f"  {a['person']} {'until' if started else 'from ' + render.when(a['since']) + ' to'}"
        )
        text += f" {render.when(a['until'])}"
        if a["delegate"]:
            text += f", delegate {a['delegate']}"
            if a["move_open"]:
                text += " (open requests too)"
        if a["note"]:
            text += f": {render.clip(a['note'], 80)}"
        lines.append(text)
    return render.shown("\n".join(lines))


def status_extras(ledger: Ledger) -> dict[str, Any]:
    """What `status` adds: handoffs awaiting acceptance and overdue, and who is away."""
    return {**store.follow_through_counts(ledger.conn), "away": store.absence_rows(ledger.conn)}


def status_extras_view(extra: dict[str, Any], now: datetime) -> str | None:
    """The lines `status` adds; None while no handoff awaits and nobody is away."""
    if not (extra["awaiting_acceptance"] or extra["away"]):
        return None
    line = (
        f"Handoffs: {extra['awaiting_acceptance']} awaiting acceptance, "
        f"{extra['overdue_handoffs']} overdue"
    )
    if extra["overdue_handoffs"]:
        line += " (syncd ls --unaccepted)"
    away = absences_view(extra["away"], now)
    return line + ("\n" + away if away else "")


def away_note(ledger: Ledger, person: str) -> str | None:
    """What an operator handing work to someone away should know."""
    a = store.absences(ledger.conn).get(person)
    now = now_utc()
    if a is None or not a.active(now):
        return None
    text = f"note: {person} is away until {render.when(iso(a.until))}"
    if a.delegate:
        return text + f"; the daemon hands it to {a.delegate} (their delegate) on its next cycle"
    return text + " (no delegate; routing skips them)"


# -- commands --------------------------------------------------------------------------------


@click.command("away", short_help="Record that someone is away; routing skips them.")
@click.argument("person", metavar="PERSON", shell_complete=complete.owners)
@click.option(
    "--until",
    "until",
    required=True,
    callback=_when,
    metavar="WHEN",
    help="When they are back: a duration from now (3d, 12h), a date (2026-03-10, UTC) or "
    "a date and time (2026-03-10T09:00).",
)
@click.option(
    "--delegate",
    metavar="PERSON",
    shell_complete=complete.owners,
    help="Who receives the handoffs meant for them meanwhile (recorded as delegated).",
)
@click.option(
    "--move-open",
    is_flag=True,
    help="Also hand their open requests to the delegate (needs --delegate).",
)
@click.option("--note", metavar="TEXT", help="Why, or where they are; shown in `people`.")
@paths_option
@pass_env
def away_command(
    env: Env,
    person: str,
    until: datetime,
    delegate: str | None,
    move_open: bool,
    note: str | None,
) -> None:
    """Record that PERSON is away until WHEN. While away, routing never gives them work;
    with --delegate, handoffs made to them (in any tool, by an operator or by a rule) go to
    the delegate instead, and with --move-open so do the open requests they own. The daemon
    makes those moves on its next cycle, and writes them back like any handoff.

    The absence is kept in the ledger (operator state, not config: a reload keeps it) and
    ends by itself at WHEN, or with `syncd back`. Recording it again replaces it.

    \b
    Examples:
      syncd away alice --until 2026-03-10 --delegate bob --note "conference"
      syncd away alice --until 3d
      syncd away alice --until 2026-03-10T09:00 --delegate bob --move-open
    """
    if move_open and delegate is None:
        raise click.UsageError("--move-open needs --delegate (who should take them)")
    now = now_utc()
    if until <= now:
        raise click.BadParameter(
            f"{render.when(iso(until))} is not in the future", param_hint="--until"
        )
    with Ledger(env.ledger_path(), create=False) as ledger:
        who = _person(ledger, person)
        to = _person(ledger, delegate) if delegate is not None else None
        if to == who:
            raise click.UsageError("a person cannot be their own delegate")
        absence = Absence(who, now, until, to, move_open, note)
        store.set_absence(ledger, absence, operator_name(), now)
    text = f"{who} is away until {render.when(iso(until))}"
    if to:
        text += f"; handoffs to {who} go to {to}" + (", open requests too" if move_open else "")
    click.echo(text)


@click.command("back", short_help="End someone's absence now.")
@click.argument("person", metavar="PERSON", shell_complete=complete.owners)
@paths_option
@pass_env
def back_command(env: Env, person: str) -> None:
    """End PERSON's absence now: routing may give them work again, and nothing more goes to
    their delegate. Requests already moved stay where they are.

    \b
    Examples:
      syncd back alice
    """
    with Ledger(env.ledger_path(), create=False) as ledger:
        who = _person(ledger, person)
        ended = store.clear_absence(ledger, who, operator_name(), now_utc())
    click.echo(f"{who} is back" if ended else f"{who} was not away; nothing to do")


@click.command("accept", short_help="Accept a handoff on the new owner's behalf.")
@click.argument(
    "request", callback=request_argument, metavar="REQ", shell_complete=complete.requests
)
@click.option("--note", metavar="TEXT", help="Why; kept in the timeline.")
@paths_option
@pass_env
def accept_command(env: Env, request: str, note: str | None) -> None:
    """Mark the handoff awaiting acceptance on REQ as accepted, for its new owner (who said
    so another way: a call, a chat). It is recorded as an `accepted` event with you as the
    actor, and leaves `ls --unaccepted`.

    \b
    Examples:
      syncd accept REQ-42
      syncd accept REQ-42 --note "bob confirmed on the phone"
    """
    with Ledger(env.ledger_path(), create=False) as ledger:
        request = find_request(ledger, request)
        queries.request_fields(ledger, request)  # "no request REQ-9", not "no handoff"
        handoff = store.accept(ledger, request, operator_name(), note, now_utc())
    if handoff is None:
        raise SyncdError(f"{request} has no handoff awaiting acceptance")
    click.echo(f"{request}: the handoff to {handoff.owner} is accepted")


def _assignment_json(a: Assignment, kind: str, titles: dict[int, str]) -> dict[str, Any]:
    return {
        "request": a.key,
        "title": titles.get(a.request_id, ""),
        "action": kind,
        "from_owner": a.previous_owner,
        "to_owner": a.owner,
        "rule": a.why if kind == "route" else None,
        "why": a.why,
        "meant_for": a.meant_for,
    }


@click.command("route", short_help="Show what the routing rules would do now (--dry-run).")
@click.option("--dry-run", is_flag=True, help="Only show it; change nothing (required).")
@json_option
@paths_option
@pass_env
def route_command(env: Env, dry_run: bool, as_json: bool) -> None:
    """Show what routing would do if it ran now: each unowned request a [[routing]] rule
    would hand over, to whom and by which rule, and each request that would move to an
    away person's delegate. Nothing is changed: the daemon routes after each poll.

    Rules that would route nothing because nobody is available are listed too, as are the
    requests left for a later cycle by max_per_cycle.

    \b
    Examples:
      syncd route --dry-run
      syncd route --dry-run --json | jq '.[] | select(.rule == "billing")'
    """
    if not dry_run:
        raise click.UsageError(
            "routing runs in the daemon after each poll; `syncd route --dry-run` shows what "
            "it would do now"
        )
    config = env.config(resolve=False)
    with env.read_ledger(config) as ledger:
        seen = dispatch.preview(ledger, config, now_utc())
        ids = [a.request_id for a in seen.routed + seen.covered]
        titles = {c.request_id: c.title for c in store.candidates(ledger.conn, only=ids)}
    rows = [_assignment_json(a, "cover", titles) for a in seen.covered] + [
        _assignment_json(a, "route", titles) for a in seen.routed
    ]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("routing would change nothing now")
    else:
        click.echo(
            render.table(
                ["REQUEST", "TO", "BY", "TITLE"],
                [
                    (
                        r["request"],
                        r["to_owner"] + (f" (for {r['meant_for']})" if r["meant_for"] else ""),
                        f"rule {r['rule']}" if r["rule"] else r["why"],
                        render.clip(r["title"], render.TITLE_WIDTH),
                    )
                    for r in rows
                ],
            )
        )
    for note in seen.notes:
        click.echo(render.shown(note))
    if seen.left:
        click.echo(f"{seen.left} more left for later cycles (routing_options.max_per_cycle)")


COMMANDS = (away_command, back_command, accept_command, route_command)

__all__ = ["COMMANDS", "narrow_people", "narrow_requests", "team_option", "unaccepted_option"]
