"""The `syncd` command: the daemon, one-off syncs, and the operator's view of the ledger.

This is the one place that turns errors into exit codes:

    0   success
    1   an error the user can act on (a SyncdError: bad config, missing ledger, unknown
        request or person, a source that failed during `sync --once`); one line per problem
        on stderr, as "syncd: error: ..."
    2   a usage error: unknown option, missing argument, malformed value (click's own)
    70  an unexpected internal error (EX_SOFTWARE); one line on stderr and a hint to rerun
        with --debug, which prints the traceback

Command output goes to stdout; logs and errors go to stderr.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from syncd import __version__, queries, render
from syncd.config import DEFAULT_CONFIG_PATH, Config, load_config
from syncd.durations import parse_duration
from syncd.errors import ConfigError, NotFound, SyncdError
from syncd.http import HttpOptions, TraceWriter
from syncd.ledger import Ledger, now_utc, parse_request_key, request_key
from syncd.logs import configure
from syncd.models import STATES
from syncd.redact import redact

EXIT_ERROR = 1
EXIT_INTERNAL = 70

F = TypeVar("F", bound=Callable[..., Any])


# -- parameter types -----------------------------------------------------------------------


# Conversions run as option callbacks rather than ParamType subclasses: ParamType became a
# generic class in click 8.2, and a callback reads the same under every click we support.


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _request(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A request id as operators type it ("REQ-42", "req-42" or "42"), as "REQ-42"."""
    if value is None:
        return None
    try:
        return request_key(parse_request_key(value))
    except NotFound as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def json_option(f: F) -> F:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON instead of a table (shape documented in syncd.queries; stable for scripts).",
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
        if value is not None:
            setattr(ctx.find_object(Env), attr, value)

    return callback


def paths_option(f: F) -> F:
    """--config and --ledger after the command name too (`syncd ls --ledger X`), where
    operators and scripts tend to put them; they override the global ones."""
    for name, attr, what in (
        ("--ledger", "ledger_override", "The ledger file, as the global --ledger."),
        ("--config", "config_path", "The configuration file, as the global --config."),
    ):
        f = click.option(
            name,
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="PATH",
            expose_value=False,
            is_eager=True,
            callback=_path_override(attr),
            help=what,
        )(f)
    return f


# -- shared state and error handling ---------------------------------------------------------


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


def _fail(
    ctx: click.Context, lines: list[str], code: int, exc: BaseException, debug: bool
) -> NoReturn:
    if debug:
        click.echo(redact("".join(traceback.format_exception(exc)).rstrip()), err=True)
    for line in lines:
        # Messages are built without secrets; redacting again costs nothing and guards
        # against one that slipped in through a third-party exception's text.
        click.echo(f"syncd: error: {redact(line)}", err=True)
    ctx.exit(code)


class SyncdGroup(click.Group):
    """Turns the exceptions of every subcommand into the exit codes documented above."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except ConfigError as exc:
            _fail(ctx, str(exc).splitlines(), EXIT_ERROR, exc, debug)
        except SyncdError as exc:
            _fail(ctx, [" ".join(str(exc).split())], EXIT_ERROR, exc, debug)
        except OSError as exc:
            # Files and directories named on the command line; the user can fix these.
            where = f": {exc.filename}" if exc.filename else ""
            _fail(ctx, [f"{exc.strerror or exc}{where}"], EXIT_ERROR, exc, debug)
        except Exception as exc:
            hint = "" if debug else " (rerun with --debug for the traceback)"
            _fail(
                ctx,
                [f"internal error: {type(exc).__name__}: {exc}{hint}"],
                EXIT_INTERNAL,
                exc,
                debug,
            )


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _check_writable(path: Path) -> None:
    # Fail now, before any polling, if the trace cannot be written.
    with path.open("a", encoding="utf-8"):
        pass


def _http(trace_http: Path | None) -> HttpOptions:
    if trace_http is None:
        return HttpOptions()
    _check_writable(trace_http)
    return HttpOptions(trace=TraceWriter(trace_http))


def _actor() -> str:
    """Who is making an operator handoff: the person behind sudo, else the login name."""
    for var in ("SUDO_USER", "USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


# -- the command group ---------------------------------------------------------------------

MAIN_HELP = """\
syncd keeps one ledger of who owns each request across a shared mailbox, Jira, GitHub
Issues and Trello, and writes ownership changes back to every tool that holds the request.

