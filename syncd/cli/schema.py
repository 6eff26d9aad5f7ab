"""`syncd schema`: the JSON Schema of each command's --json output."""

from __future__ import annotations

import click

from syncd import schemas
from syncd.cli.options import emit_json
from syncd.errors import NotFound


@click.command("schema", short_help="Print the JSON Schema of a command's --json output.")
@click.argument("command", required=False, nargs=-1, metavar="[COMMAND]")
def schema_command(command: tuple[str, ...]) -> None:
    """Print the JSON Schema of COMMAND's --json output, or list the commands that have one.

    Each schema carries `schema_version`: within a version keys may be added, never
    renamed or removed.

    \b
    Examples:
      syncd schema
      syncd schema ls
      syncd schema config check
    """
    if not command:
        click.echo(f"schema_version {schemas.SCHEMA_VERSION}:")
        for name in schemas.names():
            click.echo(f"  {name.replace('-', ' ')}")
        return
    name = "-".join(command)
    if name not in schemas.names():
        known = ", ".join(n.replace("-", " ") for n in schemas.names())
        raise NotFound(f"no schema for {' '.join(command)!r} (known: {known})")
    emit_json(schemas.load(name))
