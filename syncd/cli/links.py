"""The operator's say on identity: `syncd link`, `unlink`, `split` and `relink --dry-run`.

Items become one request only when one of them declares it (README "How items are
linked"); these commands are how an operator links what text does not declare, and undoes a
link or a merge that should not be. Each is recorded with who did it and why.
"""

from __future__ import annotations

from typing import Any

import click

from syncd import render
from syncd.cli import complete
from syncd.cli.options import Env, emit_json, json_option, operator_name, pass_env, paths_option
from syncd.errors import NotFound
from syncd.ledger import Ledger, parse_request_key, request_key
from syncd.lookup import find_item, find_request

NOTE = click.option("--note", metavar="TEXT", help="Why; kept in the request's timeline.")
DRY_RUN = click.option(
    "--dry-run", is_flag=True, help="Show what would change, and change nothing."
)


def _is_request_id(text: str) -> bool:
    try:
        parse_request_key(text)
    except NotFound:
        return False
    return True


def _emit(outcome: dict[str, Any], actor: str, note: str | None, as_json: bool) -> None:
    if as_json:
        emit_json({**outcome, "actor": actor, "note": note})
    else:
        click.echo(render.identity_view(outcome, actor))


@click.command("link", short_help="Put an item (or a whole request) into a request.")
@click.argument("request", metavar="REQ", shell_complete=complete.requests)
@click.argument("item", metavar="ITEM")
@NOTE
@DRY_RUN
@json_option
@paths_option
@pass_env
def link_command(
    env: Env, request: str, item: str, note: str | None, dry_run: bool, as_json: bool
) -> None:
    """Link ITEM into REQ: they are one piece of work. The item stays there whatever its
    text says later. REQ's owner stands (the item's, if REQ has none) and is written back to
    the item's tool on the daemon's next cycle. An item that was a request on its own takes
    that request along (a merge: `syncd split` undoes it).

    REQ is a request id (REQ-42, 42) or a linked item's tool ref or URL. ITEM is a tool ref
    (OPS-7, acme/api#12), an issue, browse or card URL, the Message-ID of any message in a
    mail thread (the thread is the item), or another request's id (REQ-7), which then merges
    into REQ.

    \b
    Examples:
      syncd link REQ-42 OPS-7 --note "same outage"
      syncd link REQ-42 https://trello.com/c/AbCd1234 --dry-run
      syncd link REQ-42 '<card-payments-4711@globex.example>'
      syncd link REQ-42 REQ-57 --note "duplicate filed by support"
    """
    actor = operator_name()
    with Ledger(env.ledger_path(), create=False) as ledger:
        key = find_request(ledger, request)
        if _is_request_id(item):
            outcome = ledger.merge_requests(
                key, request_key(parse_request_key(item)), actor=actor, note=note, dry_run=dry_run
            )
        else:
            outcome = ledger.link_item(
                key, find_item(ledger, item), actor=actor, note=note, dry_run=dry_run
            )
    _emit(outcome, actor, note, as_json)


@click.command("unlink", short_help="Take an item out of its request; it becomes its own.")
@click.argument("item", metavar="ITEM")
@NOTE
@DRY_RUN
@json_option
@paths_option
@pass_env
def unlink_command(env: Env, item: str, note: str | None, dry_run: bool, as_json: bool) -> None:
    """Take ITEM out of its request. It becomes a request of its own, with the owner, state
    and title its tool shows; nothing is written to any tool. The unlink sticks: what its
    text declares now, and the items it leaves, no longer link it; a declaration naming a
    different item does.

    ITEM is a tool ref (OPS-7, acme/api#12), an issue, browse or card URL, or a mail's
    Message-ID.

    \b
    Examples:
      syncd unlink acme/api#12 --note "a different bug, same symptom"
      syncd unlink OPS-7 --dry-run
    """
    actor = operator_name()
    with Ledger(env.ledger_path(), create=False) as ledger:
        outcome = ledger.unlink_item(
            find_item(ledger, item), actor=actor, note=note, dry_run=dry_run
        )
    _emit(outcome, actor, note, as_json)


@click.command("split", short_help="Undo a merge of two requests.")
@click.argument("request", metavar="REQ", shell_complete=complete.requests)
@NOTE
@DRY_RUN
@json_option
@paths_option
@pass_env
def split_command(env: Env, request: str, note: str | None, dry_run: bool, as_json: bool) -> None:
    """Undo a merge: REQ, the request that was merged away, comes back with the items that
    came with it and its own timeline. Its owner is what its first item's tool shows, and
    nothing is written to any tool. Declarations between the two no longer link them.

    REQ may also be the request that took the other in, when it took in only one. `syncd
    show` lists merges in the timeline, each with the command that undoes it.

    \b
    Examples:
      syncd split REQ-57 --note "not the same outage after all"
      syncd split REQ-42 --dry-run
    """
    actor = operator_name()
    try:
        key = request_key(parse_request_key(request))
    except NotFound as exc:
        raise click.BadParameter(str(exc), param_hint="REQ") from None
    with Ledger(env.ledger_path(), create=False) as ledger:
        outcome = ledger.split(key, actor=actor, note=note, dry_run=dry_run)
    _emit(outcome, actor, note, as_json)


@click.command("relink", short_help="Re-match the whole ledger under the current rule.")
@click.option(
    "--dry-run",
    is_flag=True,
    required=True,
    help="Required: report only. Act on the findings with `syncd link` and `syncd unlink`.",
)
@json_option
@paths_option
@pass_env
def relink_command(env: Env, dry_run: bool, as_json: bool) -> None:
    """Re-match every item under the [matching] rule of the config, from what the ledger
    stored of each item's declarations, and report the difference: links the rule would not
    have made ("drop": nothing declared connects the item to its request; a ledger built
    under the old any-mention rule lists its mention links here), and declarations that meet
    an item in another request ("link"). Items an operator linked or unlinked keep that say.

    A ledger knows an item's declarations from the last time it read the item, so an item
    not changed since an upgrade shows none until it changes. With --ledger and no config,
    the rule is the default, declared.

    \b
    Examples:
      syncd relink --dry-run
      syncd relink --dry-run --json | jq '.[] | select(.action == "drop")'
    """
    config = env.read_config()
    link_on = config.matching.link_on if config is not None else "declared"
    with env.read_ledger(config) as ledger:
        findings = ledger.relink_report(link_on)
        rows = [
            {
                "action": f.action,
                "item": f.item,
                "request": request_key(f.request_id),
                "via": f.via,
                "reason": f.reason,
            }
            for f in findings
        ]
    if as_json:
        emit_json(rows)
    else:
        click.echo(render.relink_view(rows, link_on))
