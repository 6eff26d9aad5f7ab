"""Shell completion for what operators type: request ids, people, sources, teams.

Completion runs on every Tab, so it reads the ledger (read-only) and the config (without
secrets) quietly: anything missing or unreadable completes nothing rather than printing an
error into the user's command line.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import click
from click.shell_completion import CompletionItem

from syncd.config import DEFAULT_CONFIG_PATH, Config, load_config
from syncd.errors import SyncdError
from syncd.ledger import Ledger

Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]
# Enough to choose from; a ledger of 50,000 requests should not flood the prompt.
MAX_ITEMS = 200


def _root_params(ctx: click.Context) -> dict[str, object]:
    """Global and per-command --config / --ledger, as typed so far."""
    params: dict[str, object] = {}
    c: click.Context | None = ctx
    chain = []
    while c is not None:
        chain.append(c)
        c = c.parent
    for c in reversed(chain):
        params.update({k: v for k, v in c.params.items() if v is not None})
    # A command's own --config / --ledger (syncd.cli.options.paths_option) win.
    for key, name in (("syncd.config_path", "config_path"), ("syncd.ledger_override", "ledger")):
        if key in ctx.meta:
            params[name] = ctx.meta[key]
    return params


def _config(ctx: click.Context) -> Config | None:
    path = _root_params(ctx).get("config_path") or os.environ.get(
        "SYNCD_CONFIG", DEFAULT_CONFIG_PATH
    )
    try:
        return load_config(Path(str(path)), resolve=False)
    except (SyncdError, OSError):
        return None


@contextlib.contextmanager
def _ledger(ctx: click.Context) -> Iterator[Ledger | None]:
    ledger_path = _root_params(ctx).get("ledger")
    if ledger_path is None:
        config = _config(ctx)
        ledger_path = config.ledger if config else None
    try:
        ledger = Ledger(Path(str(ledger_path)), readonly=True) if ledger_path else None
    except (SyncdError, OSError):
        ledger = None
    try:
        yield ledger
    finally:
        if ledger is not None:
            ledger.close()


def _items(values: list[tuple[str, str | None]], incomplete: str) -> list[CompletionItem]:
    low = incomplete.lower()
    return [
        CompletionItem(value, help=help_)
        for value, help_ in values
        if value.lower().startswith(low)
    ][:MAX_ITEMS]


def requests(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Request ids of open work, newest first, with their titles."""
    with _ledger(ctx) as ledger:
        if ledger is None:
            return []
        rows = ledger.rows(
            "SELECT key, title FROM requests WHERE state IN ('open', 'in_progress', 'blocked') "
            "ORDER BY id DESC LIMIT 2000"
        )
    return _items([(r["key"], r["title"]) for r in rows], incomplete)


def owners(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """People by id with their names, then `me`."""
    with _ledger(ctx) as ledger:
        rows = ledger.rows("SELECT id, name FROM people ORDER BY id") if ledger else []
    return _items(
        [(r["id"], r["name"]) for r in rows] + [("me", "you (your unix handle)")], incomplete
    )


def sources(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Source names from the config, else from the ledger."""
    config = _config(ctx)
    if config is not None:
        return _items([(s.name, s.type) for s in config.sources], incomplete)
    with _ledger(ctx) as ledger:
        rows = (
            ledger.rows("SELECT DISTINCT source, kind FROM links ORDER BY source") if ledger else []
        )
    return _items([(r["source"], r["kind"]) for r in rows], incomplete)


def teams(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Team names from the config's [[teams]], when it has them."""
    config = _config(ctx)
    found = getattr(config, "teams", None) or []
    return _items([(str(getattr(t, "id", t)), None) for t in found], incomplete)


def choices(values: list[str]) -> Completer:
    def complete(
        ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return _items([(v, None) for v in values], incomplete)

    return complete
