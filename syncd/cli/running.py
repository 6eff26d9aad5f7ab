"""Commands that talk to the sources: `sync --once`, the daemon, and the demo."""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import click

from syncd import daemonstate, queries
from syncd.cli.options import (
    DURATION_HELP,
    Env,
    check_writable,
    duration_option_value,
    emit_json,
    http_options,
    json_option,
    pass_env,
    paths_option,
    trace_option,
)
from syncd.config import ledger_named_by
from syncd.errors import ConfigError, NotFound, SyncdError
from syncd.filemodes import loose_files
from syncd.ledger import Ledger, now_utc
from syncd.redact import redact
from syncd.safetext import safe_text


@click.command("sync", short_help="Run one sync cycle now and report per source.")
@click.option("--once", is_flag=True, help="Run one cycle and exit (required).")
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="NAME",
    help="Only this source; repeat for several. Default: every enabled source.",
)
@trace_option
@json_option
@paths_option
@pass_env
def sync_command(
    env: Env, once: bool, sources: tuple[str, ...], trace_http: Path | None, as_json: bool
) -> None:
    """Run one sync cycle now: poll each source, then pay the write-backs owed to each.

    Prints one summary line per source (with --json, one object with a result per source).
    Exits 1 if any source failed. Refuses to run while `syncd run` holds the same ledger.

    \b
    Examples:
      syncd sync --once
      syncd sync --once --json | jq '.sources[] | select(.ok | not)'
      syncd sync --once --source api --trace-http /tmp/api-http.jsonl
    """
    from syncd.cycle import Engine  # late: importing adapters is only needed to sync

    if not once:
        raise click.UsageError(
            "use `syncd sync --once` for one cycle, or `syncd run` to keep going"
        )
    config = env.config(resolve=True)
    for warning in loose_files(env.config_path, config):
        click.echo(f"syncd: warning: {warning}", err=True)
    http = http_options(trace_http)
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
    failed = [r.source for r in results if not r.ok]
    if as_json:
        emit_json(
            {
                "ok": not failed,
                "sources": [
                    {
                        "source": r.source,
                        "ok": r.ok,
                        "pages": r.pages,
                        "items": r.applied.observations,
                        "created": r.applied.created,
                        "changed": r.applied.changed,
                        "conflicts": r.applied.conflicts,
                        "quarantined": r.applied.quarantined,
                        "quarantined_items": r.quarantined,
                        "requests": r.requests,
                        "outbox_pending": outbox.get(r.source, {}).get("outbox_pending"),
                        "outbox_dead": outbox.get(r.source, {}).get("outbox_dead"),
                        "error": redact(r.error) if r.error else None,
                    }
                    for r in results
                ],
            }
        )
    for r in [] if as_json else results:
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
        # An error may quote the source's answer: no control characters reach the terminal.
        click.echo(safe_text(redact(line)))
        for item in r.quarantined:
            click.echo(safe_text(redact(f"  quarantined {item}")))
    if failed:
        raise SyncdError(f"{len(failed)} of {len(results)} sources failed: {', '.join(failed)}")


@click.command("run", short_help="Run the daemon (what the systemd unit starts).")
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

    code = Daemon(
        env.config_path, ledger_path=env.ledger_override, http=http_options(trace_http)
    ).run()
    sys.exit(code)