Read commands (ls, show, history, status, people) need only the ledger: give --ledger, or
let them read the ledger path from the config file (no secrets are needed to read). Every
read command takes --json. Times are UTC.

\b
Examples:
  syncd ls --unowned
  syncd ls --owner alice --state in_progress
  syncd ls --stale 3d --json
  syncd show REQ-42
  syncd assign REQ-42 bob --note "covering while Alice is out"
  syncd assign REQ-42 --unassign
  syncd history --since 7d
  syncd status
  syncd people
  syncd config check --config /etc/syncd/syncd.toml
  syncd sync --once --source api
  syncd run

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
    type=click.Path(dir_okay=False, path_type=Path),
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


pass_env = click.make_pass_decorator(Env)


# -- read commands -------------------------------------------------------------------------


@cli.command("ls", short_help="List requests by owner, state, source or staleness.")
@click.option(
    "--owner",
    metavar="PERSON",
    help="Only requests owned by PERSON: a person id, or kind:handle for an unmapped identity.",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES),
    metavar="STATE",
    help=f"Only requests in STATE ({', '.join(STATES)}); repeat for several.",
)
@click.option(
    "--source",
    metavar="NAME",
    help="Only requests with a linked item in the source named NAME in the config.",
)
@click.option("--unowned", is_flag=True, help="Only requests that nobody owns.")
@click.option(
    "--stale",
    callback=_duration,
    metavar="DURATION",
    help="Only requests with no activity for longer than DURATION (e.g. 3d, 12h, 90m).",
)
@json_option
@paths_option
@pass_env
def ls_command(
    env: Env,
    owner: str | None,
    states: tuple[str, ...],
    source: str | None,
    unowned: bool,
    stale: timedelta | None,
    as_json: bool,
) -> None:
    """List requests, filtered. Filters combine: a request must match all of them.

    Activity is the latest change seen at any linked item, or in the ledger itself (an
    operator handoff, say).

    \b
    Examples:
      syncd ls --unowned --state open
      syncd ls --owner alice --state in_progress --state blocked
      syncd ls --source api --stale 3d
      syncd ls --owner github:zed --json
    """
    if owner and unowned:
        raise click.UsageError("--owner and --unowned exclude each other")
    now = now_utc()
    with env.read_ledger() as ledger:
        rows = queries.list_requests(
            ledger,
            now=now,
            owner=owner,
            states=states,
            source=source,
            unowned=unowned,
            stale=stale,
        )
    if as_json:
        _emit_json(rows)
    else:
        click.echo(render.requests_view(rows, now))


@cli.command("show", short_help="One request: linked items, owed write-backs, timeline.")
@click.argument("request", callback=_request, metavar="REQ")
@json_option
@paths_option
@pass_env
def show_command(env: Env, request: str, as_json: bool) -> None:
    """Show one request: its fields, every linked item with any write-back still owed to it
    (pending, dead or skipped, with the reason), and its full timeline of events.

    REQ is a request id such as REQ-42 (or just 42).

    \b
    Examples:
      syncd show REQ-42
      syncd show 42 --json
    """
    with env.read_ledger() as ledger:
        detail = queries.request_detail(ledger, request)
    if as_json:
        _emit_json(detail)
    else:
        click.echo(render.request_view(detail))


