"""`syncd config`: work with the configuration file."""

from __future__ import annotations

import click

from syncd import render
from syncd.cli.options import Env, pass_env, paths_option


@click.group("config")
def config_group() -> None:
    """Work with the configuration file (see config/syncd.example.toml)."""


@config_group.command("check")
@paths_option
@pass_env
def config_check_command(env: Env) -> None:
    """Validate the config file without running anything.

    Checks every field and reads every secret (from its environment variable, file or
    systemd credential) without printing it. Prints "ok: ..." and exits 0, or prints every
    problem on its own line, naming the field, and exits 1.

    \b
    Examples:
      syncd config check
      SYNCD_CONFIG=./syncd.toml GITHUB_TOKEN=... syncd config check
    """
    config = env.config(resolve=True)
    enabled = sum(s.enabled for s in config.sources)
    disabled = len(config.sources) - enabled
    ledger = env.ledger_path(config)
    click.echo(
        f"ok: {render.plural(len(config.sources), 'source')}"
        + (f" ({disabled} disabled)" if disabled else "")
        + f", {render.plural(len(config.people), 'person', 'people')}, ledger {ledger}"
    )
