"""What every `syncd` command shares: the global options, parameter conversions, and how a
command gets its config and ledger."""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from syncd.config import Config, load_config
from syncd.durations import parse_duration
from syncd.errors import ConfigError, NotFound
from syncd.filemodes import open_append
from syncd.http import HttpOptions, TraceWriter
from syncd.ledger import Ledger, parse_request_key, request_key
from syncd.logs import configure

F = TypeVar("F", bound=Callable[..., Any])


# Conversions run as option callbacks rather than ParamType subclasses: ParamType became a
# generic class in click 8.2, and a callback reads the same under every click we support.


# For --help of every option that takes a duration.
DURATION_HELP = "DURATION is seconds, or parts such as 90s, 5m, 2h, 3d, 1w, 1h30m (units w d h m s, largest first)."


def duration_option_value(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def request_argument(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A request as operators name it: an id ("REQ-42", "req-42", "42") comes back as
    "REQ-42"; anything else (a tool ref such as OPS-7 or acme/api#1, an item's URL) comes
    back as typed, for the command to resolve with syncd.lookup.find_request once it has
    the ledger open."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise click.BadParameter("give a request id, a tool ref or a URL", ctx, param)
    try:
        return request_key(parse_request_key(value))
    except NotFound:
        return value


def json_option(f: F) -> F:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON instead of text; `syncd schema COMMAND` prints its JSON Schema.",
    )(f)


def trace_option(f: F) -> F:
    return click.option(
        "--trace-http",
        "trace_http",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE",
        help="Append every HTTP exchange to FILE as JSON lines, secrets redacted.",
    )(f)


def _path_override(attr: str) -> Callable[[click.Context, click.Parameter, Path | None], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
        if value is None:
            return
        # Also kept in ctx.meta (shared by the whole command line) for shell completion,
        # which parses the line without running the group, so there is no Env yet.
        ctx.meta[f"syncd.{attr}"] = value
        env = ctx.find_object(Env)
        if env is not None:
            setattr(env, attr, value)

    return callback


# ctx.meta key set by a command's own --debug (after the command name).
DEBUG_META = "syncd.debug"


def _debug_after_command(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value:
        return
    ctx.meta[DEBUG_META] = True
    env = ctx.find_object(Env)
    if env is not None:
        env.debug = True
    configure(debug=True)


def paths_option(f: F) -> F:
    """--config and --ledger after the command name too (`syncd ls --ledger X`), where
    operators and scripts tend to put them; they override the global ones."""
    for name, attr, what in (
        ("--ledger", "ledger_override", "The ledger file, as the global --ledger."),
        ("--config", "config_path", "The configuration file, as the global --config."),
    ):
        f = click.option(
            name,
            # Neither dir_okay=False nor readable: click would exit 2 for a directory or an
            # unreadable file, while these are errors the user can act on (exit 1, saying
            # what to do), like every other unusable config or ledger.
            type=click.Path(readable=False, path_type=Path),
            metavar="PATH",
            expose_value=False,
            is_eager=True,
            callback=_path_override(attr),
            help=what,
        )(f)
    return click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_debug_after_command,
        help="Debug logs, and tracebacks with errors, as the global --debug.",
    )(f)


@dataclass
class Env:
    """The global options, and how commands get a config and a ledger from them."""

    config_path: Path
    ledger_override: Path | None
    debug: bool

    def config(self, *, resolve: bool) -> Config:
        """The config file, validated; its secrets are read only when `resolve` is true."""
        return load_config(self.config_path, resolve=resolve)

    def read_config(self) -> Config | None:
        """The config for commands that only use the ledger: None when --ledger names it, so
        they need no config file; otherwise loaded without secrets, so they need no tokens."""
        return None if self.ledger_override is not None else self._config_for_ledger()

    def _config_for_ledger(self) -> Config:
        if not self.config_path.exists():
            hint = "set --config or $SYNCD_CONFIG, or name the ledger with --ledger"
            raise ConfigError(str(self.config_path), [f"file not found ({hint})"])
        return self.config(resolve=False)

    def ledger_path(self, config: Config | None = None) -> Path:
        """--ledger when given, else the ledger the config names."""
        if self.ledger_override is not None:
            return self.ledger_override
        return (config or self._config_for_ledger()).ledger

    def read_ledger(self, config: Config | None = None) -> Ledger:
        # Read-only, so operators without write access to the ledger can still query it.
        return Ledger(self.ledger_path(config), readonly=True)


pass_env = click.make_pass_decorator(Env)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def check_writable(path: Path) -> None:
    # Fail now, before any polling, if the trace cannot be written.
    os.close(open_append(path))


def http_options(trace_http: Path | None) -> HttpOptions:
    if trace_http is None:
        return HttpOptions()
    check_writable(trace_http)
    return HttpOptions(trace=TraceWriter(trace_http))


def operator_name() -> str:
    """Who is making an operator handoff: the person behind sudo, else the login name."""
    for var in ("SUDO_USER", "USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"
