"""The `syncd` command group: the daemon, one-off syncs, and the operator's view of the ledger.

This is the one place that turns errors into exit codes:

    0   success
    1   an error the user can act on (a SyncdError: bad config, missing ledger, unknown
        request or person, a source that failed during `sync --once`); one line per problem
        on stderr, as "syncd: error: ..."
    2   a usage error: unknown option, missing argument, malformed value (click's own)
    70  an unexpected internal error (EX_SOFTWARE); one line on stderr and a hint to rerun
        with --debug, which prints the traceback
    141 the reader of stdout went away (`| head`); nothing on stderr, as for tools that
        SIGPIPE ends

Command output goes to stdout; logs and errors go to stderr.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import click

from syncd import __version__
from syncd.cli import config as config_commands
from syncd.cli import handoff, links, quarantine, reads, routing, running, schema, web
from syncd.cli.options import DEBUG_META, Env
from syncd.config import DEFAULT_CONFIG_PATH
from syncd.errors import ConfigError, SyncdError
from syncd.logs import configure
from syncd.redact import redact
from syncd.safetext import safe_text

EXIT_ERROR = 1
EXIT_INTERNAL = 70
EXIT_PIPE = 128 + 13  # what a shell reports for a tool that SIGPIPE ended


def _fail(
    ctx: click.Context, lines: list[str], code: int, exc: BaseException, debug: bool
) -> NoReturn:
    if debug:
        click.echo(redact("".join(traceback.format_exception(exc)).rstrip()), err=True)
    for line in lines:
        # Messages are built without secrets; redacting again costs nothing and guards
        # against one that slipped in through a third-party exception's text.
        # Errors may quote a source or a file; one line each, no terminal control.
        click.echo(f"syncd: error: {safe_text(redact(line))}", err=True)
    ctx.exit(code)


def _debug(ctx: click.Context) -> bool:
    """--debug before the command, or after it (syncd.cli.options.paths_option)."""
    return bool(ctx.params.get("debug") or ctx.meta.get(DEBUG_META))


class SyncdGroup(click.Group):
    """Turns the exceptions of every subcommand into the exit codes documented above."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # a closed pipe shows here, not in Python's exit
            return result
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:
            # The reader went away (`syncd history | head`): stop quietly, as a tool that
            # SIGPIPE ends does, and keep Python's own last flush from failing again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(EXIT_PIPE)
        except ConfigError as exc:
            _fail(ctx, str(exc).splitlines(), EXIT_ERROR, exc, _debug(ctx))
        except SyncdError as exc:
            _fail(ctx, [" ".join(str(exc).split())], EXIT_ERROR, exc, _debug(ctx))
        except OSError as exc:
            # Files and directories named on the command line; the user can fix these.
            where = f": {exc.filename}" if exc.filename else ""
            _fail(ctx, [f"{exc.strerror or exc}{where}"], EXIT_ERROR, exc, _debug(ctx))
        except Exception as exc:
            debug = _debug(ctx)
            hint = "" if debug else " (rerun with --debug for the traceback)"
            _fail(
                ctx,
                [f"internal error: {type(exc).__name__}: {exc}{hint}"],
                EXIT_INTERNAL,
                exc,
                debug,
            )


MAIN_HELP = """\
syncd keeps one ledger of who owns each request across a shared mailbox, Jira, GitHub
Issues and Trello, and writes ownership changes back to every tool that holds the request.

Read commands (ls, show, history, status, people, quarantine) need only the ledger: give
--ledger, or let them read the ledger path from the config file (no secrets are needed to
read). Every read command takes --json. Times are UTC.

\b
Examples:
  syncd ls --unowned
  syncd ls --owner alice --state in_progress
  syncd ls --stale 3d --json
  syncd ls --owner me
  syncd show REQ-42
  syncd show OPS-7
  syncd assign REQ-42 bob --note "covering while Alice is out"
  syncd assign REQ-42 --unassign
  syncd history --since 7d
  syncd status
  syncd people
  syncd config example --type jira
  syncd config check --config /etc/syncd/syncd.toml
  syncd sync --once --source api
  syncd run
  syncd reload

A request is named by its id (REQ-42), a linked item's tool ref (OPS-7, acme/api#1) or its
URL; a person by id in any case, any of their handles, or `me` (your `unix` handle). Shell
completion: eval "$(_SYNCD_COMPLETE=bash_source syncd)" (or zsh_source, fish_source).

Exit status: 0 ok, 1 an error you can act on (one "syncd: error:" line per problem),
2 usage error, 70 internal error (rerun with --debug for the traceback).
"""


@click.group(
    "syncd",
    cls=SyncdGroup,
    help=MAIN_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "config_path",
    # A directory or an unreadable file is reported by load_config (exit 1, with what to
    # do), like any other unusable config; click would exit 2 with its own wording.
    type=click.Path(readable=False, path_type=Path),
    envvar="SYNCD_CONFIG",
    default=DEFAULT_CONFIG_PATH,
    show_default=True,
    show_envvar=True,
    metavar="PATH",
    help="The configuration file.",
)
@click.option(
    "--ledger",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="The ledger file; overrides the config's `ledger`. Read commands then need no config.",
)
@click.option("--debug", is_flag=True, help="Debug logs, and tracebacks with errors.")
@click.version_option(__version__, "--version", prog_name="syncd")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, ledger: Path | None, debug: bool) -> None:
    configure(debug=debug)
    ctx.obj = Env(config_path=config_path, ledger_override=ledger, debug=debug)


# Each area's commands live in their own module; registering them here keeps one list.
for command in (
    reads.ls_command,
    reads.show_command,
    reads.history_command,
    reads.status_command,
    reads.people_command,
    quarantine.quarantine_command,
    handoff.assign_command,
    links.link_command,
    links.unlink_command,
    links.split_command,
    links.relink_command,
    running.sync_command,
    running.run_command,
    running.reload_command,
    schema.schema_command,
    running.demo_command,
    config_commands.config_group,
    *routing.COMMANDS,
    web.web_command,
):
    cli.add_command(command)


def main() -> None:
    cli.main(prog_name="syncd")
