"""The operator's handoff: `syncd assign`."""

from __future__ import annotations

import click

from syncd import queries, render
from syncd.cli.options import Env, operator_name, pass_env, paths_option, request_argument
from syncd.errors import NotFound
from syncd.ledger import Ledger


@click.command("assign", short_help="Hand a request to someone; it is written back everywhere.")
@click.argument("request", callback=request_argument, metavar="REQ")
@click.argument("person", required=False, metavar="[PERSON]")
@click.option("--unassign", is_flag=True, help="Leave the request with no owner (give no PERSON).")
@click.option("--note", metavar="TEXT", help="Why; kept in the timeline and sent with the handoff.")
@paths_option
@pass_env
def assign_command(
    env: Env, request: str, person: str | None, unassign: bool, note: str | None
) -> None:
    """Hand REQ to PERSON, and queue the change for every tool that holds the request.

    PERSON is a person id from the config (see `syncd people`), or kind:handle for an
    identity the ledger has seen but nobody claims (e.g. github:zed). Use --unassign instead
    of PERSON to leave the request unowned. The handoff is recorded with you as the actor
    ($SUDO_USER, else $USER, else your login name); the daemon writes it back on its next
    cycle.

    \b
    Examples:
      syncd assign REQ-42 bob --note "covering while Alice is out"
      syncd assign REQ-42 github:zed
      syncd assign REQ-42 --unassign --note "back to the queue"
    """
    if unassign and person:
        raise click.UsageError("give PERSON or --unassign, not both")
    if not unassign and not person:
        raise click.UsageError("missing PERSON (or --unassign to leave the request unowned)")
    owner = None
    if person is not None:
        # Person ids are lower-case in config; a handle keeps the case the tool uses.
        owner = person if ":" in person else person.lower()
    actor = operator_name()
    # Writable: the handoff is a write. Like the read commands it needs no secrets.
    with Ledger(env.ledger_path()) as ledger:
        before = queries.request_fields(ledger, request)["owner"]
        if owner is not None and not queries.owner_known(ledger, owner):
            raise NotFound(
                f"no person {owner!r} in the ledger (people come from [[people]] in the config "
                "once the daemon has run; see `syncd people`)"
            )
        if owner == before:
            state = f"owned by {owner}" if owner else "unowned"
            click.echo(f"{request} is already {state}; nothing to do")
            return
        ledger.assign(request, owner, actor=actor, note=note)
        after = queries.owed_writes(ledger, request)
    click.echo(render.assign_view(before, after, actor))
