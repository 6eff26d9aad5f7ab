"""`syncd config`: work with the configuration file."""

from __future__ import annotations

from importlib import resources

import click

from syncd import render
from syncd.cli.options import Env, emit_json, json_option, pass_env, paths_option
from syncd.errors import ConfigError
from syncd.filemodes import loose_files

# Annotated examples, one per tool type, shipped in the package (config/ in the source
# tree) so that `pip install` and pipx users have them too.
EXAMPLES = {
    "github": "syncd.example.toml",
    "jira": "jira.example.toml",
    "trello": "trello.example.toml",
    "email": "email.example.toml",
}


@click.group("config")
def config_group() -> None:
    """Work with the configuration file: print an annotated example, check one."""


@config_group.command("example")
@click.option(
    "--type",
    "kind",
    type=click.Choice(sorted(EXAMPLES), case_sensitive=False),
    default="github",
    show_default=True,
    help="The tool the example's source is in.",
)
def config_example_command(kind: str) -> None:
    """Print an annotated example config for one tool type, to start from.

    Every field is explained in a comment. Each example is a complete config: after you
    give it its secrets, `syncd config check` passes on it as it is.

    \b
    Examples:
      syncd config example > syncd.toml
      syncd config example --type jira
      syncd config example --type email | sudo tee /etc/syncd/syncd.toml
    """
    text = (resources.files("syncd.examples") / EXAMPLES[kind.lower()]).read_text("utf-8")
    click.echo(text, nl=False)


@config_group.command("check")
@json_option
@paths_option
@pass_env
def config_check_command(env: Env, as_json: bool) -> None:
    """Validate the config file without running anything.

    Checks every field and reads every secret (from its environment variable, file or
    systemd credential) without printing it. Prints "ok: ..." and exits 0, or prints every
    problem on its own line, naming the field, and exits 1. With --json, prints one object
    either way (its `problems` list is empty when the config is valid).

    \b
    Examples:
      syncd config check
      SYNCD_CONFIG=./syncd.toml GITHUB_TOKEN=... syncd config check
      syncd config check --json | jq -r '.problems[]'
    """
    try:
        config = env.config(resolve=True)
    except ConfigError as exc:
        if not as_json:
            raise
        emit_json(
            {
                "ok": False,
                "config": str(env.config_path),
                "problems": exc.problems,
                "sources": None,
                "disabled": None,
                "people": None,
                "ledger": None,
            }
        )
        raise click.exceptions.Exit(1) from None
    enabled = sum(s.enabled for s in config.sources)
    disabled = len(config.sources) - enabled
    ledger = env.ledger_path(config)
    # As ssh: a config others can write, or a secret others can read, passes with a warning.
    warnings = loose_files(env.config_path, config)
    if as_json:
        emit_json(
            {
                "ok": True,
                "config": str(env.config_path),
                "problems": [],
                "warnings": warnings,
                "sources": len(config.sources),
                "disabled": disabled,
                "people": len(config.people),
                "ledger": str(ledger),
            }
        )
        return
    for warning in warnings:
        click.echo(f"syncd: warning: {warning}", err=True)
    click.echo(
        f"ok: {render.plural(len(config.sources), 'source')}"
        + (f" ({disabled} disabled)" if disabled else "")
        + f", {render.plural(len(config.people), 'person', 'people')}, ledger {ledger}"
    )
