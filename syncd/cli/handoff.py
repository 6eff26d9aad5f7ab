"""The operator's handoff: `syncd assign`."""

from __future__ import annotations

from typing import Any

import click

from syncd import queries, render
from syncd.cli import complete, routing
from syncd.cli.options import (
    Env,
    emit_json,
    json_option,
    operator_name,
    pass_env,
    paths_option,
    request_argument,
)
from syncd.ledger import Ledger
from syncd.lookup import find_owner, find_request


@click.command("assign", short_help="Hand a request to someone; it is written back everywhere.")
@click.argument(
    "request", callback=request_argument, metavar="REQ", shell_complete=complete.requests
)
@click.argument("person", required=False, metavar="[PERSON]", shell_complete=complete.owners)
@click.option("--unassign", is_flag=True, help="Leave the request with no owner (give no PERSON).")
@click.option(
    "--unmapped",
    is_flag=True,
    help="Allow a kind:handle that no person claims (e.g. github:zed) as the new owner.",
)
@click.option("--note", metavar="TEXT", help="Why; kept in the timeline and sent with the handoff.")
@json_option
@paths_option
@pass_env
def assign_command(
    env: Env,
    request: str,
    person: str | None,
    unassign: bool,
    unmapped: bool,
    note: str | None,
    as_json: bool,
) -> None:
    """Hand REQ to PERSON, and queue the change for every tool that holds the request.

    REQ is a request id (REQ-42, 42), a linked item's tool ref (OPS-7, acme/api#1) or its
    URL. PERSON is a person id from the config in any case (see `syncd people`), any handle
    configured for them (github:bob-ok, or bob-ok alone when only one person has it), or
    `me`: the person whose `unix` handle is your login. A kind:handle that no person claims
    is refused unless --unmapped is given. Use --unassign instead of PERSON to leave the
    request unowned. The handoff is recorded with you as the actor ($SUDO_USER, else $USER,
    else your login name); the daemon writes it back on its next cycle.

    \b
    Examples:
      syncd assign REQ-42 bob --note "covering while Alice is out"
      syncd assign OPS-7 me
      syncd assign acme/api#1 github:bob-ok
      syncd assign REQ-42 github:zed --unmapped
      syncd assign REQ-42 --unassign --note "back to the queue"
      syncd assign REQ-42 carol --json
    """
    if unassign and person:
        raise click.UsageError("give PERSON or --unassign, not both")
    if not unassign and not person:
        raise click.UsageError("missing PERSON (or --unassign to leave the request unowned)")
    actor = operator_name()
    # Writable: the handoff is a write. Like the read commands it needs no secrets.
    with Ledger(env.ledger_path(), create=False) as ledger:
        key = find_request(ledger, request)
        before = queries.request_fields(ledger, key)["owner"]
        owner = None
        if person is not None:
            owner = find_owner(ledger, person, login=actor, unmapped=unmapped)
        changed = owner != before
        if changed:
            ledger.assign(key, owner, actor=actor, note=note)
        after = queries.owed_writes(ledger, key)
        away = routing.away_note(ledger, owner) if changed and owner else None
    if as_json:
        emit_json(_assign_json(before, after, actor, note, changed))
    elif not changed:
        state = f"owned by {owner}" if owner else "unowned"
        click.echo(f"{key} is already {state}; nothing to do")
    else:
        click.echo(render.assign_view(before, after, actor))
        if away:
            click.echo(away)


def _assign_json(
    before: str | None, after: dict[str, Any], actor: str, note: str | None, changed: bool
) -> dict[str, Any]:
    return {
        "key": after["key"],
        "changed": changed,
        "from_owner": before,
        "owner": after["owner"],
        "owner_name": after["owner_name"],
        "actor": actor,
        "note": note if changed else None,
        "links": [
            {
                "source": link["source"],
                "kind": link["kind"],
                "ref": link["ref"],
                "owner_handles": link["owner_handles"],
                "writeback": link["writeback"],
            }
            for link in after["links"]
        ],
    }
