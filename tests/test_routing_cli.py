"""`syncd away`, `back`, `accept`, `route --dry-run`, and the routing filters of `ls`,
`people` and `status`, against a real ledger file."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from syncd import dispatch, schemas
from syncd.cli import cli
from syncd.config import load_config
from syncd.ledger import Ledger
from syncd.models import Observation, Page
from syncd.people import Directory
from tests.syncdproc import syncd

CONFIG = """
ledger = "ledger.db"
[[people]]
id = "alice"
handles = { github = "alice-gh" }
[[people]]
id = "bob"
handles = { github = "bob-gh" }
[[people]]
id = "carol"
handles = { github = "carol-gh" }
[[teams]]
id = "support"
members = ["alice", "bob"]
[[routing]]
name = "billing"
when = { labels = "billing" }
assign = { team = "support" }
[acceptance]
accept_within = "1h"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(CONFIG)
    cfg = load_config(path)
    at = datetime.now(UTC) - timedelta(hours=3)
    with Ledger(cfg.ledger) as ledger:
        ledger.sync_people(cfg.people)
        obs = [
            Observation(
                source="api",
                ref=f"acme/api#{i}",
                url=f"https://github.com/acme/api/issues/{i}",
                title=f"Issue {i}",
                state="open",
                owners=("carol-gh",) if i == 4 else (),
                updated_at=at,
                keys=(f"github:acme/api#{i}",),
                labels=("Billing",) if i < 4 else (),
            )
            for i in range(1, 5)
        ]
        ledger.apply_page("api", "github", Page(obs), Directory.build(cfg.people), now=at)
    return path


def run(config: Path, *args: str, ok: bool = True) -> Any:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    assert (result.exit_code == 0) is ok, result.output + result.stderr
    if "--json" not in args or not ok:
        return result
    data = json.loads(result.stdout)
    # Every shape printed here is the documented one (syncd/schemas).
    jsonschema.validate(data, schemas.load(args[0]))
    return data


def dump(path: Path) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(path)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [(t, *row) for t in sorted(tables) for row in con.execute(f"SELECT * FROM {t}")]  # noqa: S608
    finally:
        con.close()


def step(config: Path) -> dispatch.StepReport:
    cfg = load_config(config)
    with Ledger(cfg.ledger) as ledger:
        return dispatch.step(ledger, cfg, Directory.build(cfg.people))


def test_route_dry_run_shows_the_rule_and_changes_nothing(config: Path) -> None:
    before = dump(config.parent / "ledger.db")
    rows = run(config, "route", "--dry-run", "--json")
    assert [(r["request"], r["to_owner"], r["rule"]) for r in rows] == [
        ("REQ-1", "alice", "billing"),
        ("REQ-2", "bob", "billing"),
        ("REQ-3", "alice", "billing"),
    ]
    text = run(config, "route", "--dry-run").stdout
    assert "REQ-2    bob    rule billing  Issue 2" in text
    assert dump(config.parent / "ledger.db") == before
    # Without --dry-run it refuses: routing is the daemon's.
    assert run(config, "route", ok=False).exit_code == 2
    # What the daemon then does is what the dry run said.
    assert [(a.key, a.owner) for a in step(config).routed] == [
        ("REQ-1", "alice"), ("REQ-2", "bob"), ("REQ-3", "alice")
    ]  # fmt: skip


def test_away_is_kept_in_the_ledger_shown_and_routing_skips_them(config: Path) -> None:
    out = run(config, "away", "bob", "--until", "2d", "--delegate", "carol", "--note", "leave")
    assert "bob is away until" in out.stdout
    people = run(config, "people", "--json")
    by_id = {p["id"]: p for p in people["people"]}
    assert by_id["bob"]["away"]["delegate"] == "carol"
    assert by_id["alice"]["away"] is None
    assert "bob until" in run(config, "people").stdout
    status = run(config, "status", "--json")
    assert [a["person"] for a in status["follow_through"]["away"]] == ["bob"]
    rows = run(config, "route", "--dry-run", "--json")
    assert {r["to_owner"] for r in rows} == {"alice"}
    # An operator handing work to Bob is told where it will go.
    handed = run(config, "assign", "REQ-4", "bob").stdout
    assert "note: bob is away until" in handed
    assert "the daemon hands it to carol (their delegate)" in handed
    assert [(a.key, a.owner, a.meant_for) for a in step(config).covered] == [
        ("REQ-4", "carol", "bob")
    ]
    run(config, "back", "bob")
    assert run(config, "people", "--json")["people"][1]["away"] is None
    events = sqlite3.connect(config.parent / "ledger.db").execute(
        "SELECT kind, to_value, request_id FROM events WHERE kind IN ('away', 'back')"
    )
    assert list(events) == [("away", "bob", None), ("back", "bob", None)]


def test_away_refuses_unknown_people_and_the_past(config: Path) -> None:
    assert "no person 'zed'" in run(config, "away", "zed", "--until", "1d", ok=False).stderr
    assert run(config, "away", "bob", "--until", "2020-01-01", ok=False).exit_code == 2
    assert run(config, "away", "bob", "--until", "1d", "--move-open", ok=False).exit_code == 2
    assert run(config, "back", "bob").stdout == "bob was not away; nothing to do\n"


def test_team_filters_and_unaccepted_handoffs(config: Path) -> None:
    step(config)
    assert [r["key"] for r in run(config, "ls", "--team", "support", "--json")] == [
        "REQ-1", "REQ-2", "REQ-3"
    ]  # fmt: skip
    assert [p["id"] for p in run(config, "people", "--team", "support", "--json")["people"]] == [
        "alice",
        "bob",
    ]
    assert "no team 'nope'" in run(config, "ls", "--team", "nope", ok=False).stderr
    # None overdue yet (the daemon marks them after accept_within); all are waiting.
    assert run(config, "ls", "--unaccepted", "--json") == []
    waiting = run(config, "ls", "--unaccepted", "0s", "--json")
    assert [(r["key"], r["handoff"]["owner"]) for r in waiting] == [
        ("REQ-1", "alice"), ("REQ-2", "bob"), ("REQ-3", "alice")
    ]  # fmt: skip
    run(config, "accept", "REQ-2", "--note", "on the phone")
    assert [r["key"] for r in run(config, "ls", "--unaccepted", "0s", "--json")] == [
        "REQ-1",
        "REQ-3",
    ]
    assert "no handoff awaiting" in run(config, "accept", "REQ-2", ok=False).stderr
    totals = run(config, "status", "--json")["follow_through"]
    assert (totals["awaiting_acceptance"], totals["overdue_handoffs"]) == (2, 0)


def test_accept_names_a_request_that_does_not_exist(config: Path) -> None:
    result = syncd("--config", config, "accept", "REQ-99")
    assert result.returncode == 1
    assert result.stderr == "syncd: error: no request REQ-99 (see `syncd ls`)\n"