@click.command("demo", short_help="Watch a handoff propagate between emulated tools.")
@trace_option
@click.option("--keep", is_flag=True, help="Keep the demo's temporary directory and say where.")
@click.option(
    "--no-email",
    "no_email",
    is_flag=True,
    help="Leave out the shared mailbox (which runs a local Dovecot).",
)
@click.option(
    "--story",
    type=click.Choice(["handoff", "routing"]),
    default="handoff",
    show_default=True,
    help="handoff: a request's owner followed across every tool; routing: unowned issues "
    "routed by rules, one handoff accepted and one flagged overdue.",
)
def demo_command(trace_http: Path | None, keep: bool, no_email: bool, story: str) -> None:
    """Run a self-contained demo against emulated tools in a temporary directory.

    Needs no config, no tokens and no network. GitHub, Jira and Trello are emulated; the
    shared mailbox is a real Dovecot started on loopback, when Dovecot is installed
    (apt-get install dovecot-imapd). Without it, the demo says what it skipped. Exits 0
    only when the story reached its end state.

    \b
    Examples:
      syncd demo
      syncd demo --keep --trace-http /tmp/demo-http.jsonl
      syncd demo --story routing
    """
    # Imported only here: the demo brings the tool emulators, which nothing else needs.
    from syncd.demo import run_demo

    if trace_http is not None:
        check_writable(trace_http)

    from syncd.cli.main import cli  # late: the group imports this module

    def show(args: list[str]) -> None:
        # The demo shows the ledger through the operator's own commands.
        cli.main(args, prog_name="syncd", standalone_mode=False)

    if story == "routing":
        from syncd.demo_routing import run_routing_demo

        sys.exit(run_routing_demo(trace_http=trace_http, keep=keep, show=show))
    sys.exit(run_demo(trace_http=trace_http, keep=keep, email=not no_email, show=show))


@click.command("reload", short_help="Have the running daemon re-read its config; wait for it.")
@click.option(
    "--pid",
    type=click.IntRange(min=1),
    metavar="PID",
    help="The daemon's pid (the unit passes $MAINPID). Default: the daemon holding the ledger.",
)
@click.option(
    "--timeout",
    callback=duration_option_value,
    default="50s",
    show_default=True,
    metavar="DURATION",
    help="How long to wait for the daemon's answer. " + DURATION_HELP,
)
@paths_option
@pass_env
def reload_command(env: Env, pid: int | None, timeout: timedelta) -> None:
    """Send the daemon SIGHUP and wait until it has reloaded its config, or failed to.

    Prints "reloaded" and exits 0 once the new config is in effect. If the new config is
    invalid, the daemon keeps running the previous one: this prints each problem and exits
    1. The unit's ExecReload= runs this, so `systemctl reload syncd` returns only after the
    reload has finished or failed, and says so.

    \b
    Examples:
      syncd reload
      syncd --config /etc/syncd/ops.toml reload
      syncd --config /etc/syncd/syncd.toml reload --pid "$MAINPID"
    """
    # Not validated here: the daemon checks the new config and reports its problems.
    ledger = env.ledger_override or ledger_named_by(env.config_path)
    if pid is None:
        if not daemonstate.lock_held(ledger):
            raise SyncdError(f"no daemon holds {ledger}; nothing to reload")
        pid = daemonstate.lock_pid(ledger)
        if pid is None:
            raise SyncdError(f"cannot tell the daemon's pid from {daemonstate.lock_path(ledger)}")
    before = daemonstate.read_state(ledger)
    done = before.get("reloads", 0) if before.get("pid") == pid else 0
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise SyncdError(f"no process {pid}; is the daemon running?") from None
    except PermissionError:
        raise SyncdError(
            f"not allowed to signal the daemon (pid {pid} runs as another user); "
            "use `sudo systemctl reload syncd` (or syncd@NAME)"
        ) from None
    deadline = time.monotonic() + timeout.total_seconds()
    while time.monotonic() < deadline:
        state = daemonstate.read_state(ledger)
        if state.get("pid") == pid and state.get("reloads", 0) > done:
            if state.get("reload_ok"):
                click.echo(f"reloaded: the daemon (pid {pid}) runs the new config")
                return
            raise ConfigError(
                str(env.config_path),
                [
                    "reload failed; the daemon keeps running the previous config",
                    *state.get("reload_problems", []),
                ],
            )
        if not daemonstate.pid_alive(pid):
            raise SyncdError(f"the daemon (pid {pid}) exited during the reload")
        time.sleep(0.05)
    raise SyncdError(
        f"the daemon (pid {pid}) did not finish reloading within {timeout.total_seconds():g}s"
    )
