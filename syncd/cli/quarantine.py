"""`syncd quarantine`: the items syncd could not read, with the reason, per source."""

from __future__ import annotations

import click

from syncd import queries, render
from syncd.cli.options import Env, emit_json, json_option, pass_env, paths_option
from syncd.cli.reads import known_source
from syncd.ledger import now_utc


@click.command("quarantine", short_help="Items syncd could not read, and why.")
@click.option("--source", metavar="NAME", help="Only this source's items.")
@click.option(
    "--all",
    "include_released",
    is_flag=True,
    help="Also items that have left quarantine (they read cleanly again).",
)
@json_option
@paths_option
@pass_env
def quarantine_command(env: Env, source: str | None, include_released: bool, as_json: bool) -> None:
    """List the items a source sent that syncd could not read: a missing or mistyped owner,
    state or title, an unknown member, bad encoding... Such an item changes nothing in the
    ledger or in any tool until it reads cleanly again, which releases it (a `released`
    event in its request's timeline). Fix the item in its tool, or the config it needs.

    Columns: SOURCE, REF (the item in its tool), FIRST SEEN, LAST SEEN (the latest poll
    that read it badly), TIMES (polls that did), URL (when syncd read it cleanly before),
    REASON. A source nobody knows is an error, as in `syncd ls`.

    \b
    Examples:
      syncd quarantine
      syncd quarantine --source ops --json
      syncd quarantine --all
    """
    config = env.read_config()
    with env.read_ledger(config) as ledger:
        if source is not None:
            source = known_source(ledger, config, source)
        rows = queries.quarantine(ledger, source=source, released=include_released)
    if as_json:
        emit_json(rows)
    else:
        click.echo(render.quarantine_view(rows, now_utc()))
