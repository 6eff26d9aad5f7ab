"""`syncd web`: the board, served from a read-only view of the ledger."""

from __future__ import annotations

from datetime import timedelta

import click

from syncd.cli.options import DURATION_HELP, Env, duration_option_value, pass_env, paths_option
from syncd.config import listen_address
from syncd.health import stale_after

DEFAULT_LISTEN = "127.0.0.1:8080"


def exposure_warning(host: str) -> str | None:
    """What to tell an admin who serves the board beyond this machine: it has no login of
    its own, so anyone who can reach the port can read every request, owner and note."""
    from syncd.adapters.base import is_loopback

    if is_loopback(host):
        return None
    return (
        f"syncd web: warning: listening on {host}, beyond this machine, and the board has no "
        "login of its own; anyone who can reach it reads every request and note. Keep it on "
        'loopback behind a reverse proxy with authentication (README "The board").'
    )


def _listen_value(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    try:
        return listen_address(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@click.command("web", short_help="Serve the live board (read-only) in a browser.")
@click.option(
    "--listen",
    default=DEFAULT_LISTEN,
    show_default=True,
    metavar="HOST:PORT",
    callback=_listen_value,
    help="Where to listen. Keep it on loopback and put a reverse proxy with authentication "
    'in front to share it (README "The board").',
)
@click.option(
    "--stale",
    "stale",
    default="3d",
    show_default=True,
    metavar="DURATION",
    callback=duration_option_value,
    help=f"Open requests with no activity for this long are marked stale. {DURATION_HELP}",
)
@click.option(
    "--host-name",
    "host_names",
    multiple=True,
    metavar="NAME",
    help="Another Host name the board answers to (the reverse proxy's public name); "
    "repeat for several. Requests naming any other host are refused.",
)
@paths_option
@pass_env
def web_command(
    env: Env, listen: tuple[str, int], stale: timedelta, host_names: tuple[str, ...]
) -> None:
    """Serve the board: requests in a lane per owner (and an "unowned" lane), by state,
    handoffs awaiting acceptance and overdue, stale requests, a live handoff feed, a page per
    request, and source health. Filters (team, person, source, state) stay in the URL, so a
    view can be shared or put on a wall screen.

    The board only reads: it opens the ledger read-only and runs beside `syncd run`. It needs
    the ledger (--ledger, or the config's `ledger`); with a config it also knows teams and
    accept_within. It never needs a source's secrets.

    \b
    Examples:
      syncd web
      syncd web --listen 127.0.0.1:9000 --stale 5d
      syncd web --ledger /var/lib/syncd/ledger.db --host-name board.example.com
    """
    from syncd.acceptance import accept_within_for
    from syncd.ledger import Ledger
    from syncd.listener import bind, http_server  # late: only this command serves HTTP
    from syncd.web.app import Settings, create_app

    config = env.read_config()
    path = env.ledger_path(config)
    Ledger(path, readonly=True).close()  # fail now, with a clear error, if it is not a ledger
    host, port = listen
    settings = Settings(
        ledger=path,
        teams=config.teams if config else (),
        stale_after=stale,
        accept_within=(
            (lambda owner: accept_within_for(owner, config.teams, config.acceptance.accept_within))
            if config
            else None
        ),
        source_stale_after=stale_after(config),
        allowed_hosts=("127.0.0.1", "localhost", "[::1]", "::1", host, *host_names),
    )
    sock = bind(host, port)  # a port in use fails here: "syncd: error: cannot listen on ..."
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"syncd web: serving {path} at http://{shown}:{sock.getsockname()[1]}/", err=True)
    warning = exposure_warning(host)
    if warning is not None:
        click.echo(warning, err=True)
    server = http_server(create_app(settings))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on
        click.echo("syncd web: stopped", err=True)