@cli.command("history", short_help="The handoff log: owner changes and conflicts.")
@click.argument("request", callback=_request, metavar="[REQ]", required=False)
@click.option(
    "--since",
    callback=_duration,
    metavar="DURATION",
    help="Only handoffs within the last DURATION (e.g. 24h, 7d).",
)
@json_option
@paths_option
@pass_env
def history_command(env: Env, request: str | None, since: timedelta | None, as_json: bool) -> None:
    """The handoff log: every owner change, and every conflict, oldest first.

    For each: when it happened (at the source when known), the request, the owner before and
    after, where it was made (a source name, or "operator" for `syncd assign`), who made it,
    and the note or the conflict's detail. Give REQ for one request only.

    \b
    Examples:
      syncd history --since 7d
      syncd history REQ-42
      syncd history --since 24h --json
    """
    now = now_utc()
    with env.read_ledger() as ledger:
        rows = queries.history(ledger, now=now, key=request, since=since)
    if as_json:
        _emit_json(rows)
    else:
        click.echo(render.history_view(rows))


def _stale_after(config: Config | None) -> dict[str, timedelta]:
    """When a source counts as stale: the same allowance the daemon's watchdog gives a job
    (two intervals, plus jitter and the time a poll may take)."""
    if config is None:
        return {}
    d = config.daemon
    return {s.name: s.interval * 2 + d.jitter + d.hang_after for s in config.sources if s.enabled}


@cli.command("status", short_help="Per-source health, lag, errors, write-backs, rate limits.")
@json_option
@paths_option
@pass_env
def status_command(env: Env, as_json: bool) -> None:
    """Per source: health, last successful poll and lag, last error, items seen, write-backs
    pending / dead / skipped, quarantined items, rate limit and retry time; then totals.

    Health is "failing" when the last poll failed, "never" before a first success, and
    "stale" when the last success is older than two poll intervals plus jitter and
    hang_after (this needs the config, so not with --ledger), else "ok".

    \b
    Examples:
      syncd status
      syncd status --json | jq '.sources[] | select(.health != "ok")'
    """
    config = env.read_config()
    with env.read_ledger(config) as ledger:
        st = queries.source_status(ledger, now=now_utc(), stale_after=_stale_after(config))
    if as_json:
        _emit_json(st)
    else:
        click.echo(render.status_view(st))


@cli.command("people", short_help="People, their handles per tool, unmapped identities.")
@json_option
@paths_option
@pass_env
def people_command(env: Env, as_json: bool) -> None:
    """People with their handles in each tool, and the identities seen in a tool that no
    [[people]] entry claims (add them to the config to map them to a person).

    \b
    Examples:
      syncd people
      syncd people --json | jq '.unmapped[].owner'
    """
    with env.read_ledger() as ledger:
        data = queries.people(ledger)
    if as_json:
        _emit_json(data)
    else:
        click.echo(render.people_view(data))


# -- the operator's one write ----------------------------------------------------------------


@cli.command("assign", short_help="Hand a request to someone; it is written back everywhere.")
@click.argument("request", callback=_request, metavar="REQ")
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
    actor = _actor()
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


# -- running ---------------------------------------------------------------------------------


@cli.command("sync", short_help="Run one sync cycle now and report per source.")
@click.option("--once", is_flag=True, help="Run one cycle and exit (required).")
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="NAME",
    help="Only this source; repeat for several. Default: every enabled source.",
)
@trace_option
@paths_option
@pass_env
def sync_command(env: Env, once: bool, sources: tuple[str, ...], trace_http: Path | None) -> None:
    """Run one sync cycle now: poll each source, then pay the write-backs owed to each.

    Prints one summary line per source. Exits 1 if any source failed. Refuses to run while
    `syncd run` holds the same ledger.

    \b
    Examples:
      syncd sync --once
      syncd sync --once --source api --trace-http /tmp/api-http.jsonl
    """
    from syncd.cycle import Engine  # late: importing adapters is only needed to sync

    if not once:
        raise click.UsageError(
            "use `syncd sync --once` for one cycle, or `syncd run` to keep going"
        )
    config = env.config(resolve=True)
    http = _http(trace_http)
    with Ledger(env.ledger_path(config)) as ledger:
        ledger.acquire_daemon_lock()
        engine = Engine(config, ledger, http)
        try:
            if not engine.adapters:
                raise ConfigError(str(env.config_path), ["sources: no enabled source to sync"])
            unknown = [n for n in sources if n not in engine.adapters]
            if unknown:
                raise NotFound(
                    f"no enabled source {', '.join(map(repr, unknown))} "
                    f"(enabled: {', '.join(sorted(engine.adapters))})"
                )
            results = engine.sync_once(list(sources) or None)
        finally:
            engine.close()
        outbox = {s["source"]: s for s in queries.source_status(ledger, now=now_utc())["sources"]}
    for r in results:
        a = r.applied
        line = (
            f"{r.source}: {'ok' if r.ok else 'FAILED'}, {r.pages} pages, {a.observations} items "
            f"({a.created} new, {a.changed} changed, {a.conflicts} conflicts, "
            f"{a.quarantined} quarantined), {r.requests} requests"
        )
        s = outbox.get(r.source)
        if s is not None:
            line += f"; write-backs {s['outbox_pending']} pending, {s['outbox_dead']} dead"
        if r.error:
            line += f"; error: {r.error}"
        click.echo(redact(line))
    failed = [r.source for r in results if not r.ok]
    if failed:
        raise SyncdError(f"{len(failed)} of {len(results)} sources failed: {', '.join(failed)}")


@cli.command("run", short_help="Run the daemon (what the systemd unit starts).")
@trace_option
@paths_option
@pass_env
def run_command(env: Env, trace_http: Path | None) -> None:
    """Run the daemon: poll every source on its interval and write ownership changes back.

    Meant to run under systemd (see systemd/). SIGTERM finishes the transaction in progress
    and exits 0; SIGHUP reloads the config (an invalid one is logged and the old one kept).
    Logs go to stderr as JSON lines unless stderr is a terminal.

    \b
    Examples:
      syncd --config /etc/syncd/syncd.toml run
      syncd --debug run --trace-http /tmp/syncd-http.jsonl
    """
    from syncd.daemon import Daemon  # late: apscheduler is only needed by the daemon

    code = Daemon(env.config_path, ledger_path=env.ledger_override, http=_http(trace_http)).run()
    sys.exit(code)


@cli.command("demo", short_help="Watch a handoff propagate between emulated tools.")
@trace_option
@click.option("--keep", is_flag=True, help="Keep the demo's temporary directory and say where.")
@click.option(
    "--no-email",
    "no_email",
    is_flag=True,
    help="Leave out the shared mailbox (which runs a local Dovecot).",
)
def demo_command(trace_http: Path | None, keep: bool, no_email: bool) -> None:
    """Run a self-contained demo against emulated tools in a temporary directory.

    Needs no config, no tokens and no network. GitHub, Jira and Trello are emulated; the
    shared mailbox is a real Dovecot started on loopback, when Dovecot is installed
    (apt-get install dovecot-imapd). Without it, the demo says what it skipped. Exits 0
    only when the story reached its end state.

    \b
    Examples:
      syncd demo
      syncd demo --keep --trace-http /tmp/demo-http.jsonl
    """
    # Imported only here: the demo brings the tool emulators, which nothing else needs.
    from syncd.demo import run_demo

    if trace_http is not None:
        _check_writable(trace_http)

    def show(args: list[str]) -> None:
        # The demo shows the ledger through the operator's own commands.
        cli.main(args, prog_name="syncd", standalone_mode=False)

    sys.exit(run_demo(trace_http=trace_http, keep=keep, email=not no_email, show=show))


# -- config ----------------------------------------------------------------------------------


@cli.group("config")
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


def main() -> None:
    cli.main(prog_name="syncd")


__all__ = ["cli", "main"]
